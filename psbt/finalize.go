package psbt

// BIP-174 Input Finalizer role for the wallet's own transactions
// (https://github.com/bitcoin/bips/blob/master/bip-0174.mediawiki#input-finalizer): the
// partial signatures that co-signers returned (merged by Combine) are checked and counted
// (Signatures), and once a threshold of them is valid on every input turned into the final
// witnesses (Finalize), whose network transaction extract.go takes out and runs through
// txscript's script engine before it is returned. wsh / sh(wsh) multisig inputs carry ECDSA
// partial signatures (BIP-174); tr() inputs Schnorr script-path signatures of multi_a /
// sortedmulti_a leaves (BIP-371 PSBT_IN_TAP_SCRIPT_SIG, BIP-342 witnesses).

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/ecdsa"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
)

// resolvedInput is one input of a PSBT tied to the registered descriptor: the script it
// spends (re-derived from the descriptor) and the previous output.
type resolvedInput struct {
	derived *descriptor.Derived
	prevOut *wire.TxOut
}

// resolveInputs ties every input of p to desc: the previous output comes from the witness UTXO
// (or the non_witness_utxo, which must hash to the input's txid), and its script must be the
// one desc derives at the (branch, index) of one of the input's BIP32 derivations of the
// wallet's keys (PSBT_IN_BIP32_DERIVATION, or PSBT_IN_TAP_BIP32_DERIVATION for tr() wallets).
// Errors: ErrInputUnresolved.
func resolveInputs(desc *descriptor.Descriptor, p *psbt.Packet) ([]resolvedInput, error) {
	if p == nil || p.UnsignedTx == nil || len(p.Inputs) != len(p.UnsignedTx.TxIn) {
		return nil, fmt.Errorf("%w: malformed PSBT", ErrInputUnresolved)
	}
	out := make([]resolvedInput, len(p.Inputs))
	for i := range p.Inputs {
		pin := &p.Inputs[i]
		prev := pin.WitnessUtxo
		op := p.UnsignedTx.TxIn[i].PreviousOutPoint
		if prev == nil && pin.NonWitnessUtxo != nil {
			if pin.NonWitnessUtxo.TxHash() != op.Hash || int(op.Index) >= len(pin.NonWitnessUtxo.TxOut) {
				return nil, fmt.Errorf("%w: input %d: non_witness_utxo is not the transaction %s", ErrInputUnresolved, i, op.Hash)
			}
			prev = pin.NonWitnessUtxo.TxOut[op.Index]
		}
		if prev == nil {
			return nil, fmt.Errorf("%w: input %d: no witness_utxo or non_witness_utxo", ErrInputUnresolved, i)
		}
		type origin struct {
			fp   uint32
			path []uint32
		}
		var origins []origin
		for _, bd := range pin.Bip32Derivation {
			origins = append(origins, origin{bd.MasterKeyFingerprint, bd.Bip32Path})
		}
		for _, td := range pin.TaprootBip32Derivation {
			origins = append(origins, origin{td.MasterKeyFingerprint, td.Bip32Path})
		}
		var d *descriptor.Derived
		for _, o := range origins {
			var fp [4]byte
			binary.LittleEndian.PutUint32(fp[:], o.fp)
			branch, index, ok := desc.MatchPath(fp, o.path)
			if !ok {
				continue
			}
			if cand, err := desc.Derive(branch, index); err == nil && bytes.Equal(cand.PkScript, prev.PkScript) {
				d = cand
				break
			}
		}
		if d == nil {
			return nil, fmt.Errorf("%w: input %d (%s): no BIP32 derivation of the wallet's keys derives the script it spends", ErrInputUnresolved, i, op)
		}
		out[i] = resolvedInput{derived: d, prevOut: prev}
	}
	return out, nil
}

// sigHashes computes the BIP-143 (and BIP-341) sighash midstate of p's transaction.
func sigHashes(p *psbt.Packet, ins []resolvedInput) *txscript.TxSigHashes {
	return txscript.NewTxSigHashes(p.UnsignedTx, prevOutFetcher(p, ins))
}

