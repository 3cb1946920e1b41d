package psbt

import (
	"encoding/binary"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
)

// build is a Creator + Updater as a coordinator (BDK) would be, for every output type: witness
// UTXOs; witness and redeem scripts or the BIP-371 taproot fields; BIP32 derivations of all keys
// on the inputs and on the change output (index changeIdx of branch 1).
func (f *fixture) build(t testing.TB, ins []wire.OutPoint, pay, change btcutil.Amount, changeIdx uint32) *psbt.Packet {
	t.Helper()
	tx := wire.NewMsgTx(2)
	for _, op := range ins {
		tx.AddTxIn(&wire.TxIn{PreviousOutPoint: op, Sequence: wire.MaxTxInSequenceNum - 2})
	}
	payScript, _ := txscript.PayToAddrScript(externalAddr)
	tx.AddTxOut(wire.NewTxOut(int64(pay), payScript))
	cd, err := f.desc.Derive(1, changeIdx)
	if err != nil {
		t.Fatal(err)
	}
	tx.AddTxOut(wire.NewTxOut(int64(change), cd.PkScript))
	p, err := psbt.NewFromUnsignedTx(tx)
	if err != nil {
		t.Fatal(err)
	}
	for i, op := range ins {
		c := f.chain.coins[op]
		d, _ := f.desc.Derive(c.Branch, c.Index)
		pin := &p.Inputs[i]
		pin.WitnessUtxo = wire.NewTxOut(int64(c.Value), c.PkScript)
		fillInput(pin, d)
	}
	fillOutput(&p.Outputs[1], cd)
	return p
}

func fillInput(pin *psbt.PInput, d *descriptor.Derived) {
	if d.Taproot == nil {
		pin.WitnessScript, pin.RedeemScript = d.WitnessScript, d.RedeemScript
		for _, k := range d.Keys {
			pin.Bip32Derivation = append(pin.Bip32Derivation, &psbt.Bip32Derivation{PubKey: k.PubKey.SerializeCompressed(),
				MasterKeyFingerprint: binary.LittleEndian.Uint32(k.Fingerprint[:]), Bip32Path: k.Path})
		}
		return
	}
	pin.TaprootInternalKey = schnorr.SerializePubKey(d.Taproot.InternalKey)
	pin.TaprootMerkleRoot = d.Taproot.MerkleRoot
	for _, l := range d.Taproot.Leaves {
		pin.TaprootLeafScript = append(pin.TaprootLeafScript, &psbt.TaprootTapLeafScript{ControlBlock: l.ControlBlock, Script: l.Script, LeafVersion: l.LeafVersion})
	}
	pin.TaprootBip32Derivation = tapDerivations(d)
}

func fillOutput(pout *psbt.POutput, d *descriptor.Derived) {
	if d.Taproot == nil {
		pout.WitnessScript, pout.RedeemScript = d.WitnessScript, d.RedeemScript
		for _, k := range d.Keys {
			pout.Bip32Derivation = append(pout.Bip32Derivation, &psbt.Bip32Derivation{PubKey: k.PubKey.SerializeCompressed(),
				MasterKeyFingerprint: binary.LittleEndian.Uint32(k.Fingerprint[:]), Bip32Path: k.Path})
		}
		return
	}
	pout.TaprootInternalKey = schnorr.SerializePubKey(d.Taproot.InternalKey)
	pout.TaprootBip32Derivation = tapDerivations(d)
}

func tapDerivations(d *descriptor.Derived) []*psbt.TaprootBip32Derivation {
	var out []*psbt.TaprootBip32Derivation
	for _, k := range d.Keys {
		td := &psbt.TaprootBip32Derivation{XOnlyPubKey: schnorr.SerializePubKey(k.PubKey),
			MasterKeyFingerprint: binary.LittleEndian.Uint32(k.Fingerprint[:]), Bip32Path: k.Path}
		for _, h := range k.LeafHashes {
			td.LeafHashes = append(td.LeafHashes, append([]byte(nil), h[:]...))
		}
		out = append(out, td)
	}
	return out
}

