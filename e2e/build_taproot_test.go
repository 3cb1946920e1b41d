package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/psbt"
)

// TestBuiltTaprootPSBTIsAcceptedByBtcd funds a tr(NUMS,multi_a(2,A,B,C)) wallet on the local
// test network and spends it with the whole outbound path for taproot: psbt.Build writes the
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
	f := newBuilderWallet(t, ctx, 0xd0, "cosigner-e2e-build-tr", func(a, b, c string) string {
		return "tr(" + descriptor.NUMSKey + ",multi_a(2," + a + "," + b + "," + c + "))"
	})
	n, params, keys, desc, bdkArgs, w := f.n, f.n.Params(), f.keys, f.desc, f.bdkArgs, f.w
	slot := func(k *keystore.Keys) int { return f.slot(t, k) }
	pk, _ := btcec.NewPrivateKey()
	dest, _ := btcutil.NewAddressTaproot(schnorr.SerializePubKey(pk.PubKey()), params)
	destScript, _ := txscript.PayToAddrScript(dest)

	// spend builds, has A and then cosign sign, combines, finalizes, sends to btcd, mines, and
	// checks on ElectrumX what the transaction left in the wallet.
	spend := func(t *testing.T, mode psbt.SelectMode, amount btcutil.Amount, changeIndex uint32, cosign func(p string) string) {
		coins, sel, p, a := f.build(t, ctx, dest, mode, amount, 0, changeIndex)
		unsigned, err := psbt.Encode(p, psbt.Base64)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := psbt.SignInputs(p, a, desc, slot(keys[0]), keys[0], w); err != nil || got != len(p.Inputs) {
			t.Fatalf("SignInputs A = %d, %v", got, err)
		}
		other, _, err := psbt.Decode(cosign(unsigned))
		if err != nil {
			t.Fatal(err)
		}
		comb, err := psbt.Combine(p, other)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := psbt.Signatures(desc, comb); err != nil || got != 2 {
			t.Fatalf("Signatures = %d, %v; want 2", got, err)
		}
		final, err := psbt.Finalize(desc, comb)
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
		_, change := f.afterSpend(t, ctx, sel, *txid, destScript, changeIndex)
		if change != sel.Change {
			t.Fatalf("change on the server %s, want %s", change, sel.Change)
		}
	}
	t.Run("payment with change, key B's share by BDK", func(t *testing.T) {
		spend(t, psbt.SelectTarget, 500_000, 0, func(unsigned string) string {
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
		spend(t, psbt.SelectSweep, 0, 1, func(unsigned string) string {
			q, _, err := psbt.Decode(unsigned)
			if err != nil {
				t.Fatal(err)
			}
			a, err := psbt.Analyze(q, desc, w)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := psbt.SignInputs(q, a, desc, slot(keys[1]), keys[1], w); err != nil || got != len(q.Inputs) {
				t.Fatalf("SignInputs C = %d, %v", got, err)
			}
			s, err := psbt.Encode(q, psbt.Base64)
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	})
}