// prevOutFetcher gives the previous outputs of p's inputs (BIP-341 sighashes commit to all).
func prevOutFetcher(p *psbt.Packet, ins []resolvedInput) *txscript.MultiPrevOutFetcher {
	prev := txscript.NewMultiPrevOutFetcher(nil)
	for i, in := range p.UnsignedTx.TxIn {
		prev.AddPrevOut(in.PreviousOutPoint, ins[i].prevOut)
	}
	return prev
}

// verifyPartialSig checks one segwit v0 partial signature (PSBT_IN_PARTIAL_SIG) of input i: the
// key must be one of the input's script keys, the signature strict DER with a low S (BIP-66,
// BIP-146 rules that the standard script flags enforce) followed by the input's sighash type
// (PSBT_IN_SIGHASH_TYPE, SIGHASH_ALL when absent), and valid for that key over the BIP-143
// sighash of the witness script. It returns nil or why the signature is not valid.
func verifyPartialSig(p *psbt.Packet, i int, in resolvedInput, hashes *txscript.TxSigHashes, ps *psbt.PartialSig) error {
	if in.derived.Taproot != nil {
		return fmt.Errorf("ECDSA partial signature of key %x on a taproot input", ps.PubKey)
	}
	inScript := false
	for _, k := range in.derived.Keys {
		if bytes.Equal(k.PubKey.SerializeCompressed(), ps.PubKey) {
			inScript = true
		}
	}
	if !inScript {
		return fmt.Errorf("key %x is not in the input's script", ps.PubKey)
	}
	want := txscript.SigHashAll
	if h := p.Inputs[i].SighashType; h != 0 {
		want = h
	}
	if len(ps.Signature) < 9 {
		return fmt.Errorf("signature of key %x is too short", ps.PubKey)
	}
	der, ht := ps.Signature[:len(ps.Signature)-1], txscript.SigHashType(ps.Signature[len(ps.Signature)-1])
	if ht != want {
		return fmt.Errorf("signature of key %x has sighash type %#x, want %#x", ps.PubKey, uint32(ht), uint32(want))
	}
	sig, err := ecdsa.ParseDERSignature(der)
	if err != nil {
		return fmt.Errorf("signature of key %x: %v", ps.PubKey, err)
	}
	if !bytes.Equal(sig.Serialize(), der) {
		return fmt.Errorf("signature of key %x is not canonical low-S DER", ps.PubKey)
	}
	pub, err := btcec.ParsePubKey(ps.PubKey)
	if err != nil {
		return fmt.Errorf("key %x: %v", ps.PubKey, err)
	}
	digest, err := txscript.CalcWitnessSigHash(in.derived.WitnessScript, hashes, ht, p.UnsignedTx, i, in.prevOut.Value)
	if err != nil {
		return err
	}
	if !sig.Verify(digest, pub) {
		return fmt.Errorf("signature of key %x does not verify", ps.PubKey)
	}
	return nil
}

// checkedSigs is the outcome of verifying every signature of a PSBT: per input, the valid
// segwit v0 partial signatures (keyed by compressed pubkey), the valid taproot script-path
// signatures (keyed by tapSigKey), and why each other one is not.
type checkedSigs struct {
	ins      []resolvedInput
	valid    []map[string]*psbt.PartialSig
	tapValid []map[string]*psbt.TaprootScriptSpendSig
	invalid  [][]string
}

// tapSigKey is the key of a PSBT_IN_TAP_SCRIPT_SIG (BIP-371): x-only public key || leaf hash.
func tapSigKey(xOnly, leafHash []byte) string { return string(xOnly) + string(leafHash) }

