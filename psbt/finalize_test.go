package psbt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// twoInputPSBT builds an unsigned 2-input payment of the fixture's wallet (kind wsh or sh-wsh).
func twoInputPSBT(t testing.TB, kind string) (*fixture, *psbt.Packet) {
	t.Helper()
	f := newKindFixture(t, kind)
	in1 := f.addCoin(t, 0, 0, 60_000)
	in2 := f.addCoin(t, 1, 4, 50_000)
	p := f.build(t, []wire.OutPoint{in1, in2}, 70_000, 39_000, 2)
	// A fixed payee (externalAddr is random), so that the signatures are the same every run.
	p.UnsignedTx.TxOut[0].PkScript = append([]byte{txscript.OP_0, txscript.OP_DATA_20}, bytes.Repeat([]byte{0x01}, 20)...)
	return f, p
}

// signedBy returns a copy of p signed by the fixture keys with the given indexes.
func signedBy(t testing.TB, f *fixture, p *psbt.Packet, keys ...int) *psbt.Packet {
	t.Helper()
	q, err := Clone(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		n, err := SignInputs(q, nil, f.desc, slotOf(t, f.desc, f.keys[k]), f.keys[k], f.chain)
		if err != nil || n != len(q.Inputs) {
			t.Fatalf("SignInputs(key %d) = %d, %v", k, n, err)
		}
	}
	return q
}

func countSigs(t *testing.T, f *fixture, p *psbt.Packet) int {
	t.Helper()
	n, err := Signatures(f.desc, p)
	if err != nil {
		t.Fatalf("Signatures: %v", err)
	}
	return n
}

func TestCombineSignaturesFinalize(t *testing.T) {
	for _, kind := range []string{"wsh", "sh-wsh"} {
		t.Run(kind, func(t *testing.T) {
			f, p := twoInputPSBT(t, kind)
			if n := countSigs(t, f, p); n != 0 {
				t.Fatalf("unsigned PSBT: %d signatures", n)
			}
			if _, err := Finalize(f.desc, p); !errors.Is(err, ErrTooFewSignatures) {
				t.Fatalf("Finalize(unsigned) = %v, want ErrTooFewSignatures", err)
			}
			pa, pb, pc := signedBy(t, f, p, 0), signedBy(t, f, p, 1), signedBy(t, f, p, 2)
			if n := countSigs(t, f, pa); n != 1 {
				t.Fatalf("signed by A: %d signatures, want 1", n)
			}
			if _, err := Finalize(f.desc, pa); !errors.Is(err, ErrTooFewSignatures) || !strings.Contains(err.Error(), "1 valid of 2") {
				t.Fatalf("Finalize(1 of 2) = %v, want ErrTooFewSignatures naming 1 valid of 2", err)
			}
			for _, c := range []struct {
				name   string
				others []*psbt.Packet
				want   int
			}{
				{"A+C", []*psbt.Packet{pc}, 2},
				{"A+B", []*psbt.Packet{pb}, 2},
				{"A+B+C", []*psbt.Packet{pb, pc}, 3},
				{"A+A+C (duplicate)", []*psbt.Packet{pa, pc}, 2},
				{"A+unsigned+C", []*psbt.Packet{p, pc}, 2},
			} {
				t.Run(c.name, func(t *testing.T) {
					comb, err := Combine(pa, c.others...)
					if err != nil {
						t.Fatal(err)
					}
					if n := countSigs(t, f, comb); n != c.want {
						t.Fatalf("combined: %d signatures, want %d", n, c.want)
					}
					if n := countSigs(t, f, pa); n != 1 {
						t.Fatalf("Combine modified its base: %d signatures", n)
					}
					tx, err := Finalize(f.desc, comb)
					if err != nil {
						t.Fatal(err)
					}
					if comb.Inputs[0].FinalScriptWitness != nil {
						t.Fatal("Finalize modified its PSBT")
					}
					bare := tx.Copy()
					for _, in := range bare.TxIn {
						in.SignatureScript, in.Witness = nil, nil
					}
					if bare.TxHash() != p.UnsignedTx.TxHash() {
						t.Fatalf("extracted tx without scriptSigs is %s, want the unsigned %s", bare.TxHash(), p.UnsignedTx.TxHash())
					}
					f.verifyScripts(t, tx) // the fixture's own engine run, against the chain's coins
					for i, in := range tx.TxIn {
						d, _ := f.desc.Derive(f.chain.coins[in.PreviousOutPoint].Branch, f.chain.coins[in.PreviousOutPoint].Index)
						w := in.Witness
						if len(w) != 4 || len(w[0]) != 0 || !bytes.Equal(w[3], d.WitnessScript) {
							t.Fatalf("input %d witness has %d items (want <empty> sig sig script)", i, len(w))
						}
						if kind == "sh-wsh" {
							want, _ := txscript.NewScriptBuilder().AddData(d.RedeemScript).Script()
							if !bytes.Equal(in.SignatureScript, want) {
								t.Fatalf("input %d scriptSig %x, want a push of the P2WSH program", i, in.SignatureScript)
							}
						} else if len(in.SignatureScript) != 0 {
							t.Fatalf("input %d: scriptSig %x on a native segwit input", i, in.SignatureScript)
						}
					}
				})
			}
		})
	}
}

