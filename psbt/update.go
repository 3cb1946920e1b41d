package psbt

// BIP-174 Updater role (https://github.com/bitcoin/bips/blob/master/bip-0174.mediawiki#updater)
// for the PSBTs Build creates: UTXOs, scripts and BIP32 derivations of every input, the change
// output and the global xpubs; for tr() wallets the BIP-371 taproot fields instead.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/base58"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
)

// update is the BIP-174 Updater for a PSBT Build created: every input's UTXOs and scripts or
// BIP-371 fields (updateInput), the global xpubs, and the change output's (updateChange).
func update(ctx context.Context, p *psbt.Packet, desc *descriptor.Descriptor, coins map[wire.OutPoint]Coin,
	derived map[wire.OutPoint]*descriptor.Derived, change *descriptor.Derived, changeValue btcutil.Amount, prev PrevTxFetcher) error {
	u, err := psbt.NewUpdater(p)
	if err != nil {
		return err
	}
	prevTxs := map[chainhash.Hash]*wire.MsgTx{}
	for i, in := range p.UnsignedTx.TxIn {
		op := in.PreviousOutPoint
		if prev != nil {
			ptx, err := fetchPrevTx(ctx, prev, prevTxs, op, coins[op])
			if err != nil {
				return err
			}
			if err := u.AddInNonWitnessUtxo(ptx, i); err != nil {
				return fmt.Errorf("psbt: input %d non_witness_utxo: %w", i, err)
			}
		}
		if err := updateInput(u, i, coins[op], derived[op]); err != nil {
			return err
		}
	}
	if err := addGlobalXPubs(p, desc); err != nil {
		return err
	}
	if change != nil {
		return updateChange(u, change, changeValue)
	}
	return nil
}

// fetchPrevTx returns the previous transaction of op through prev (once per txid, kept in
// cache), checked to hash to op's txid and to carry c's value and script at op's index.
// Errors: ErrPrevTx, or the fetcher's error wrapped.
func fetchPrevTx(ctx context.Context, prev PrevTxFetcher, cache map[chainhash.Hash]*wire.MsgTx, op wire.OutPoint, c Coin) (*wire.MsgTx, error) {
	ptx, ok := cache[op.Hash]
	if !ok {
		var err error
		if ptx, err = prev.PrevTx(ctx, op.Hash); err != nil {
			return nil, fmt.Errorf("psbt: fetch previous transaction %s: %w", op.Hash, err)
		}
		if ptx == nil || ptx.TxHash() != op.Hash {
			return nil, fmt.Errorf("%w: the transaction fetched for %s has another txid", ErrPrevTx, op.Hash)
		}
		cache[op.Hash] = ptx
	}
	if int(op.Index) >= len(ptx.TxOut) || ptx.TxOut[op.Index].Value != int64(c.Value) || !bytes.Equal(ptx.TxOut[op.Index].PkScript, c.PkScript) {
		return nil, fmt.Errorf("%w: %s", ErrPrevTx, op)
	}
	return ptx, nil
}

// updateInput writes input i's witness UTXO and, for wsh / sh(wsh), its redeem and witness
// scripts and a BIP32 derivation per key; for tr() the BIP-371 fields (addTaprootInput).
func updateInput(u *psbt.Updater, i int, c Coin, d *descriptor.Derived) error {
	if err := u.AddInWitnessUtxo(wire.NewTxOut(int64(c.Value), c.PkScript), i); err != nil {
		return fmt.Errorf("psbt: input %d witness_utxo: %w", i, err)
	}
	if d.Taproot != nil {
		addTaprootInput(&u.Upsbt.Inputs[i], d)
		return nil
	}
	if d.RedeemScript != nil {
		if err := u.AddInRedeemScript(d.RedeemScript, i); err != nil {
			return fmt.Errorf("psbt: input %d redeem script: %w", i, err)
		}
	}
	if err := u.AddInWitnessScript(d.WitnessScript, i); err != nil {
		return fmt.Errorf("psbt: input %d witness script: %w", i, err)
	}
	for _, k := range d.Keys {
		if err := u.AddInBip32Derivation(fingerprintLE(k.Fingerprint), k.Path, k.PubKey.SerializeCompressed(), i); err != nil {
			return fmt.Errorf("psbt: input %d derivation: %w", i, err)
		}
	}
	return nil
}

// updateChange writes the change output's fields (the first output paying change's script
// with value): redeem and witness scripts and a BIP32 derivation per key, or for tr() the
// BIP-371 fields (addTaprootOutput).
func updateChange(u *psbt.Updater, change *descriptor.Derived, value btcutil.Amount) error {
	for j, out := range u.Upsbt.UnsignedTx.TxOut {
		if out.Value != int64(value) || !bytes.Equal(out.PkScript, change.PkScript) {
			continue
		}
		if change.Taproot != nil {
			if err := addTaprootOutput(&u.Upsbt.Outputs[j], change); err != nil {
				return fmt.Errorf("psbt: change output: %w", err)
			}
			return nil
		}
		if change.RedeemScript != nil {
			if err := u.AddOutRedeemScript(change.RedeemScript, j); err != nil {
				return err
			}
		}
		if err := u.AddOutWitnessScript(change.WitnessScript, j); err != nil {
			return err
		}
		for _, k := range change.Keys {
			if err := u.AddOutBip32Derivation(fingerprintLE(k.Fingerprint), k.Path, k.PubKey.SerializeCompressed(), j); err != nil {
				return err
			}
		}
		return nil
	}
	return nil
}

