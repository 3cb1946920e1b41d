package psbt

// BIP-174 Signer role (with the Updater's additions a signer needs) for the three output types
// of the registered descriptor: P2WSH and P2SH-P2WSH multisig (ECDSA over the BIP-143 sighash)
// and taproot script-path multi_a leaves (Schnorr over the BIP-341/342 sighash).

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
)

// KeySource holds this co-signer's private account key (keystore.Keys satisfies it). SignInputs
// asks it for the key at AccountPath/steps… (all unhardened: a branch's steps and the index);
// an implementation refuses a hardened step with an error.
type KeySource interface {
	DeriveRelative(steps ...uint32) (*btcec.PrivateKey, error)
}

// KeyPairSource is a KeySource that also returns the private key's public key, so that
// SignInputs need not recompute it (an EC multiplication per input); keystore.Keys satisfies it
// and serves both from its bounded derived-key cache. SignInputs still compares the public key
// with the descriptor's before signing.
type KeyPairSource interface {
	KeySource
	SigningKey(steps ...uint32) (*btcec.PrivateKey, *btcec.PublicKey, error)
}

// signingKey asks keys for the key pair at steps, through KeyPairSource when it is one.
func signingKey(keys KeySource, steps []uint32) (*btcec.PrivateKey, *btcec.PublicKey, error) {
	if kp, ok := keys.(KeyPairSource); ok {
		return kp.SigningKey(steps...)
	}
	priv, err := keys.DeriveRelative(steps...)
	if err != nil {
		return nil, nil, err
	}
	return priv, priv.PubKey(), nil
}

// SignInputs adds this co-signer's signatures to every input of p, acting as the BIP-174 Signer.
// It must only be called with the Analysis that Analyze returned for p (every input is then the
// wallet's and unspent). For each input it derives the key of desc's key slot `slot` at the
// coin's branch and index from keys (KeySource), checks that the public key is the one in the descriptor's
// script, and signs:
//   - wsh / sh(wsh): SIGHASH_ALL (or the type the analysis allowed) over the BIP-143 sighash with the witness script,
//     placed as a partial signature (PSBT_IN_PARTIAL_SIG); the witness script, and for sh(wsh) the
//     redeem script, are added (Updater role);
//   - tr: for every tapscript leaf holding the key, SIGHASH_DEFAULT (or the type the input asks
//     for and the analysis allowed) over the BIP-341 script-path sighash with that leaf's hash, placed as
//     PSBT_IN_TAP_SCRIPT_SIG keyed by (x-only key, leaf hash) so that a finalizer finds it; the
//     leaf scripts with their control blocks, the internal key and the merkle root are added
//     (BIP-371) when missing.
//
// The witness UTXO is filled from the chain view when missing. It returns the number of
// signatures added (one per input for wsh, one per input and leaf for tr). p is modified in
// place.
func SignInputs(p *psbt.Packet, a *Analysis, desc *descriptor.Descriptor, slot int, keys KeySource, chain ChainView) (int, error) {
	prevOuts := txscript.NewMultiPrevOutFetcher(nil)
	coins := make([]Coin, len(p.UnsignedTx.TxIn))
	for i, in := range p.UnsignedTx.TxIn {
		c, ok := chain.Coin(in.PreviousOutPoint)
		if !ok {
			return 0, fmt.Errorf("psbt: input %d vanished from the chain view while signing", i)
		}
		coins[i] = c
		prevOuts.AddPrevOut(in.PreviousOutPoint, wire.NewTxOut(int64(c.Value), c.PkScript))
	}
	hashes := txscript.NewTxSigHashes(p.UnsignedTx, prevOuts)
	u, err := psbt.NewUpdater(p)
	if err != nil {
		return 0, err
	}
	keySlots := desc.Keys()
	if slot < 0 || slot >= len(keySlots) {
		return 0, fmt.Errorf("psbt: key slot %d of %d: %w", slot, len(keySlots), ErrNotOurKey)
	}
	key := keySlots[slot]
	signed := 0
	for i := range p.UnsignedTx.TxIn {
		c := coins[i]
		d, err := desc.Derive(c.Branch, c.Index)
		if err != nil {
			return signed, err
		}
		if int(c.Branch) >= len(key.Steps) {
			return signed, fmt.Errorf("psbt: input %d: branch %d of %d: %w", i, c.Branch, len(key.Steps), ErrNotOurKey)
		}
		steps := append(append([]uint32(nil), key.Steps[c.Branch]...), c.Index)
		priv, pub, err := signingKey(keys, steps)
		if err != nil {
			return signed, err
		}
		// The key must be our slot's key in the descriptor's script at this (branch, index),
		// whatever the key source (or its cache) returned.
		var ours *descriptor.DerivedKey
		for k := range d.Keys {
			if d.Keys[k].Slot == slot && d.Keys[k].PubKey.IsEqual(pub) {
				ours = &d.Keys[k]
			}
		}
		if ours == nil {
			return signed, fmt.Errorf("psbt: input %d: derived key is not in the descriptor's script: %w", i, ErrNotOurKey)
		}
		if p.Inputs[i].WitnessUtxo == nil {
			if err := u.AddInWitnessUtxo(wire.NewTxOut(int64(c.Value), c.PkScript), i); err != nil {
				return signed, err
			}
		}
		var n int
		switch d.Type {
		case descriptor.P2WSH, descriptor.P2SHP2WSH:
			n, err = signWitnessV0(u, i, c, d, priv, pub, hashes, sighashFor(a, i, txscript.SigHashAll))
		case descriptor.P2TR:
			n, err = signTapscript(p, i, c, d, ours, priv, hashes, sighashFor(a, i, txscript.SigHashDefault))
		default:
			err = fmt.Errorf("psbt: input %d: cannot sign output type %s", i, d.Type)
		}
		signed += n
		if err != nil {
			return signed, err
		}
	}
	return signed, nil
}

