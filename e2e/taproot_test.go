package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/scenario"
)

// TestCosignEveryScriptType cross-checks cosigner's sighashes and signature placement against an
// independent implementation for the wallet shapes beyond plain P2WSH (which TestCosignOverNostr
// covers): sh(wsh(sortedmulti(2,A,B,C))) and tr(NUMS,multi_a(2,A,B,C)). For each, a real daemon
// registers the wallet, the devnet funds it, BDK (bdkpython) builds a payment and signs key B's
// share, nostr-tools sends it as sign_psbt, cosigner signs key A's share (BIP-143 with the redeem
// script; BIP-341/342 script path with the leaf hash), and BDK finalizes, extracts and broadcasts
// it through ElectrumX: btcd accepts and mines it only if every signature is right. The
// cosigner's UTXO set then equals btcd's.
func TestCosignEveryScriptType(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs the local test network (make test)")
	}
	for _, shape := range []string{"sh-wsh", "tr"} {
		t.Run(shape, func(t *testing.T) { cosignShape(t, shape) })
	}
}

func cosignShape(t *testing.T, shape string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, stop := startDaemon(ctx, t, scenario.Options{Wallet: shape})
	defer stop()
	wantType := map[string]descriptor.ScriptType{"sh-wsh": descriptor.P2SHP2WSH, "tr": descriptor.P2TR}[shape]
	if env.Descriptor.Type() != wantType {
		t.Fatalf("registered %s, want %s", env.Descriptor.Type(), wantType)
	}
	bunker, err := env.BunkerURI(ctx)
	if err != nil {
		t.Fatal(err)
	}

	fund := btcutil.Amount(btcutil.SatoshiPerBitcoin)
	if _, err := env.FundConfirmed(ctx, fund); err != nil {
		t.Fatal(err)
	}

	payee, _ := env.ExternalAddress()
	built, err := env.BuildPayment(ctx, payee, 30_000_000, 3)
	if err != nil {
		t.Fatal(err)
	}
	// `cosigner psbt inspect` on the daemon's data dir shows what the request will do.
	file := filepath.Join(t.TempDir(), "payment.psbt")
	if err := os.WriteFile(file, []byte(built.PSBT), 0o600); err != nil {
		t.Fatal(err)
	}
	table, err := env.Cosigner(ctx, "psbt", "inspect", file)
	if err != nil {
		t.Fatalf("psbt inspect: %v\n%s", err, table)
	}
	for _, want := range []string{"wallet view: ", "(tip ", string(wantType), "change/", "0.30000000 BTC", "receive/0"} {
		if !strings.Contains(table, want) {
			t.Fatalf("psbt inspect output lacks %q:\n%s", want, table)
		}
	}

	// A crafted variant of the same PSBT is refused with its own check, and the daemon stays up
	// for the honest one: sh(wsh) gets the segwit fee attack (witness_utxo lying about the
	// amount), taproot a leaf script that is not in the registered tree.
	evil := decodePSBT(t, built.PSBT)
	check := "input_amount"
	if shape == "tr" {
		check = "taproot_leaf"
		k, _ := btcec.NewPrivateKey()
		script, _ := txscript.NewScriptBuilder().AddData(schnorr.SerializePubKey(k.PubKey())).AddOp(txscript.OP_CHECKSIG).Script()
		l := evil.Inputs[0].TaprootLeafScript[0]
		cb := append([]byte{l.ControlBlock[0] ^ 1}, l.ControlBlock[1:]...) // the PSBT key is the control block: make it another
		evil.Inputs[0].TaprootLeafScript = append(evil.Inputs[0].TaprootLeafScript,
			&psbt.TaprootTapLeafScript{ControlBlock: cb, Script: script, LeafVersion: l.LeafVersion})
	} else {
		evil.Inputs[0].WitnessUtxo.Value -= 10_000_000
	}
	var buf bytes.Buffer
	if err := evil.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	bad := nip46(t, ctx, env, bunker, env.ClientSK, "sign_psbt", base64.StdEncoding.EncodeToString(buf.Bytes()))
	if !strings.HasPrefix(bad.Error, "unsafe_psbt: "+check+": ") {
		t.Fatalf("crafted PSBT answered %+v, want unsafe_psbt: %s", bad, check)
	}

	ans := nip46(t, ctx, env, bunker, env.ClientSK, "sign_psbt", built.PSBT)
	if ans.Error != "" {
		t.Fatalf("sign_psbt refused: %s", ans.Error)
	}
	p := decodePSBT(t, ans.Result)
	for i, in := range p.Inputs {
		switch shape {
		case "sh-wsh":
			if len(in.PartialSigs) != 2 || len(in.RedeemScript) != 34 || !txscript.IsPayToWitnessScriptHash(in.RedeemScript) {
				t.Fatalf("input %d: %d partial signatures, redeem script %x", i, len(in.PartialSigs), in.RedeemScript)
			}
		case "tr":
			if len(in.TaprootScriptSpendSig) != 2 || len(in.PartialSigs) != 0 {
				t.Fatalf("input %d: %d taproot script signatures, want 2 (B's and the cosigner's)", i, len(in.TaprootScriptSpendSig))
			}
			for _, s := range in.TaprootScriptSpendSig {
				if len(s.Signature) != 64 || s.SigHash != txscript.SigHashDefault || len(s.LeafHash) != 32 {
					t.Fatalf("input %d: signature %x sighash %v", i, s.Signature, s.SigHash)
				}
			}
		}
	}
	dec, err := env.LastDecision(ctx, "sign_psbt")
	if err != nil || dec.Decision != "signed" || dec.OutflowSat != 30_000_000+built.Fee {
		t.Fatalf("audit entry %+v, %v", dec, err)
	}
	if !strings.Contains(dec.Analysis, `"script_type":"`+string(wantType)+`"`) {
		t.Fatalf("audited analysis does not name the script type: %s", dec.Analysis)
	}

	fin, err := env.Finalize(ctx, ans.Result)
	if err != nil {
		t.Fatalf("BDK could not finalize and broadcast what cosigner signed: %v", err)
	}
	if _, err := env.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	want := fund - 30_000_000 - btcutil.Amount(fin.Fee)
	st, err := env.WaitStatus(ctx, time.Minute, func(s chainwatch.Status) bool { return s.Confirmed == want && s.Unconfirmed == 0 })
	if err != nil {
		t.Fatal(err)
	}
	assertUTXOsMatchNode(t, env, st)
}