// checkSigs verifies every partial signature of p against desc: ECDSA partial signatures of
// wsh / sh(wsh) inputs and Schnorr script-path signatures of tr() inputs.
// Errors: ErrInputUnresolved.
func checkSigs(desc *descriptor.Descriptor, p *psbt.Packet) (*checkedSigs, error) {
	ins, err := resolveInputs(desc, p)
	if err != nil {
		return nil, err
	}
	prev := prevOutFetcher(p, ins)
	hashes := txscript.NewTxSigHashes(p.UnsignedTx, prev)
	c := &checkedSigs{ins: ins, valid: make([]map[string]*psbt.PartialSig, len(ins)),
		tapValid: make([]map[string]*psbt.TaprootScriptSpendSig, len(ins)), invalid: make([][]string, len(ins))}
	for i := range p.Inputs {
		c.valid[i], c.tapValid[i] = map[string]*psbt.PartialSig{}, map[string]*psbt.TaprootScriptSpendSig{}
		for _, ps := range p.Inputs[i].PartialSigs {
			if err := verifyPartialSig(p, i, ins[i], hashes, ps); err != nil {
				c.invalid[i] = append(c.invalid[i], err.Error())
				continue
			}
			c.valid[i][string(ps.PubKey)] = ps
		}
		for _, ts := range p.Inputs[i].TaprootScriptSpendSig {
			if err := verifyTapScriptSig(p, i, ins[i], prev, hashes, ts); err != nil {
				c.invalid[i] = append(c.invalid[i], err.Error())
				continue
			}
			c.tapValid[i][tapSigKey(ts.XOnlyPubKey, ts.LeafHash)] = ts
		}
	}
	return c, nil
}

// verifyTapScriptSig checks one taproot script-path signature (PSBT_IN_TAP_SCRIPT_SIG, BIP-371)
// of input i: its leaf hash must name a leaf of the registered script tree at the coin's index,
// its key be one of that leaf's keys, its sighash type the input's (PSBT_IN_SIGHASH_TYPE,
// SIGHASH_DEFAULT when absent), and the 64-byte BIP-340 signature valid for the key over the
// BIP-341 signature message with the BIP-342 extension for that leaf (txscript's
// CalcTapscriptSignaturehash). It returns nil or why the signature is not valid.
func verifyTapScriptSig(p *psbt.Packet, i int, in resolvedInput, prev txscript.PrevOutputFetcher, hashes *txscript.TxSigHashes, ts *psbt.TaprootScriptSpendSig) error {
	tr := in.derived.Taproot
	if tr == nil {
		return fmt.Errorf("taproot signature of key %x on a segwit v0 input", ts.XOnlyPubKey)
	}
	li := leafByHash(tr, ts.LeafHash)
	if li < 0 {
		return fmt.Errorf("signature of key %x is for leaf %x, which is not in the wallet's script tree", ts.XOnlyPubKey, ts.LeafHash)
	}
	leaf := tr.Leaves[li]
	inLeaf := false
	for _, k := range leaf.Keys {
		if bytes.Equal(schnorr.SerializePubKey(k.PubKey), ts.XOnlyPubKey) {
			inLeaf = true
		}
	}
	if !inLeaf {
		return fmt.Errorf("key %x is not in leaf %x", ts.XOnlyPubKey, ts.LeafHash)
	}
	want := txscript.SigHashDefault
	if h := p.Inputs[i].SighashType; h != 0 {
		want = h
	}
	if ts.SigHash != want {
		return fmt.Errorf("signature of key %x has sighash type %#x, want %#x", ts.XOnlyPubKey, uint32(ts.SigHash), uint32(want))
	}
	sig, err := schnorr.ParseSignature(ts.Signature)
	if err != nil {
		return fmt.Errorf("signature of key %x: %v", ts.XOnlyPubKey, err)
	}
	pub, err := schnorr.ParsePubKey(ts.XOnlyPubKey)
	if err != nil {
		return fmt.Errorf("key %x: %v", ts.XOnlyPubKey, err)
	}
	digest, err := txscript.CalcTapscriptSignaturehash(hashes, ts.SigHash, p.UnsignedTx, i, prev, txscript.NewTapLeaf(leaf.LeafVersion, leaf.Script))
	if err != nil {
		return err
	}
	if !sig.Verify(digest, pub) {
		return fmt.Errorf("signature of key %x for leaf %x does not verify", ts.XOnlyPubKey, ts.LeafHash)
	}
	return nil
}