// replaceSig returns a copy of p whose partial signature of key k on input i is sig.
func replaceSig(t *testing.T, f *fixture, p *psbt.Packet, i, k int, sig []byte) *psbt.Packet {
	t.Helper()
	q, err := Clone(p)
	if err != nil {
		t.Fatal(err)
	}
	c := f.chain.coins[q.UnsignedTx.TxIn[i].PreviousOutPoint]
	d, _ := f.desc.Derive(c.Branch, c.Index)
	var pub []byte
	for _, dk := range d.Keys {
		if dk.Slot == slotOf(t, f.desc, f.keys[k]) {
			pub = dk.PubKey.SerializeCompressed()
		}
	}
	j, ok := findPartialSig(q.Inputs[i].PartialSigs, pub)
	if !ok {
		t.Fatalf("input %d has no signature of key %d", i, k)
	}
	q.Inputs[i].PartialSigs[j].Signature = sig
	return q
}

func sigOf(t *testing.T, f *fixture, p *psbt.Packet, i, k int) []byte {
	t.Helper()
	c := f.chain.coins[p.UnsignedTx.TxIn[i].PreviousOutPoint]
	d, _ := f.desc.Derive(c.Branch, c.Index)
	for _, dk := range d.Keys {
		if dk.Slot == slotOf(t, f.desc, f.keys[k]) {
			if j, ok := findPartialSig(p.Inputs[i].PartialSigs, dk.PubKey.SerializeCompressed()); ok {
				return p.Inputs[i].PartialSigs[j].Signature
			}
		}
	}
	t.Fatalf("input %d has no signature of key %d", i, k)
	return nil
}

// highS turns a valid low-S DER signature (with sighash byte) into its high-S twin (still valid
// ECDSA, but not standard: BIP-146 LOW_S).
func highS(t *testing.T, sig []byte) []byte {
	t.Helper()
	s, err := ecdsa.ParseDERSignature(sig[:len(sig)-1])
	if err != nil {
		t.Fatal(err)
	}
	der := s.Serialize()
	// DER: 30 len 02 rlen r 02 slen s
	rlen := int(der[3])
	sBytes := der[4+rlen+2:]
	var sc btcec.ModNScalar
	sc.SetByteSlice(sBytes)
	sc.Negate()
	hs := sc.Bytes()
	sv := bytes.TrimLeft(hs[:], "\x00")
	if sv[0]&0x80 != 0 {
		sv = append([]byte{0}, sv...)
	}
	body := append([]byte{0x02, der[3]}, der[4:4+rlen]...)
	body = append(body, 0x02, byte(len(sv)))
	body = append(body, sv...)
	out := append([]byte{0x30, byte(len(body))}, body...)
	return append(out, sig[len(sig)-1])
}