// finalizeAndVerify finalizes p (btcd's finalizer for segwit v0; for taproot the BIP-342
// witness of the first leaf with enough signatures, built here) and runs every input through
// txscript's script engine with the standard verification flags.
func finalizeAndVerify(t *testing.T, f *fixture, p *psbt.Packet) *wire.MsgTx {
	t.Helper()
	var final *wire.MsgTx
	if f.desc.Type() != descriptor.P2TR {
		if err := psbt.MaybeFinalizeAll(p); err != nil {
			t.Fatalf("finalize: %v", err)
		}
		var err error
		if final, err = psbt.Extract(p); err != nil {
			t.Fatal(err)
		}
	} else {
		final = p.UnsignedTx.Copy()
		for i, in := range final.TxIn {
			c := f.chain.coins[in.PreviousOutPoint]
			d, _ := f.desc.Derive(c.Branch, c.Index)
			in.Witness = tapWitness(t, p.Inputs[i], d)
		}
	}
	f.verifyScripts(t, final)
	return final
}

// tapWitness builds the script-path witness of the first leaf whose threshold the PSBT's
// signatures meet: one item per key in reverse script order (signature or empty), the leaf
// script, the control block (BIP-342 multi_a satisfaction).
func tapWitness(t *testing.T, pin psbt.PInput, d *descriptor.Derived) wire.TxWitness {
	for _, l := range d.Taproot.Leaves {
		var items [][]byte
		n := 0
		for k := len(l.Keys) - 1; k >= 0; k-- {
			x := schnorr.SerializePubKey(l.Keys[k].PubKey)
			var sig []byte
			for _, s := range pin.TaprootScriptSpendSig {
				if string(s.XOnlyPubKey) == string(x) && string(s.LeafHash) == string(l.LeafHash[:]) {
					sig = s.Signature
					if s.SigHash != txscript.SigHashDefault {
						sig = append(append([]byte(nil), sig...), byte(s.SigHash))
					}
				}
			}
			if sig != nil && n < l.Threshold {
				n++
			} else {
				sig = nil
			}
			items = append(items, sig)
		}
		if n == l.Threshold {
			return append(items, l.Script, l.ControlBlock)
		}
	}
	t.Fatal("no leaf has enough signatures")
	return nil
}

// Analyze → SignInputs by two co-signers → finalize → script engine, for every output type;
// the vsize estimate is an upper bound within a few vbytes of the real one.
func TestSignEveryType(t *testing.T) {
	for _, kind := range walletKinds {
		t.Run(kind, func(t *testing.T) {
			f := newKindFixture(t, kind)
			in1 := f.addCoin(t, 0, 0, 60_000)
			in2 := f.addCoin(t, 1, 4, 50_000)
			p := f.build(t, []wire.OutPoint{in1, in2}, 70_000, 39_000, 3)
			a, err := Analyze(p, f.desc, f.chain)
			if err != nil {
				t.Fatal(err)
			}
			if a.Outflow != 71_000 || a.Fee != 1_000 || a.Outputs[1].Kind != KindChange || a.ScriptType != string(f.desc.Type()) || len(a.Warnings) != 0 {
				t.Fatalf("analysis %+v", a)
			}
			wantSigs := 2
			if kind == "tr-tree" {
				wantSigs = 4 // each key is in two of the three leaves
			}
			for _, k := range []*testKey{f.keys[0], f.keys[2]} {
				n, err := SignInputs(p, a, f.desc, slotOf(t, f.desc, k), k, f.chain)
				if err != nil || n != wantSigs {
					t.Fatalf("SignInputs = %d, %v", n, err)
				}
				// Signing again adds nothing and breaks nothing.
				if n, err := SignInputs(p, a, f.desc, slotOf(t, f.desc, k), k, f.chain); err != nil || n != 0 {
					t.Fatalf("second SignInputs = %d, %v", n, err)
				}
			}
			// The signed PSBT still analyses the same (our own additions pass our checks).
			s, _ := Encode(p, Base64)
			q, _, err := Decode(s)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Analyze(q, f.desc, f.chain); err != nil {
				t.Fatalf("signed PSBT refused: %v", err)
			}
			final := finalizeAndVerify(t, f, q)
			real := (int64(final.SerializeSizeStripped())*3 + int64(final.SerializeSize()) + 3) / 4
			t.Logf("%s: vsize estimate %d, real %d", kind, a.VSize, real)
			if real > a.VSize || a.VSize-real > 10 {
				t.Fatalf("vsize estimate %d, real %d", a.VSize, real)
			}
		})
	}
}

