package e2e

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/signer"
)

// TestBuiltTaprootPSBTIsAcceptedByBtcd funds a tr(NUMS,multi_a(2,A,B,C)) wallet on the local
// test network and spends it with the whole outbound path for taproot: psbtflow.Build writes the
// BIP-371 fields (from the UTXOs and previous transactions ElectrumX reports), key A signs with
// SignInputs, key B's share comes from BDK (bdkpython, an independent BIP-371 implementation,
// which signs only from the fields the builder wrote), Combine merges them, Finalize writes the
// BIP-342 script-path witnesses, and btcd accepts and mines the transaction; then a sweep of
// what is left is signed by A and C and finalized the same way.
func TestBuiltTaprootPSBTIsAcceptedByBtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), RelayPorts: []int{}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	params := n.Params()

	// Keys A and C: fixed test seeds (the wallet exists only on the local regtest chain).
	var keys [2]*signer.Keys
	for i := range keys {
		keys[i], err = signer.NewKeys(bytes.Repeat([]byte{0xd0 + byte(i)}, 32), fmt.Sprintf("%064x", 0xd0+i), params)
		if err != nil {
			t.Fatal(err)
		}
	}
	var bdkKey struct {
		XprvKey string `json:"xprv_key"`
		XpubKey string `json:"xpub_key"`
	}
	if err := runBDKWallet(ctx, &bdkKey, "keys", "--network", "regtest"); err != nil {
		t.Fatal(err)
	}
	const mp = "/<0;1>/*"
	body := func(b string) string {
		return "tr(" + descriptor.NUMSKey + ",multi_a(2," + keys[0].Public.KeyOrigin() + mp + "," + b + mp + "," + keys[1].Public.KeyOrigin() + mp + "))"
	}
	desc, err := descriptor.Parse(body(bdkKey.XpubKey), params)
	if err != nil {
		t.Fatal(err)
	}
	bdkArgs := []string{"--descriptor", body(bdkKey.XprvKey), "--network", "regtest"}
	slot := func(k *signer.Keys) int {
		for i, dk := range desc.Keys() {
			if dk.XPub.String() == k.Public.AccountXPub {
				return i
			}
		}
		t.Fatal("key not in descriptor")
		return -1
	}

	c, err := electrum.Dial(ctx, n.ElectrumURL(), electrum.Options{ClientName: "cosigner-e2e-build-tr", PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	w := &electrumWallet{c: c, desc: desc, scripts: map[string][2]uint32{}}
	for b := uint32(0); b < 2; b++ {
		for i := uint32(0); i < 5; i++ {
			s, err := desc.PkScript(b, i)
			if err != nil {
				t.Fatal(err)
			}
			w.scripts[string(s)] = [2]uint32{b, i}
		}
	}
	for i, v := range []btcutil.Amount{300_000, 450_000, 1_200_000} {
		d, err := desc.Derive(0, uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Fund(ctx, d.Address, v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := n.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	pk, _ := btcec.NewPrivateKey()
	dest, _ := btcutil.NewAddressTaproot(schnorr.SerializePubKey(pk.PubKey()), params)
	destScript, _ := txscript.PayToAddrScript(dest)

	// spend builds, has A and then cosign sign, combines, finalizes, sends to btcd, mines, and
	// checks on ElectrumX what the transaction left in the wallet.
	spend := func(t *testing.T, mode psbtflow.SelectMode, amount btcutil.Amount, changeIndex uint32, cosign func(p string) string) {
		coins := waitUTXOs(t, ctx, w, func(u []psbtflow.UTXO) bool { return len(u) > 0 && allConfirmed(u) })
		pays := []psbtflow.Payment{{Address: dest, Amount: amount}}
		sp, err := psbtflow.NewSelectParams(desc, pays)
		if err != nil {
			t.Fatal(err)
		}
		sp.Mode = mode
		sel, err := psbtflow.Select(coins, amount, 2.5, sp)
		if err != nil {
			t.Fatal(err)
		}
		p, err := psbtflow.Build(ctx, desc, sel, pays, psbtflow.BuildOptions{ChangeIndex: changeIndex, TipHeight: w.tip}, w)
		if err != nil {
			t.Fatal(err)
		}
		a, err := psbtflow.Analyze(p, desc, w)
		if err != nil {
			t.Fatalf("Analyze: %v", err)
		}
		if a.Fee != sel.Fee || a.ChangeTotal != sel.Change {
			t.Fatalf("analysis %+v disagrees with selection %+v", a, sel)
		}
		unsigned, err := psbtflow.Encode(p, psbtflow.Base64)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := psbtflow.SignInputs(p, a, desc, slot(keys[0]), keys[0], w); err != nil || got != len(p.Inputs) {
			t.Fatalf("SignInputs A = %d, %v", got, err)
		}
		other, _, err := psbtflow.Decode(cosign(unsigned))
		if err != nil {
			t.Fatal(err)
		}
		comb, err := psbtflow.Combine(p, other)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := psbtflow.Signatures(desc, comb); err != nil || got != 2 {
			t.Fatalf("Signatures = %d, %v; want 2", got, err)
		}
		final, err := psbtflow.Finalize(desc, comb)
		if err != nil {
			t.Fatal(err)
		}
		vsize := (int64(final.SerializeSizeStripped())*3 + int64(final.SerializeSize()) + 3) / 4
		if vsize > sel.VSize {
			t.Fatalf("finalized vsize %d above the estimate %d", vsize, sel.VSize)
		}
		txid, err := n.RPC().SendRawTransaction(final, false)
		if err != nil {
			t.Fatalf("btcd refused the finalized taproot transaction: %v", err)
		}
		if *txid != p.UnsignedTx.TxHash() {
			t.Fatalf("broadcast %s, built %s", txid, p.UnsignedTx.TxHash())
		}
		if _, err := n.Mine(ctx, 1); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %s, %d of %d coins in, %s paid, change %s, fee %s for %d vB (estimate %d vB)",
			txid, sel.Algorithm, len(sel.Inputs), len(coins), sel.Amount, sel.Change, sel.Fee, vsize, sel.VSize)
		spent := map[wire.OutPoint]bool{}
		for _, in := range sel.Inputs {
			spent[in.OutPoint] = true
		}
		left := waitUTXOs(t, ctx, w, func(u []psbtflow.UTXO) bool {
			for _, c := range u {
				if spent[c.OutPoint] || (c.OutPoint.Hash == *txid && c.Height <= 0) {
					return false
				}
			}
			return confirmedOn(t, ctx, c, destScript, *txid)
		})
		var change btcutil.Amount
		for _, c := range left {
			if c.OutPoint.Hash == *txid {
				change += c.Value
				if c.Branch != 1 || c.Index != changeIndex {
					t.Fatalf("change at %d/%d, want 1/%d", c.Branch, c.Index, changeIndex)
				}
			}
		}
		if change != sel.Change {
			t.Fatalf("change on the server %s, want %s", change, sel.Change)
		}
	}
	t.Run("payment with change, key B's share by BDK", func(t *testing.T) {
		spend(t, psbtflow.SelectTarget, 500_000, 0, func(unsigned string) string {
			var signed struct {
				PSBT string `json:"psbt"`
			}
			if err := runBDKWallet(ctx, &signed, append([]string{"sign", "--psbt", unsigned}, bdkArgs...)...); err != nil {
				t.Fatalf("BDK did not sign the built taproot PSBT: %v", err)
			}
			return signed.PSBT
		})
	})
	t.Run("sweep signed by A and C", func(t *testing.T) {
		spend(t, psbtflow.SelectSweep, 0, 1, func(unsigned string) string {
			q, _, err := psbtflow.Decode(unsigned)
			if err != nil {
				t.Fatal(err)
			}
			a, err := psbtflow.Analyze(q, desc, w)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := psbtflow.SignInputs(q, a, desc, slot(keys[1]), keys[1], w); err != nil || got != len(q.Inputs) {
				t.Fatalf("SignInputs C = %d, %v", got, err)
			}
			s, err := psbtflow.Encode(q, psbtflow.Base64)
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}