// addTaprootInput writes the BIP-371 fields of a tr() input spent through its script tree:
// PSBT_IN_TAP_INTERNAL_KEY, PSBT_IN_TAP_MERKLE_ROOT, one PSBT_IN_TAP_LEAF_SCRIPT per leaf
// (control block → leaf script and leaf version) and one PSBT_IN_TAP_BIP32_DERIVATION per key
// with the hashes of the leaves it is in.
func addTaprootInput(pin *psbt.PInput, d *descriptor.Derived) {
	tr := d.Taproot
	pin.TaprootInternalKey = schnorr.SerializePubKey(tr.InternalKey)
	pin.TaprootMerkleRoot = append([]byte(nil), tr.MerkleRoot...)
	for _, l := range tr.Leaves {
		pin.TaprootLeafScript = append(pin.TaprootLeafScript, &psbt.TaprootTapLeafScript{
			ControlBlock: l.ControlBlock, Script: l.Script, LeafVersion: l.LeafVersion})
	}
	pin.TaprootBip32Derivation = tapKeyDerivations(d)
}

// addTaprootOutput writes the BIP-371 fields of a tr() change output: PSBT_OUT_TAP_INTERNAL_KEY,
// PSBT_OUT_TAP_TREE and PSBT_OUT_TAP_BIP32_DERIVATION.
func addTaprootOutput(pout *psbt.POutput, d *descriptor.Derived) error {
	tree, err := tapTree(d.Taproot)
	if err != nil {
		return err
	}
	pout.TaprootInternalKey = schnorr.SerializePubKey(d.Taproot.InternalKey)
	pout.TaprootTapTree = tree
	pout.TaprootBip32Derivation = tapKeyDerivations(d)
	return nil
}

// tapKeyDerivations is one BIP-371 TAP_BIP32_DERIVATION per key of d: x-only key → leaf hashes,
// master fingerprint, derivation path.
func tapKeyDerivations(d *descriptor.Derived) []*psbt.TaprootBip32Derivation {
	out := make([]*psbt.TaprootBip32Derivation, 0, len(d.Keys))
	for _, k := range d.Keys {
		td := &psbt.TaprootBip32Derivation{XOnlyPubKey: schnorr.SerializePubKey(k.PubKey),
			MasterKeyFingerprint: fingerprintLE(k.Fingerprint), Bip32Path: append([]uint32(nil), k.Path...)}
		for _, h := range k.LeafHashes {
			td.LeafHashes = append(td.LeafHashes, append([]byte(nil), h[:]...))
		}
		out = append(out, td)
	}
	return out
}

// tapTree is the value of PSBT_OUT_TAP_TREE (BIP-371): for each leaf in depth-first order
// (the descriptor's left-to-right order) its depth (1 byte), leaf version (1 byte) and script
// with its compact-size length.
func tapTree(tr *descriptor.TaprootDerived) ([]byte, error) {
	var buf bytes.Buffer
	for _, l := range tr.Leaves {
		if l.Depth > 128 {
			return nil, fmt.Errorf("leaf at depth %d", l.Depth)
		}
		buf.WriteByte(byte(l.Depth))
		buf.WriteByte(byte(l.LeafVersion))
		if err := wire.WriteVarBytes(&buf, 0, l.Script); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// globalXPubType is PSBT_GLOBAL_XPUB (BIP-174): key 0x01 || the 78-byte serialized extended
// public key, value the master fingerprint || the derivation path (uint32 little-endian each).
// btcd's psbt package keeps it among the global Unknowns and writes it back unchanged.
const globalXPubType = 0x01

// addGlobalXPubs writes one PSBT_GLOBAL_XPUB per key slot of desc, so that signers that check
// the multisig's keys from the PSBT (hardware co-signers) find all of them.
func addGlobalXPubs(p *psbt.Packet, desc *descriptor.Descriptor) error {
	for i, k := range desc.Keys() {
		raw := base58.Decode(k.XPub.String())
		if len(raw) != 82 { // 78 bytes and a 4-byte checksum
			return fmt.Errorf("psbt: key slot %d: extended key of %d bytes", i, len(raw))
		}
		value := make([]byte, 4, 4+4*len(k.OriginPath))
		copy(value, k.Fingerprint[:])
		for _, step := range k.OriginPath {
			value = binary.LittleEndian.AppendUint32(value, step)
		}
		p.Unknowns = append(p.Unknowns, &psbt.Unknown{Key: append([]byte{globalXPubType}, raw[:78]...), Value: value})
	}
	return nil
}

// fingerprintLE is the fingerprint as btcd's psbt package keeps it: a little-endian uint32.
func fingerprintLE(fp [4]byte) uint32 { return binary.LittleEndian.Uint32(fp[:]) }