// A taproot input that asks for SIGHASH_ALL gets 65-byte signatures with the sighash byte.
func TestTaprootSighashAll(t *testing.T) {
	f := newKindFixture(t, "tr")
	op := f.addCoin(t, 0, 1, 100_000)
	p := f.build(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
	p.Inputs[0].SighashType = txscript.SigHashAll
	a, err := Analyze(p, f.desc, f.chain)
	if err != nil || a.Inputs[0].SighashType != uint32(txscript.SigHashAll) {
		t.Fatalf("%v %+v", err, a)
	}
	for _, k := range []*testKey{f.keys[0], f.keys[1]} {
		if _, err := SignInputs(p, a, f.desc, slotOf(t, f.desc, k), k, f.chain); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range p.Inputs[0].TaprootScriptSpendSig {
		if s.SigHash != txscript.SigHashAll {
			t.Fatalf("sighash %v", s.SigHash)
		}
	}
	finalizeAndVerify(t, f, p)
}

// v2 in, v2 out: a signed v2 PSBT is still v2 and carries the signatures.
func TestSignV2KeepsV2(t *testing.T) {
	for _, kind := range []string{"wsh", "tr"} {
		t.Run(kind, func(t *testing.T) {
			f := newKindFixture(t, kind)
			op := f.addCoin(t, 0, 1, 100_000)
			v2 := toV2(t, f.build(t, []wire.OutPoint{op}, 50_000, 49_000, 2), 0)
			p, enc, err := Decode(strings.ToUpper(hex.EncodeToString(v2)))
			if err != nil || enc != Hex {
				t.Fatal(err)
			}
			a, err := Analyze(p, f.desc, f.chain)
			if err != nil || a.PSBTVersion != 2 {
				t.Fatalf("%v %+v", err, a)
			}
			if _, err := SignInputs(p, a, f.desc, 0, f.keys[0], f.chain); err != nil {
				t.Fatal(err)
			}
			out, err := Encode(p, enc)
			if err != nil {
				t.Fatal(err)
			}
			q, _, err := Decode(out)
			if err != nil || PSBTVersion(q) != 2 || len(q.Inputs[0].PartialSigs)+len(q.Inputs[0].TaprootScriptSpendSig) != 1 {
				t.Fatalf("signed v2: %v version %d", err, PSBTVersion(q))
			}
		})
	}
}

// A policy that opts into another sighash type gets it: AnalyzeWith accepts it, SignInputs signs
// with it, and the signatures verify; without the option the same PSBT is refused, and an
// undefined type cannot be allowed at all.
func TestSighashOptIn(t *testing.T) {
	for _, kind := range []string{"wsh", "sh-wsh", "tr"} {
		t.Run(kind, func(t *testing.T) {
			f := newKindFixture(t, kind)
			op := f.addCoin(t, 0, 1, 100_000)
			h := txscript.SigHashSingle | txscript.SigHashAnyOneCanPay
			p := f.build(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
			p.Inputs[0].SighashType = h
			if _, err := Analyze(p, f.desc, f.chain); err == nil || !strings.Contains(err.Error(), "sighash") {
				t.Fatalf("strict Analyze: %v", err)
			}
			bogus := txscript.SigHashType(0x42)
			q := f.build(t, []wire.OutPoint{op}, 50_000, 49_000, 2)
			q.Inputs[0].SighashType = bogus
			if _, err := AnalyzeWith(q, f.desc, f.chain, AnalyzeOptions{AllowSighash: []txscript.SigHashType{bogus}}); err == nil {
				t.Fatal("undefined sighash type allowed")
			}
			a, err := AnalyzeWith(p, f.desc, f.chain, AnalyzeOptions{AllowSighash: []txscript.SigHashType{h}})
			if err != nil || a.Inputs[0].SighashType != uint32(h) {
				t.Fatalf("%v %+v", err, a)
			}
			for _, k := range []*testKey{f.keys[0], f.keys[1]} {
				if _, err := SignInputs(p, a, f.desc, slotOf(t, f.desc, k), k, f.chain); err != nil {
					t.Fatal(err)
				}
			}
			for _, s := range p.Inputs[0].PartialSigs {
				if txscript.SigHashType(s.Signature[len(s.Signature)-1]) != h {
					t.Fatalf("ECDSA signature sighash byte %#x", s.Signature[len(s.Signature)-1])
				}
			}
			for _, s := range p.Inputs[0].TaprootScriptSpendSig {
				if s.SigHash != h {
					t.Fatalf("taproot signature sighash %v", s.SigHash)
				}
			}
			finalizeAndVerify(t, f, p)
		})
	}
}
