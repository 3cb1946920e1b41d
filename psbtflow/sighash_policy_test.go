package psbtflow

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
)

// TestPolicySighashOptIn: NONE, SINGLE and ANYONECANPAY are refused (unsafe_psbt: sighash) unless the
// policy's limits.allow_sighash lists the exact type; when it does, the input is signed with the
// requested type (the signature's last byte, and it verifies against the BIP-143 sighash of that
// type). Allowing one type does not allow another.
func TestPolicySighashOptIn(t *testing.T) {
	types := []txscript.SigHashType{txscript.SigHashNone, txscript.SigHashSingle, txscript.SigHashAll | txscript.SigHashAnyOneCanPay,
		txscript.SigHashNone | txscript.SigHashAnyOneCanPay, txscript.SigHashSingle | txscript.SigHashAnyOneCanPay}
	for _, h := range types {
		name := policy.SighashName(uint32(h))
		t.Run(strings.ReplaceAll(name, "|", "_"), func(t *testing.T) {
			other := txscript.SigHashSingle | txscript.SigHashAnyOneCanPay
			if h == other {
				other = txscript.SigHashNone
			}
			for _, c := range []struct {
				limits string
				ok     bool
			}{
				{"", false},
				{"  allow_sighash: [ALL]\n", false},
				{"  allow_sighash: [" + policy.SighashName(uint32(other)) + "]\n", false},
				{"  allow_sighash: [ALL, " + name + "]\n", true},
			} {
				e := newHoldEnv(t, c.limits)
				op := e.f.addCoin(t, 0, 1, 100_000)
				p := e.f.buildPSBT(t, []wire.OutPoint{op}, 60_000, 39_000, 2)
				p.Inputs[0].SighashType = h
				b64, err := psbt.Encode(p, psbt.Base64)
				if err != nil {
					t.Fatal(err)
				}
				out, err := e.svc.SignPSBT(context.Background(), nip46.Call{Client: e.client, ID: "r", Method: "sign_psbt", Params: []string{b64}})
				if !c.ok {
					var me *nip46.MethodError
					if !errors.As(err, &me) || me.Code != nip46.CodeUnsafePSBT || !strings.Contains(me.Message, "sighash") {
						t.Fatalf("policy %q: want unsafe_psbt sighash, got %v", c.limits, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("policy %q: %v", c.limits, err)
				}
				checkSignedWith(t, out, h)
			}
		})
	}
}

func checkSignedWith(t *testing.T, out string, h txscript.SigHashType) {
	t.Helper()
	p, _, err := psbt.Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	in := p.Inputs[0]
	if len(in.PartialSigs) != 1 {
		t.Fatalf("%d partial signatures, want 1", len(in.PartialSigs))
	}
	ps := in.PartialSigs[0]
	if got := txscript.SigHashType(ps.Signature[len(ps.Signature)-1]); got != h {
		t.Fatalf("signed with sighash %#x, want %#x", got, h)
	}
	fetch := txscript.NewCannedPrevOutputFetcher(in.WitnessUtxo.PkScript, in.WitnessUtxo.Value)
	digest, err := txscript.CalcWitnessSigHash(in.WitnessScript, txscript.NewTxSigHashes(p.UnsignedTx, fetch), h, p.UnsignedTx, 0, in.WitnessUtxo.Value)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ecdsa.ParseDERSignature(ps.Signature[:len(ps.Signature)-1])
	if err != nil {
		t.Fatal(err)
	}
	pub, err := btcec.ParsePubKey(ps.PubKey)
	if err != nil {
		t.Fatal(err)
	}
	if !sig.Verify(digest, pub) {
		t.Fatalf("signature does not verify over the BIP-143 sighash of type %#x", h)
	}
}

// TestPolicyWarningCodes: the policy language knows exactly the analysis's warning codes, so
// that limits.deny_warnings and match.warnings can name every one and nothing else.
func TestPolicyWarningCodes(t *testing.T) {
	codes := []string{psbt.WarnOpReturn, psbt.WarnNonstandard, psbt.WarnSelfReceive, psbt.WarnForeignPath, psbt.WarnLockTimeFuture, psbt.WarnLockTime,
		psbt.WarnRelativeLock, psbt.WarnKeyPathSpend, psbt.WarnTxVersion}
	a, b := slices.Sorted(slices.Values(codes)), slices.Sorted(slices.Values(policy.WarningCodes))
	if !slices.Equal(a, b) {
		t.Fatalf("psbtflow warnings %v, policy.WarningCodes %v", a, b)
	}
}

// TestPolicyInputCarriesAnalysisFacts: what the analysis found about a real PSBT (version,
// script type, locktime kind, warnings, per-input sighash, spending path, relative lock) reaches
// policy.Input unchanged.
func TestPolicyInputCarriesAnalysisFacts(t *testing.T) {
	f := newFixture(t)
	op := f.addCoin(t, 0, 1, 100_000)
	p := f.buildPSBT(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
	p.UnsignedTx.LockTime = 400 // a height: enforced, since the inputs are not final
	p.UnsignedTx.AddTxOut(wire.NewTxOut(0, []byte{txscript.OP_RETURN, 2, 0xca, 0xfe}))
	p.Outputs = append(p.Outputs, btcpsbt.POutput{})
	a, err := psbt.Analyze(p, f.desc, f.chain)
	if err != nil {
		t.Fatal(err)
	}
	in := PolicyInput("c", "sign_psbt", time.Unix(0, 0), p, a)
	if in.PSBTVersion != a.PSBTVersion || in.ScriptType != a.ScriptType || in.ScriptType == "" || in.LockTimeKind != "height" || in.LockTime != 400 {
		t.Fatalf("facts: version %d script %q locktime %s/%d", in.PSBTVersion, in.ScriptType, in.LockTimeKind, in.LockTime)
	}
	var codes []string
	for _, w := range a.Warnings {
		codes = append(codes, w.Code)
	}
	if !slices.Equal(in.Warnings, codes) || !slices.Contains(in.Warnings, psbt.WarnOpReturn) || !slices.Contains(in.Warnings, psbt.WarnLockTime) {
		t.Fatalf("warnings %v, analysis %v", in.Warnings, codes)
	}
	x, y := in.Inputs[0], a.Inputs[0]
	if x.SighashType != y.SighashType || x.SighashType != uint32(txscript.SigHashAll) || x.ScriptType != y.ScriptType || x.SpendingPath != y.SpendingPath || x.SpendingPath == "" || x.RelativeLock != y.RelativeLock {
		t.Fatalf("input facts %+v, analysis %+v", x, y)
	}
}
