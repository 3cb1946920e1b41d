package psbt

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
)

// builtTaproot runs the Creator and Updater (Select, Build) on a tr() fixture wallet: two coins,
// one payment, a change output at change index 1. It returns the fixture and the unsigned PSBT.
func builtTaproot(t testing.TB, kind string) (*fixture, *psbt.Packet) {
	t.Helper()
	f := newKindFixture(t, kind)
	txs := prevTxs{}
	coins := []UTXO{f.fundCoin(t, txs, 0, 1, 70_000), f.fundCoin(t, txs, 1, 2, 40_000)}
	pays := []Payment{{Address: externalAddr, Amount: 90_000}}
	params, err := NewSelectParams(f.desc, pays)
	if err != nil {
		t.Fatal(err)
	}
	params.Rand = rand.New(rand.NewPCG(7, 8))
	sel, err := Select(coins, 90_000, 2, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(sel.Inputs) != 2 || sel.Change == 0 {
		t.Fatalf("selection %+v: want both coins and change", sel)
	}
	p, err := Build(context.Background(), f.desc, sel, pays, BuildOptions{ChangeIndex: 1, TipHeight: f.chain.tip, Rand: params.Rand}, txs)
	if err != nil {
		t.Fatal(err)
	}
	return f, p
}

// TestBuildTaprootFields checks the BIP-371 fields Build writes for tr() wallets
// (https://github.com/bitcoin/bips/blob/master/bip-0371.mediawiki): on every input the internal
// key, merkle root, a leaf script with its control block per leaf and a tap_bip32_derivation per
// key carrying the leaf hashes of its leaves; on the change output the internal key, the tap
// tree and the derivations; and that Analyze accepts the PSBT and recognizes the change.
func TestBuildTaprootFields(t *testing.T) {
	for _, kind := range []string{"tr", "tr-tree"} {
		t.Run(kind, func(t *testing.T) {
			f, p := builtTaproot(t, kind)
			// The PSBT survives serialization, as it travels over NIP-46.
			s, err := Encode(p, Base64)
			if err != nil {
				t.Fatal(err)
			}
			if p, _, err = Decode(s); err != nil {
				t.Fatal(err)
			}
			for i, in := range p.UnsignedTx.TxIn {
				c := f.chain.coins[in.PreviousOutPoint]
				d, err := f.desc.Derive(c.Branch, c.Index)
				if err != nil {
					t.Fatal(err)
				}
				pin := p.Inputs[i]
				if pin.WitnessUtxo == nil || pin.NonWitnessUtxo == nil || pin.WitnessScript != nil || pin.RedeemScript != nil || len(pin.Bip32Derivation) != 0 {
					t.Fatalf("input %d: utxo or segwit v0 fields wrong: %+v", i, pin)
				}
				if !bytes.Equal(pin.TaprootInternalKey, schnorr.SerializePubKey(d.Taproot.InternalKey)) || !bytes.Equal(pin.TaprootMerkleRoot, d.Taproot.MerkleRoot) {
					t.Fatalf("input %d: internal key %x merkle root %x", i, pin.TaprootInternalKey, pin.TaprootMerkleRoot)
				}
				// The internal key and merkle root commit to the output key the coin pays to.
				q := txscript.ComputeTaprootOutputKey(d.Taproot.InternalKey, pin.TaprootMerkleRoot)
				if !bytes.Equal(c.PkScript[2:], schnorr.SerializePubKey(q)) {
					t.Fatalf("input %d: fields do not make the output key", i)
				}
				if len(pin.TaprootLeafScript) != len(d.Taproot.Leaves) {
					t.Fatalf("input %d: %d leaf scripts, want %d", i, len(pin.TaprootLeafScript), len(d.Taproot.Leaves))
				}
				for _, ls := range pin.TaprootLeafScript {
					cb, err := txscript.ParseControlBlock(ls.ControlBlock)
					if err != nil {
						t.Fatal(err)
					}
					// BIP-341 script-path check: the control block proves the leaf in the output key.
					if err := txscript.VerifyTaprootLeafCommitment(cb, c.PkScript[2:], ls.Script); err != nil {
						t.Fatalf("input %d: leaf script does not commit to the output: %v", i, err)
					}
				}
				if len(pin.TaprootBip32Derivation) != 3 {
					t.Fatalf("input %d: %d tap derivations, want 3", i, len(pin.TaprootBip32Derivation))
				}
				for _, td := range pin.TaprootBip32Derivation {
					leaves := 0
					for _, l := range d.Taproot.Leaves {
						for _, k := range l.Keys {
							if bytes.Equal(schnorr.SerializePubKey(k.PubKey), td.XOnlyPubKey) {
								leaves++
							}
						}
					}
					if leaves == 0 || len(td.LeafHashes) != leaves {
						t.Fatalf("input %d: key %x has %d leaf hashes, is in %d leaves", i, td.XOnlyPubKey, len(td.LeafHashes), leaves)
					}
				}
			}
			a, err := Analyze(p, f.desc, f.chain)
			if err != nil {
				t.Fatalf("Analyze on the built PSBT: %v", err)
			}
			changes := 0
			for _, o := range a.Outputs {
				if o.Kind != KindChange {
					continue
				}
				changes++
				pout := p.Outputs[o.Index]
				cd, _ := f.desc.Derive(ChangeBranch, 1)
				if !bytes.Equal(pout.TaprootInternalKey, schnorr.SerializePubKey(cd.Taproot.InternalKey)) || len(pout.TaprootBip32Derivation) != 3 {
					t.Fatalf("change output: internal key %x, %d tap derivations", pout.TaprootInternalKey, len(pout.TaprootBip32Derivation))
				}
				checkTapTree(t, pout.TaprootTapTree, cd.Taproot)
			}
			if changes != 1 {
				t.Fatalf("%d change outputs, want 1", changes)
			}
		})
	}
}

// checkTapTree parses a PSBT_OUT_TAP_TREE value (BIP-371: {depth, leaf version, compact-size
// script}…) independently of tapTree and checks that the tree it describes has tr's merkle root.
func checkTapTree(t *testing.T, raw []byte, tr *descriptor.TaprootDerived) {
	t.Helper()
	type leaf struct {
		depth int
		hash  chainhash.Hash
	}
	var stack []leaf
	r := bytes.NewReader(raw)
	n := 0
	for r.Len() > 0 {
		depth, _ := r.ReadByte()
		version, _ := r.ReadByte()
		script, err := wire.ReadVarBytes(r, 0, txscript.MaxScriptSize, "script")
		if err != nil {
			t.Fatalf("tap tree: %v", err)
		}
		h := txscript.NewTapLeaf(txscript.TapscriptLeafVersion(version), script).TapHash()
		cur := leaf{int(depth), h}
		// Combine with the stack while the top is a sibling at the same depth.
		for len(stack) > 0 && stack[len(stack)-1].depth == cur.depth && cur.depth > 0 {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			a, b := top.hash, cur.hash
			if bytes.Compare(a[:], b[:]) > 0 {
				a, b = b, a
			}
			cur = leaf{cur.depth - 1, *chainhash.TaggedHash(chainhash.TagTapBranch, a[:], b[:])}
		}
		stack = append(stack, cur)
		n++
	}
	if n != len(tr.Leaves) || len(stack) != 1 || stack[0].depth != 0 || !bytes.Equal(stack[0].hash[:], tr.MerkleRoot) {
		t.Fatalf("tap tree of %d leaves does not hash to the merkle root (stack %d)", n, len(stack))
	}
}

// TestFinalizeTaproot runs the BIP-174 life of a taproot PSBT the builder made: SignInputs by
// co-signers separately, Combine, Signatures, Finalize (BIP-342 script-path witness), and the
// script engine; with the finalized vsize no larger than the builder's estimate.
func TestFinalizeTaproot(t *testing.T) {
	for _, kind := range []string{"tr", "tr-tree"} {
		t.Run(kind, func(t *testing.T) {
			f, p := builtTaproot(t, kind)
			a, err := Analyze(p, f.desc, f.chain)
			if err != nil {
				t.Fatal(err)
			}
			if n := countSigs(t, f, p); n != 0 {
				t.Fatalf("unsigned PSBT: %d signatures", n)
			}
			if _, err := Finalize(f.desc, p); !errors.Is(err, ErrTooFewSignatures) {
				t.Fatalf("Finalize(unsigned) = %v, want ErrTooFewSignatures", err)
			}
			pa, pb, pc := tapSignedBy(t, f, p, 0), tapSignedBy(t, f, p, 1), tapSignedBy(t, f, p, 2)
			if n := countSigs(t, f, pa); n != 1 {
				t.Fatalf("signed by A: %d signatures, want 1", n)
			}
			if _, err := Finalize(f.desc, pa); !errors.Is(err, ErrTooFewSignatures) || !strings.Contains(err.Error(), "1 valid of 2") {
				t.Fatalf("Finalize(1 of 2) = %v, want ErrTooFewSignatures naming 1 valid of 2", err)
			}
			for _, c := range []struct {
				name   string
				others []*psbt.Packet
				exact  bool // exactly the threshold on one leaf: the witness is the reference one
			}{
				{"A+C", []*psbt.Packet{pc}, true},
				{"A+B", []*psbt.Packet{pb}, true},
				{"A+B+C", []*psbt.Packet{pb, pc}, kind == "tr-tree"},
				{"A+unsigned+C", []*psbt.Packet{p, pc}, true},
			} {
				t.Run(c.name, func(t *testing.T) {
					comb, err := Combine(pa, c.others...)
					if err != nil {
						t.Fatal(err)
					}
					if n := countSigs(t, f, comb); n < 2 {
						t.Fatalf("combined: %d signatures, want at least 2", n)
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
						in.Witness = nil
					}
					if bare.TxHash() != p.UnsignedTx.TxHash() {
						t.Fatal("extracted tx is not the unsigned one")
					}
					f.verifyScripts(t, tx)
					if v := finalVSize(tx); v > a.VSize {
						t.Fatalf("finalized vsize %d above the estimate %d", v, a.VSize)
					}
					for i, in := range tx.TxIn {
						coin := f.chain.coins[in.PreviousOutPoint]
						d, _ := f.desc.Derive(coin.Branch, coin.Index)
						w := in.Witness
						sigs := 0
						for _, item := range w[:len(w)-2] {
							if len(item) == schnorr.SignatureSize {
								sigs++
							} else if len(item) != 0 {
								t.Fatalf("input %d: witness item of %d bytes", i, len(item))
							}
						}
						if sigs != 2 {
							t.Fatalf("input %d: %d signatures in the witness, want exactly the threshold 2", i, sigs)
						}
						if li := leafIndex(d.Taproot, w[len(w)-2], w[len(w)-1], txscript.BaseLeafVersion); li < 0 || len(w) != len(d.Taproot.Leaves[li].Keys)+2 {
							t.Fatalf("input %d: witness does not end with a leaf script and its control block", i)
						}
						if c.exact {
							want := tapWitness(t, comb.Inputs[i], d)
							if len(want) != len(w) {
								t.Fatalf("input %d: witness of %d items, want %d", i, len(w), len(want))
							}
							for k := range w {
								if !bytes.Equal(w[k], want[k]) {
									t.Fatalf("input %d: witness item %d differs from the BIP-342 reference", i, k)
								}
							}
						}
					}
				})
			}
		})
	}
}

// TestFinalizeTaprootRefusesBadSignatures: a script-path signature that is for another leaf,
// a leaf outside the tree, another sighash type, a key not in the leaf, or a corrupted one is
// not counted, and Finalize says why.
func TestFinalizeTaprootRefusesBadSignatures(t *testing.T) {
	f, p := builtTaproot(t, "tr-tree")
	d0 := func(q *psbt.Packet) *descriptor.TaprootDerived {
		c := f.chain.coins[q.UnsignedTx.TxIn[0].PreviousOutPoint]
		d, _ := f.desc.Derive(c.Branch, c.Index)
		return d.Taproot
	}
	tr := d0(p)
	// tr-tree: leaf 0 = multi_a(2,A,B), leaf 1 = sortedmulti_a(2,A,C), leaf 2 = multi_a(2,B,C).
	comb, err := Combine(tapSignedBy(t, f, p, 0), tapSignedBy(t, f, p, 2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Finalize(f.desc, comb); err != nil {
		t.Fatalf("A+C: %v", err)
	}
	xA := schnorr.SerializePubKey(tr.Leaves[0].Keys[0].PubKey)
	var xC []byte
	for _, k := range tr.Leaves[2].Keys {
		if k.Slot == slotOf(t, f.desc, f.keys[2]) {
			xC = schnorr.SerializePubKey(k.PubKey)
		}
	}
	// mutate changes C's signature on leaf 1 of input 0 (the one A+C needs).
	mutate := func(name, want string, change func(s *psbt.TaprootScriptSpendSig)) {
		t.Run(name, func(t *testing.T) {
			q, _ := Clone(comb)
			found := false
			for _, s := range q.Inputs[0].TaprootScriptSpendSig {
				if bytes.Equal(s.XOnlyPubKey, xC) && bytes.Equal(s.LeafHash, tr.Leaves[1].LeafHash[:]) {
					change(s)
					found = true
				}
			}
			if !found {
				t.Fatal("no signature of C for leaf 1")
			}
			if n := countSigs(t, f, q); n != 1 {
				t.Fatalf("Signatures = %d, want 1 (the bad signature not counted)", n)
			}
			_, err := Finalize(f.desc, q)
			if !errors.Is(err, ErrTooFewSignatures) || !strings.Contains(err.Error(), want) {
				t.Fatalf("Finalize = %v, want ErrTooFewSignatures saying %q", err, want)
			}
		})
	}
	mutate("signature for another leaf", "does not verify", func(s *psbt.TaprootScriptSpendSig) {
		// A's signature for leaf 0 presented as C's for leaf 1.
		s.Signature = sigFor(t, comb, xA, tr.Leaves[0].LeafHash[:])
	})
	mutate("leaf outside the tree", "not in the wallet's script tree", func(s *psbt.TaprootScriptSpendSig) {
		s.LeafHash = bytes.Repeat([]byte{7}, 32)
	})
	mutate("key not in the leaf", "is not in leaf", func(s *psbt.TaprootScriptSpendSig) {
		s.LeafHash = append([]byte(nil), tr.Leaves[0].LeafHash[:]...)
	})
	mutate("sighash type", "sighash type", func(s *psbt.TaprootScriptSpendSig) {
		s.SigHash = txscript.SigHashAll
	})
	mutate("corrupted", "does not verify", func(s *psbt.TaprootScriptSpendSig) {
		s.Signature = append([]byte(nil), s.Signature...)
		s.Signature[10] ^= 1
	})
	t.Run("ECDSA partial signature on a taproot input", func(t *testing.T) {
		q, _ := Clone(tapSignedBy(t, f, p, 0))
		priv, _ := btcec.NewPrivateKey()
		der := append(ecdsa.Sign(priv, bytes.Repeat([]byte{1}, 32)).Serialize(), byte(txscript.SigHashAll))
		q.Inputs[0].PartialSigs = append(q.Inputs[0].PartialSigs, &psbt.PartialSig{PubKey: tr.Leaves[0].Keys[1].PubKey.SerializeCompressed(), Signature: der})
		if _, err := Finalize(f.desc, q); !errors.Is(err, ErrTooFewSignatures) || !strings.Contains(err.Error(), "on a taproot input") {
			t.Fatalf("Finalize = %v", err)
		}
	})
}

// sigFor returns the script-path signature of key xOnly for leaf leafHash on input 0 of p.
func sigFor(t *testing.T, p *psbt.Packet, xOnly, leafHash []byte) []byte {
	t.Helper()
	for _, s := range p.Inputs[0].TaprootScriptSpendSig {
		if bytes.Equal(s.XOnlyPubKey, xOnly) && bytes.Equal(s.LeafHash, leafHash) {
			return s.Signature
		}
	}
	t.Fatalf("no signature of %x for leaf %x", xOnly, leafHash)
	return nil
}

// TestCheckAnswerTaproot: the coordinator accepts a co-signer's answer to a taproot PSBT only
// when it adds a valid script-path signature on every input.
func TestCheckAnswerTaproot(t *testing.T) {
	f, p := builtTaproot(t, "tr")
	asked := tapSignedBy(t, f, p, 0)
	WithoutSignatures(asked)
	ins, err := Resolve(f.desc, asked)
	if err != nil {
		t.Fatal(err)
	}
	good, err := Encode(tapSignedBy(t, f, asked, 1), Base64)
	if err != nil {
		t.Fatal(err)
	}
	got, err := CheckAnswer(asked, ins, good)
	if err != nil {
		t.Fatalf("valid answer refused: %v", err)
	}
	comb, err := Combine(tapSignedBy(t, f, p, 0), got)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Finalize(f.desc, comb); err != nil {
		t.Fatal(err)
	}
	bad := tapSignedBy(t, f, asked, 1)
	bad.Inputs[1].TaprootScriptSpendSig[0].Signature[0] ^= 1
	badText, _ := Encode(bad, Base64)
	if _, err := CheckAnswer(asked, ins, badText); err == nil || !strings.Contains(err.Error(), "input 1") {
		t.Fatalf("forged answer: %v", err)
	}
	none, _ := Encode(asked, Base64)
	if _, err := CheckAnswer(asked, ins, none); err == nil || !strings.Contains(err.Error(), "no new partial signature") {
		t.Fatalf("answer without signatures: %v", err)
	}
}

// tapSignedBy returns a copy of p signed by the fixture keys with the given indexes (each key
// signs every leaf it is in, so a tree wallet gets several signatures per input and key).
func tapSignedBy(t testing.TB, f *fixture, p *psbt.Packet, keys ...int) *psbt.Packet {
	t.Helper()
	q, err := Clone(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if n, err := SignInputs(q, nil, f.desc, slotOf(t, f.desc, f.keys[k]), f.keys[k], f.chain); err != nil || n < len(q.Inputs) {
			t.Fatalf("SignInputs(key %d) = %d, %v", k, n, err)
		}
	}
	return q
}

// FuzzFinalizeTaproot feeds two arbitrary PSBTs to Combine, and a successful combination to
// Signatures and Finalize against the tr-tree fixture wallet: no panic, and a finalized
// transaction is always the combined PSBT's unsigned transaction with a script-path witness on
// every input (Finalize itself runs it through the script engine).
func FuzzFinalizeTaproot(f *testing.F) {
	fx, p := builtTaproot(f, "tr-tree")
	pa, pb, pc := tapSignedBy(f, fx, p, 0), tapSignedBy(f, fx, p, 1), tapSignedBy(f, fx, p, 2)
	fuzzCombineFinalize(f, fx, [][2]*psbt.Packet{{pa, pc}, {pb, pc}, {p, pa}, {pa, pa}}, func(t *testing.T, comb *psbt.Packet, tx *wire.MsgTx) {
		if tx.TxHash() != comb.UnsignedTx.TxHash() || len(tx.TxIn) != len(comb.UnsignedTx.TxIn) {
			t.Fatalf("finalized transaction is not the PSBT's")
		}
		for i, in := range tx.TxIn {
			if len(in.Witness) < 4 {
				t.Fatalf("input %d: witness of %d items", i, len(in.Witness))
			}
		}
	})
}