// leafSigs returns the valid signatures of input i for leaf l, one per key of the leaf in
// script order (nil where the key has none), and how many there are.
func (c *checkedSigs) leafSigs(i int, l descriptor.TapLeaf) ([]*psbt.TaprootScriptSpendSig, int) {
	out := make([]*psbt.TaprootScriptSpendSig, len(l.Keys))
	n := 0
	for j, k := range l.Keys {
		if ts, ok := c.tapValid[i][tapSigKey(schnorr.SerializePubKey(k.PubKey), l.LeafHash[:])]; ok {
			out[j] = ts
			n++
		}
	}
	return out, n
}

// count is input i's number of valid signatures. For wsh / sh(wsh) it is the number of keys
// with a valid partial signature. For tr() it is measured on the input's best leaf, as progress
// towards th (the wallet's threshold, the smallest k of its leaves): th − k + the leaf's valid
// signatures, for the leaf where that is largest (never below 0). When every leaf is a k-of-n
// with the same k (a single multi_a leaf, or a tree of equal-k leaves) that is simply the
// number of valid signatures on the best leaf; it reaches th exactly when some leaf can be
// satisfied.
func (c *checkedSigs) count(i, th int) int {
	tr := c.ins[i].derived.Taproot
	if tr == nil {
		return len(c.valid[i])
	}
	best := 0
	for _, l := range tr.Leaves {
		_, n := c.leafSigs(i, l)
		best = max(best, th-l.Threshold+n)
	}
	return best
}

// Signatures returns how many valid partial signatures the least-signed input of p has: for a
// wsh / sh(wsh) wallet the number of distinct keys of the input's multisig script whose
// PSBT_IN_PARTIAL_SIG verifies over the BIP-143 sighash; for a tr() wallet the number of valid
// PSBT_IN_TAP_SCRIPT_SIG on the input's best leaf (see checkedSigs.count for trees whose leaves
// have different thresholds). Finalize gives the checks; invalid signatures are not counted.
// p is not modified. Errors: ErrInputUnresolved when an input is not the wallet's.
func Signatures(desc *descriptor.Descriptor, p *psbt.Packet) (int, error) {
	c, err := checkSigs(desc, p)
	if err != nil {
		return 0, err
	}
	least := -1
	for i := range c.ins {
		if n := c.count(i, desc.Threshold()); least < 0 || n < least {
			least = n
		}
	}
	return max(least, 0), nil
}