// sighashFor returns the sighash type the analysis chose for input i (Analyze allows only ALL,
// or DEFAULT/ALL on taproot, unless AnalyzeOptions opted in), or def without an analysis.
func sighashFor(a *Analysis, i int, def txscript.SigHashType) txscript.SigHashType {
	if a == nil || i >= len(a.Inputs) {
		return def
	}
	return txscript.SigHashType(a.Inputs[i].SighashType)
}

// signWitnessV0 signs a wsh or sh(wsh) input over the BIP-143 sighash (SIGHASH_ALL unless the
// analysis allowed another type) and adds the partial signature (addPartialSig).
func signWitnessV0(u *psbt.Updater, i int, c Coin, d *descriptor.Derived, priv *btcec.PrivateKey, pubKey *btcec.PublicKey, hashes *txscript.TxSigHashes, hashType txscript.SigHashType) (int, error) {
	pin := &u.Upsbt.Inputs[i]
	if pin.FinalScriptSig != nil || pin.FinalScriptWitness != nil {
		return 0, nil // finalized already: nothing to add (btcd's SignFinalized)
	}
	pub := pubKey.SerializeCompressed()
	if _, exists := findPartialSig(pin.PartialSigs, pub); exists {
		return 0, nil // already signed by this key (a repeated request): nothing to add
	}
	sig, err := txscript.RawTxInWitnessSignature(u.Upsbt.UnsignedTx, hashes, i, int64(c.Value), d.WitnessScript, hashType, priv)
	if err != nil {
		return 0, fmt.Errorf("psbt: sign input %d: %w", i, err)
	}
	if err := addPartialSig(u.Upsbt, i, d, pub, sig); err != nil {
		return 0, err
	}
	return 1, nil
}

// addPartialSig places PSBT_IN_PARTIAL_SIG (pub → sig) on input i with the descriptor's witness
// script (and redeem script for sh(wsh)), as btcd's Updater.Sign does, without its re-parsing of
// a public key this co-signer just derived and matched against the descriptor. btcd's script
// checks are kept, stated against the descriptor: the witness UTXO (and a non-witness UTXO, which
// must hash to the input's txid) must pay d.PkScript, which is P2WSH(witness script) or
// P2SH(P2WSH(witness script)) by construction. Partial signatures stay sorted by public key
// (btcd's PartialSigSorter), so the encoding is the one Updater.Sign gives.
func addPartialSig(p *psbt.Packet, i int, d *descriptor.Derived, pub, sig []byte) error {
	pin := &p.Inputs[i]
	op := p.UnsignedTx.TxIn[i].PreviousOutPoint
	if pin.WitnessUtxo == nil && pin.NonWitnessUtxo == nil {
		return fmt.Errorf("psbt: input %d has no UTXO to sign for: %w", i, psbt.ErrInvalidPsbtFormat)
	}
	if pin.WitnessUtxo != nil && !bytes.Equal(pin.WitnessUtxo.PkScript, d.PkScript) {
		return fmt.Errorf("psbt: input %d's witness UTXO does not pay the descriptor's script: %w", i, psbt.ErrInvalidSignatureForInput)
	}
	if prev := pin.NonWitnessUtxo; prev != nil {
		if prev.TxHash() != op.Hash || int(op.Index) >= len(prev.TxOut) || !bytes.Equal(prev.TxOut[op.Index].PkScript, d.PkScript) {
			return fmt.Errorf("psbt: input %d's previous transaction does not pay the descriptor's script: %w", i, psbt.ErrInvalidSignatureForInput)
		}
	}
	pin.WitnessScript = d.WitnessScript
	if d.RedeemScript != nil {
		pin.RedeemScript = d.RedeemScript
	}
	pin.PartialSigs = append(pin.PartialSigs, &psbt.PartialSig{PubKey: pub, Signature: sig})
	sort.Sort(psbt.PartialSigSorter(pin.PartialSigs))
	return nil
}