func TestFinalizeRefusesBadSignatures(t *testing.T) {
	f, p := twoInputPSBT(t, "wsh")
	pa, pc := signedBy(t, f, p, 0), signedBy(t, f, p, 2)
	otherInput := sigOf(t, f, pc, 1, 2) // valid DER, key C's, but over input 1's sighash
	wrongType := append(append([]byte(nil), sigOf(t, f, pc, 0, 2)[:len(sigOf(t, f, pc, 0, 2))-1]...), byte(txscript.SigHashNone))
	// btcutil/psbt refuses signatures over 72 bytes with the sighash byte: the high-S twin of a
	// signature with a 33-byte R is too long for it, so take an input whose R is shorter.
	hs := -1
	for i := range pc.Inputs {
		if len(highS(t, sigOf(t, f, pc, i, 2))) <= 72 {
			hs = i
			break
		}
	}
	if hs < 0 {
		t.Fatal("no signature of key C with a short R in the fixture (change the fixed payee)")
	}
	for _, c := range []struct {
		name, why string
		input     int
		bad       *psbt.Packet
	}{
		{"signature over another input", "does not verify", 0, replaceSig(t, f, pc, 0, 2, otherInput)},
		{"sighash byte NONE", "sighash type", 0, replaceSig(t, f, pc, 0, 2, wrongType)},
		{"high S", "low-S", hs, replaceSig(t, f, pc, hs, 2, highS(t, sigOf(t, f, pc, hs, 2)))},
	} {
		t.Run(c.name, func(t *testing.T) {
			comb, err := Combine(pa, c.bad)
			if err != nil {
				t.Fatal(err)
			}
			if n := countSigs(t, f, comb); n != 1 {
				t.Fatalf("Signatures = %d, want 1 (the bad one not counted)", n)
			}
			_, err = Finalize(f.desc, comb)
			if in := fmt.Sprintf("input %d", c.input); !errors.Is(err, ErrTooFewSignatures) || !strings.Contains(err.Error(), in) || !strings.Contains(err.Error(), c.why) {
				t.Fatalf("Finalize = %v, want ErrTooFewSignatures for %s saying %q", err, in, c.why)
			}
		})
	}
	t.Run("signature by a key outside the script", func(t *testing.T) {
		q, _ := Clone(pa)
		stranger, _ := btcec.NewPrivateKey()
		q.Inputs[0].PartialSigs = append(q.Inputs[0].PartialSigs, &psbt.PartialSig{PubKey: stranger.PubKey().SerializeCompressed(), Signature: otherInput})
		if n := countSigs(t, f, q); n != 1 {
			t.Fatalf("Signatures = %d, want 1", n)
		}
		if _, err := Finalize(f.desc, q); !errors.Is(err, ErrTooFewSignatures) || !strings.Contains(err.Error(), "not in the input's script") {
			t.Fatalf("Finalize = %v", err)
		}
	})
}

func TestCombineRefuses(t *testing.T) {
	f, p := twoInputPSBT(t, "wsh")
	pa, pc := signedBy(t, f, p, 0), signedBy(t, f, p, 2)
	_, other := twoInputPSBT(t, "wsh")
	other.UnsignedTx.LockTime++
	conflictingSig := replaceSig(t, f, pa, 0, 0, sigOf(t, f, pa, 1, 0))
	badUTXO, _ := Clone(pc)
	badUTXO.Inputs[1].WitnessUtxo = wire.NewTxOut(badUTXO.Inputs[1].WitnessUtxo.Value+1, badUTXO.Inputs[1].WitnessUtxo.PkScript)
	badScript, _ := Clone(pc)
	badScript.Outputs[1].WitnessScript = append([]byte{txscript.OP_1}, badScript.Outputs[1].WitnessScript[1:]...)
	badDeriv, _ := Clone(pc)
	badDeriv.Inputs[0].Bip32Derivation[0].Bip32Path = append([]uint32(nil), badDeriv.Inputs[0].Bip32Derivation[0].Bip32Path...)
	badDeriv.Inputs[0].Bip32Derivation[0].Bip32Path[0]++
	for _, c := range []struct {
		name, want string
		other      *psbt.Packet
	}{
		{"different unsigned transaction", "unsigned transaction", other},
		{"conflicting partial signature", "input 0: partial signature", conflictingSig},
		{"conflicting witness utxo", "input 1: witness_utxo differs", badUTXO},
		{"conflicting output witness script", "output 1: witness script differs", badScript},
		{"conflicting derivation", "input 0: BIP32 derivation", badDeriv},
		{"nil", "empty", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Combine(pa, c.other)
			if !errors.Is(err, ErrCombine) || !strings.Contains(err.Error(), c.want) || got != nil {
				t.Fatalf("Combine = %v, %v; want ErrCombine saying %q", got, err, c.want)
			}
		})
	}
}

