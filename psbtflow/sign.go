package psbtflow

import (
	"bytes"
	"fmt"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/signer"
)

// SignInputs adds this co-signer's partial signature (SIGHASH_ALL, BIP-143 witness v0 sighash)
// to every input of p that the analysis attributed to the wallet, acting as the BIP-174 Signer.
// It derives the key from keys at the slot of desc whose origin is this co-signer's, checks that
// the derived public key is the one in the descriptor's script, and adds the witness script and
// witness UTXO from the chain view when the PSBT lacks them (Updater role). It returns the number
// of signatures added. p is modified in place.
func SignInputs(p *psbt.Packet, a *Analysis, desc *descriptor.Descriptor, slot int, keys *signer.Keys, chain ChainView) (int, error) {
	prevOuts := txscript.NewMultiPrevOutFetcher(nil)
	coins := make([]Coin, len(p.UnsignedTx.TxIn))
	for i, in := range p.UnsignedTx.TxIn {
		c, ok := chain.Coin(in.PreviousOutPoint)
		if !ok {
			return 0, fmt.Errorf("psbtflow: input %d vanished from the chain view while signing", i)
		}
		coins[i] = c
		prevOuts.AddPrevOut(in.PreviousOutPoint, wire.NewTxOut(int64(c.Value), c.PkScript))
	}
	hashes := txscript.NewTxSigHashes(p.UnsignedTx, prevOuts)
	u, err := psbt.NewUpdater(p)
	if err != nil {
		return 0, err
	}
	key := desc.Keys()[slot]
	signed := 0
	for i := range p.UnsignedTx.TxIn {
		c := coins[i]
		d, err := desc.Derive(c.Branch, c.Index)
		if err != nil {
			return signed, err
		}
		steps := append(append([]uint32(nil), key.Steps[c.Branch]...), c.Index)
		priv, err := keys.DeriveRelative(steps...)
		if err != nil {
			return signed, err
		}
		pub := priv.PubKey().SerializeCompressed()
		found := false
		for _, dk := range d.Keys {
			if dk.Slot == slot && bytes.Equal(dk.PubKey.SerializeCompressed(), pub) {
				found = true
			}
		}
		if !found {
			return signed, fmt.Errorf("psbtflow: input %d: derived key is not in the descriptor's script: %w", i, signer.ErrNotOurKey)
		}
		if p.Inputs[i].WitnessUtxo == nil {
			if err := u.AddInWitnessUtxo(wire.NewTxOut(int64(c.Value), c.PkScript), i); err != nil {
				return signed, err
			}
		}
		sig, err := txscript.RawTxInWitnessSignature(p.UnsignedTx, hashes, i, int64(c.Value), d.WitnessScript, txscript.SigHashAll, priv)
		if err != nil {
			return signed, fmt.Errorf("psbtflow: sign input %d: %w", i, err)
		}
		outcome, err := u.Sign(i, sig, pub, nil, d.WitnessScript)
		if err != nil {
			return signed, fmt.Errorf("psbtflow: add partial signature to input %d: %w", i, err)
		}
		if outcome == psbt.SignSuccesful {
			signed++
		}
	}
	return signed, nil
}