func findPartialSig(sigs []*psbt.PartialSig, pub []byte) (int, bool) {
	for k, s := range sigs {
		if bytes.Equal(s.PubKey, pub) {
			return k, true
		}
	}
	return -1, false
}

// signTapscript adds a BIP-342 script-path signature of our key for every leaf it is in.
func signTapscript(p *psbt.Packet, i int, c Coin, d *descriptor.Derived, ours *descriptor.DerivedKey, priv *btcec.PrivateKey,
	hashes *txscript.TxSigHashes, hashType txscript.SigHashType) (int, error) {
	pin := &p.Inputs[i]
	tr := d.Taproot
	xonly := schnorr.SerializePubKey(ours.PubKey)
	if pin.TaprootInternalKey == nil {
		pin.TaprootInternalKey = schnorr.SerializePubKey(tr.InternalKey)
	}
	if pin.TaprootMerkleRoot == nil {
		pin.TaprootMerkleRoot = append([]byte(nil), tr.MerkleRoot...)
	}
	signed := 0
	for _, l := range tr.Leaves {
		if !leafHasKey(l, ours.Slot) {
			continue
		}
		if leafIndexOf(pin.TaprootLeafScript, l.ControlBlock) < 0 {
			pin.TaprootLeafScript = append(pin.TaprootLeafScript, &psbt.TaprootTapLeafScript{
				ControlBlock: l.ControlBlock, Script: l.Script, LeafVersion: l.LeafVersion})
		}
		exists := false
		for _, s := range pin.TaprootScriptSpendSig {
			if bytes.Equal(s.XOnlyPubKey, xonly) && bytes.Equal(s.LeafHash, l.LeafHash[:]) {
				exists = true
			}
		}
		if exists {
			continue
		}
		leaf := txscript.NewTapLeaf(l.LeafVersion, l.Script)
		sig, err := txscript.RawTxInTapscriptSignature(p.UnsignedTx, hashes, i, int64(c.Value), c.PkScript, leaf, hashType, priv)
		if err != nil {
			return signed, fmt.Errorf("psbt: sign input %d leaf %x: %w", i, l.LeafHash[:4], err)
		}
		pin.TaprootScriptSpendSig = append(pin.TaprootScriptSpendSig, &psbt.TaprootScriptSpendSig{
			XOnlyPubKey: xonly, LeafHash: append([]byte(nil), l.LeafHash[:]...), Signature: sig[:schnorr.SignatureSize], SigHash: hashType})
		signed++
	}
	hasDeriv := false
	for _, td := range pin.TaprootBip32Derivation {
		if bytes.Equal(td.XOnlyPubKey, xonly) {
			hasDeriv = true
		}
	}
	if !hasDeriv {
		td := &psbt.TaprootBip32Derivation{XOnlyPubKey: xonly, MasterKeyFingerprint: binary.LittleEndian.Uint32(ours.Fingerprint[:]),
			Bip32Path: append([]uint32(nil), ours.Path...)}
		for _, h := range ours.LeafHashes {
			td.LeafHashes = append(td.LeafHashes, append([]byte(nil), h[:]...))
		}
		pin.TaprootBip32Derivation = append(pin.TaprootBip32Derivation, td)
	}
	return signed, nil
}

func leafHasKey(l descriptor.TapLeaf, slot int) bool {
	for _, k := range l.Keys {
		if k.Slot == slot {
			return true
		}
	}
	return false
}

func leafIndexOf(ls []*psbt.TaprootTapLeafScript, controlBlock []byte) int {
	for k, l := range ls {
		if bytes.Equal(l.ControlBlock, controlBlock) {
			return k
		}
	}
	return -1
}