func TestSignaturesAndFinalizeRefuse(t *testing.T) {
	f, p := twoInputPSBT(t, "wsh")
	pac := signedBy(t, f, p, 0, 2)
	noDeriv, _ := Clone(pac)
	noDeriv.Inputs[1].Bip32Derivation = nil
	noUTXO, _ := Clone(pac)
	noUTXO.Inputs[0].WitnessUtxo = nil
	foreign, _ := Clone(pac)
	foreign.Inputs[0].WitnessUtxo = wire.NewTxOut(foreign.Inputs[0].WitnessUtxo.Value, []byte{txscript.OP_TRUE})
	for _, c := range []struct {
		name string
		q    *psbt.Packet
	}{{"no derivation", noDeriv}, {"no utxo", noUTXO}, {"foreign script", foreign}} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Signatures(f.desc, c.q); !errors.Is(err, ErrInputUnresolved) {
				t.Fatalf("Signatures = %v, want ErrInputUnresolved", err)
			}
			if _, err := Finalize(f.desc, c.q); !errors.Is(err, ErrInputUnresolved) {
				t.Fatalf("Finalize = %v, want ErrInputUnresolved", err)
			}
		})
	}
	t.Run("taproot wallet", func(t *testing.T) {
		ft := newKindFixture(t, "tr")
		// A wsh PSBT checked against a tr() wallet: its derivations do not derive the scripts.
		if _, err := Signatures(ft.desc, pac); !errors.Is(err, ErrInputUnresolved) {
			t.Fatalf("Signatures = %v", err)
		}
		if _, err := Finalize(ft.desc, pac); !errors.Is(err, ErrInputUnresolved) {
			t.Fatalf("Finalize = %v", err)
		}
	})
}

// FuzzCombineFinalize feeds two arbitrary PSBTs to Combine, and a successful combination to
// Signatures and Finalize against the fixture wallet: no panic, and a finalized transaction
// always spends the combined PSBT's unsigned transaction.
func FuzzCombineFinalize(f *testing.F) {
	fx := newKindFixture(f, "wsh")
	in1 := fx.addCoin(f, 0, 0, 60_000)
	in2 := fx.addCoin(f, 1, 4, 50_000)
	p := fx.build(f, []wire.OutPoint{in1, in2}, 70_000, 39_000, 2)
	sign := func(k int) *psbt.Packet {
		q, _ := Clone(p)
		if _, err := SignInputs(q, nil, fx.desc, slotOf(f, fx.desc, fx.keys[k]), fx.keys[k], fx.chain); err != nil {
			f.Fatal(err)
		}
		return q
	}
	pa, pc := sign(0), sign(2)
	fuzzCombineFinalize(f, fx, [][2]*psbt.Packet{{pa, pc}, {p, pa}, {pa, pa}}, func(t *testing.T, comb *psbt.Packet, tx *wire.MsgTx) {
		if len(tx.TxIn) != len(comb.UnsignedTx.TxIn) || tx.TxIn[0].PreviousOutPoint != comb.UnsignedTx.TxIn[0].PreviousOutPoint {
			t.Fatalf("finalized transaction does not spend the PSBT's inputs")
		}
	})
}

// TestFinalizeBuiltPSBT runs the whole BIP-174 life of a PSBT the builder made (Creator and
// Updater: Build; Signer: SignInputs by two co-signers separately; Combiner; Finalizer and
// Extractor), for wsh and sh(wsh) wallets, with the finalized vsize no larger than the builder's
// estimate.
func TestFinalizeBuiltPSBT(t *testing.T) {
	for _, kind := range []string{"wsh", "sh-wsh"} {
		t.Run(kind, func(t *testing.T) {
			f := newKindFixture(t, kind)
			txs := prevTxs{}
			coins := []UTXO{f.fundCoin(t, txs, 0, 1, 70_000), f.fundCoin(t, txs, 1, 2, 40_000)}
			pays := []Payment{{Address: externalAddr, Amount: 90_000}}
			params, err := NewSelectParams(f.desc, pays)
			if err != nil {
				t.Fatal(err)
			}
			params.Rand = rand.New(rand.NewPCG(1, 2))
			sel, err := Select(coins, 90_000, 2, params)
			if err != nil {
				t.Fatal(err)
			}
			p, err := Build(context.Background(), f.desc, sel, pays, BuildOptions{ChangeIndex: 1, TipHeight: f.chain.tip, Rand: params.Rand}, txs)
			if err != nil {
				t.Fatal(err)
			}
			a, err := Analyze(p, f.desc, f.chain)
			if err != nil {
				t.Fatal(err)
			}
			comb, err := Combine(p, signedBy(t, f, p, 1), signedBy(t, f, p, 2))
			if err != nil {
				t.Fatal(err)
			}
			tx, err := Finalize(f.desc, comb)
			if err != nil {
				t.Fatal(err)
			}
			f.verifyScripts(t, tx)
			if v := finalVSize(tx); v > a.VSize {
				t.Fatalf("finalized vsize %d above the estimate %d", v, a.VSize)
			}
		})
	}
}
