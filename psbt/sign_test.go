package psbt

import (
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// TestSignInputsMatchesUpdaterSign: for wsh and sh(wsh), the partial signatures SignInputs adds
// (without btcd's Updater.Sign) give exactly the PSBT Updater.Sign gives for the same keys and
// signatures (RFC 6979 signatures are deterministic): same fields, same order, same encoding,
// after one co-signer and after a second one.
func TestSignInputsMatchesUpdaterSign(t *testing.T) {
	for _, kind := range []string{"wsh", "sh-wsh"} {
		fx := newKindFixture(t, kind)
		op1 := fx.addCoin(t, 0, 1, 100_000)
		op2 := fx.addCoin(t, 1, 4, 60_000)
		got := fx.build(t, []wire.OutPoint{op1, op2}, 100_000, 59_000, 2)
		want, err := Clone(got)
		if err != nil {
			t.Fatal(err)
		}
		for _, slot := range []int{0, 2} {
			a, err := Analyze(got, fx.desc, fx.chain)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := SignInputs(got, a, fx.desc, slot, fx.keys[slot], fx.chain); err != nil || n != 2 {
				t.Fatalf("%s: SignInputs = %d, %v", kind, n, err)
			}
			updaterSign(t, fx, want, slot)
			g, _ := Encode(got, Base64)
			w, _ := Encode(want, Base64)
			if g != w {
				t.Fatalf("%s: after slot %d, SignInputs gives\n%s\nUpdater.Sign gives\n%s", kind, slot, g, w)
			}
		}
	}
}

// updaterSign is SignInputs as it was: btcd's Updater.Sign with the key from DeriveRelative.
func updaterSign(t *testing.T, fx *fixture, p *psbt.Packet, slot int) {
	t.Helper()
	prev := txscript.NewMultiPrevOutFetcher(nil)
	for _, in := range p.UnsignedTx.TxIn {
		c, _ := fx.chain.Coin(in.PreviousOutPoint)
		prev.AddPrevOut(in.PreviousOutPoint, wire.NewTxOut(int64(c.Value), c.PkScript))
	}
	hashes := txscript.NewTxSigHashes(p.UnsignedTx, prev)
	u, err := psbt.NewUpdater(p)
	if err != nil {
		t.Fatal(err)
	}
	key := fx.desc.Keys()[slot]
	for i, in := range p.UnsignedTx.TxIn {
		c, _ := fx.chain.Coin(in.PreviousOutPoint)
		d, err := fx.desc.Derive(c.Branch, c.Index)
		if err != nil {
			t.Fatal(err)
		}
		priv, err := fx.keys[slot].DeriveRelative(append(append([]uint32(nil), key.Steps[c.Branch]...), c.Index)...)
		if err != nil {
			t.Fatal(err)
		}
		if p.Inputs[i].WitnessUtxo == nil {
			if err := u.AddInWitnessUtxo(wire.NewTxOut(int64(c.Value), c.PkScript), i); err != nil {
				t.Fatal(err)
			}
		}
		sig, err := txscript.RawTxInWitnessSignature(p.UnsignedTx, hashes, i, int64(c.Value), d.WitnessScript, txscript.SigHashAll, priv)
		if err != nil {
			t.Fatal(err)
		}
		if out, err := u.Sign(i, sig, priv.PubKey().SerializeCompressed(), d.RedeemScript, d.WitnessScript); err != nil || out != psbt.SignSuccesful {
			t.Fatalf("Updater.Sign = %v, %v", out, err)
		}
	}
}

// TestSignInputsRefusesForeignWitnessUTXO: a witness UTXO that does not pay the descriptor's
// script at the coin's index is refused when the signature would be added (Updater.Sign's check,
// kept), even if the caller skipped the analysis.
func TestSignInputsRefusesForeignWitnessUTXO(t *testing.T) {
	fx := newFixture(t)
	op := fx.addCoin(t, 0, 1, 100_000)
	p := fx.build(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
	other, _ := fx.desc.PkScript(0, 2)
	p.Inputs[0].WitnessUtxo = wire.NewTxOut(100_000, other)
	if n, err := SignInputs(p, nil, fx.desc, 0, fx.keys[0], fx.chain); err == nil || n != 0 || len(p.Inputs[0].PartialSigs) != 0 {
		t.Fatalf("SignInputs = %d, %v; partial sigs %d", n, err, len(p.Inputs[0].PartialSigs))
	}
}