// Finalize is the BIP-174 Finalizer and Extractor for the wallet's three output types:
//   - wsh(multi|sortedmulti) and sh(wsh(multi|sortedmulti)): for each input it takes exactly the
//     threshold number of valid partial signatures (the first in the witness script's key
//     order; invalid ones are ignored), and has btcutil/psbt's finalizer write the witness
//     [<empty> sig… witnessScript] (the empty element is CHECKMULTISIG's extra pop) with the
//     signatures in the script's key order, and for sh(wsh) the scriptSig pushing the P2WSH
//     program;
//   - tr(KEY, multi_a|sortedmulti_a leaves): for each input, among the leaves with at least
//     their threshold k of valid script-path signatures, the one with the smallest witness; it
//     takes exactly k of them (the first in the leaf script's key order) and writes the BIP-342
//     script-path witness: for each key of the leaf script in reverse order its signature (64
//     bytes, 65 with the sighash type when not SIGHASH_DEFAULT) or an empty element, then the
//     leaf script, then its BIP-341 control block.
//
// It then extracts the network transaction and runs every input through txscript's engine with
// the standard verification flags against the PSBT's previous outputs. p is not modified.
//
// Errors: ErrInputUnresolved, ErrTooFewSignatures (naming the input, how many valid signatures
// it has and why the others are not), ErrFinalize.
func Finalize(desc *descriptor.Descriptor, p *psbt.Packet) (*wire.MsgTx, error) {
	c, err := checkSigs(desc, p)
	if err != nil {
		return nil, err
	}
	q, err := Clone(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrFinalize, err)
	}
	for i := range q.Inputs {
		d := c.ins[i].derived
		if d.Taproot != nil {
			if err := c.finalizeTaproot(q, i, desc.Threshold()); err != nil {
				return nil, err
			}
			continue
		}
		_, need, err := txscript.CalcMultiSigStats(d.WitnessScript)
		if err != nil {
			return nil, fmt.Errorf("%w: input %d: witness script: %v", ErrFinalize, i, err)
		}
		var chosen []*psbt.PartialSig
		for _, k := range d.Keys { // script order
			if ps, ok := c.valid[i][string(k.PubKey.SerializeCompressed())]; ok && len(chosen) < need {
				chosen = append(chosen, ps)
			}
		}
		if len(chosen) < need {
			return nil, fmt.Errorf("%w: input %d has %d valid of %d needed%s", ErrTooFewSignatures, i, len(chosen), need, c.why(i))
		}
		pin := &q.Inputs[i]
		pin.PartialSigs = chosen
		pin.WitnessUtxo = c.ins[i].prevOut
		pin.WitnessScript, pin.RedeemScript = d.WitnessScript, d.RedeemScript
		pin.FinalScriptSig, pin.FinalScriptWitness = nil, nil
		if err := psbt.Finalize(q, i); err != nil {
			return nil, fmt.Errorf("%w: input %d: %v", ErrFinalize, i, err)
		}
	}
	return extract(q, c.ins)
}

// why lists input i's invalid signatures for an error message ("" when none).
func (c *checkedSigs) why(i int) string {
	if len(c.invalid[i]) == 0 {
		return ""
	}
	return fmt.Sprintf(" (invalid: %v)", c.invalid[i])
}

// finalizeTaproot writes input i's BIP-342 script-path witness (see Finalize) as its
// PSBT_IN_FINAL_SCRIPTWITNESS and clears the fields BIP-174 says a finalizer removes.
func (c *checkedSigs) finalizeTaproot(q *psbt.Packet, i, th int) error {
	tr := c.ins[i].derived.Taproot
	var best wire.TxWitness
	bestSize, most := -1, 0
	for _, l := range tr.Leaves {
		sigs, n := c.leafSigs(i, l)
		most = max(most, th-l.Threshold+n)
		if n < l.Threshold {
			continue
		}
		w := make(wire.TxWitness, len(l.Keys), len(l.Keys)+2)
		taken := 0
		for j, ts := range sigs { // the first k in script order
			if ts == nil || taken == l.Threshold {
				continue
			}
			sig := append([]byte(nil), ts.Signature...)
			if ts.SigHash != txscript.SigHashDefault {
				sig = append(sig, byte(ts.SigHash))
			}
			w[len(l.Keys)-1-j] = sig // reverse script order: the first key's signature is on top
			taken++
		}
		for j := range w {
			if w[j] == nil {
				w[j] = []byte{}
			}
		}
		w = append(w, l.Script, l.ControlBlock)
		if size := w.SerializeSize(); bestSize < 0 || size < bestSize {
			best, bestSize = w, size
		}
	}
	if best == nil {
		return fmt.Errorf("%w: input %d has %d valid of %d needed on its best leaf%s", ErrTooFewSignatures, i, max(most, 0), th, c.why(i))
	}
	var buf bytes.Buffer
	if err := psbt.WriteTxWitness(&buf, best); err != nil {
		return fmt.Errorf("%w: input %d: %v", ErrFinalize, i, err)
	}
	pin := &q.Inputs[i]
	*pin = psbt.PInput{WitnessUtxo: c.ins[i].prevOut, NonWitnessUtxo: pin.NonWitnessUtxo, FinalScriptWitness: buf.Bytes(), Unknowns: pin.Unknowns}
	return nil
}
