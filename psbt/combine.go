package psbt

// BIP-174 Combiner role (https://github.com/bitcoin/bips/blob/master/bip-0174.mediawiki#combiner):
// the PSBTs co-signers return for one unsigned transaction are merged into one, refusing any
// field two of them give different values.

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/btcsuite/btcd/btcutil/psbt"
)

// Combine is the BIP-174 Combiner: it returns a new PSBT holding everything in base and others,
// which must all be for the same unsigned transaction (same txid, same number of inputs and
// outputs). Per input it merges partial signatures, BIP32 derivations, UTXOs, scripts, the
// sighash type, final scripts, the BIP-371 taproot fields and unknown keys; per output the
// scripts, derivations, taproot fields and unknown keys; and the global unknown keys (xpubs).
// Where two PSBTs carry different values under the same key it refuses (ErrCombine naming the
// input or output and the field) rather than picking one. base and others are not modified.
func Combine(base *psbt.Packet, others ...*psbt.Packet) (*psbt.Packet, error) {
	if base == nil || base.UnsignedTx == nil {
		return nil, fmt.Errorf("%w: no base PSBT", ErrCombine)
	}
	out, err := Clone(base)
	if err != nil {
		return nil, fmt.Errorf("%w: base: %v", ErrCombine, err)
	}
	want := base.UnsignedTx.TxHash()
	for k, o := range others {
		if o == nil || o.UnsignedTx == nil {
			return nil, fmt.Errorf("%w: PSBT %d is empty", ErrCombine, k+1)
		}
		if got := o.UnsignedTx.TxHash(); got != want || len(o.Inputs) != len(out.Inputs) || len(o.Outputs) != len(out.Outputs) {
			return nil, fmt.Errorf("%w: PSBT %d is for unsigned transaction %s, not %s", ErrCombine, k+1, got, want)
		}
		c, err := Clone(o)
		if err != nil {
			return nil, fmt.Errorf("%w: PSBT %d: %v", ErrCombine, k+1, err)
		}
		for i := range out.Inputs {
			if err := combineInput(&out.Inputs[i], &c.Inputs[i]); err != nil {
				return nil, fmt.Errorf("%w: PSBT %d input %d: %v", ErrCombine, k+1, i, err)
			}
		}
		for j := range out.Outputs {
			if err := combineOutput(&out.Outputs[j], &c.Outputs[j]); err != nil {
				return nil, fmt.Errorf("%w: PSBT %d output %d: %v", ErrCombine, k+1, j, err)
			}
		}
		if out.Unknowns, err = mergeUnknowns(out.Unknowns, c.Unknowns); err != nil {
			return nil, fmt.Errorf("%w: PSBT %d global: %v", ErrCombine, k+1, err)
		}
	}
	return out, nil
}

// Clone returns a deep copy of p (serialized and parsed again, which also checks it).
func Clone(p *psbt.Packet) (*psbt.Packet, error) {
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		return nil, err
	}
	return psbt.NewFromRawBytes(&buf, false)
}

// mergeBytes merges one single-valued byte field.
func mergeBytes(name string, dst *[]byte, src []byte) error {
	switch {
	case src == nil:
	case *dst == nil:
		*dst = src
	case !bytes.Equal(*dst, src):
		return fmt.Errorf("%s differs", name)
	}
	return nil
}

func combineInput(dst, src *psbt.PInput) error {
	switch {
	case src.NonWitnessUtxo == nil:
	case dst.NonWitnessUtxo == nil:
		dst.NonWitnessUtxo = src.NonWitnessUtxo
	case dst.NonWitnessUtxo.TxHash() != src.NonWitnessUtxo.TxHash():
		return errors.New("non_witness_utxo differs")
	}
	switch {
	case src.WitnessUtxo == nil:
	case dst.WitnessUtxo == nil:
		dst.WitnessUtxo = src.WitnessUtxo
	case dst.WitnessUtxo.Value != src.WitnessUtxo.Value || !bytes.Equal(dst.WitnessUtxo.PkScript, src.WitnessUtxo.PkScript):
		return errors.New("witness_utxo differs")
	}
	switch {
	case src.SighashType == 0:
	case dst.SighashType == 0:
		dst.SighashType = src.SighashType
	case dst.SighashType != src.SighashType:
		return errors.New("sighash type differs")
	}
	for _, f := range []struct {
		name     string
		dst, src *[]byte
	}{
		{"redeem script", &dst.RedeemScript, &src.RedeemScript},
		{"witness script", &dst.WitnessScript, &src.WitnessScript},
		{"final scriptSig", &dst.FinalScriptSig, &src.FinalScriptSig},
		{"final scriptWitness", &dst.FinalScriptWitness, &src.FinalScriptWitness},
		{"taproot key-path signature", &dst.TaprootKeySpendSig, &src.TaprootKeySpendSig},
		{"taproot internal key", &dst.TaprootInternalKey, &src.TaprootInternalKey},
		{"taproot merkle root", &dst.TaprootMerkleRoot, &src.TaprootMerkleRoot},
	} {
		if err := mergeBytes(f.name, f.dst, *f.src); err != nil {
			return err
		}
	}
	for _, s := range src.PartialSigs {
		if k, ok := findPartialSig(dst.PartialSigs, s.PubKey); !ok {
			dst.PartialSigs = append(dst.PartialSigs, s)
		} else if !bytes.Equal(dst.PartialSigs[k].Signature, s.Signature) {
			return fmt.Errorf("partial signature of key %x differs", s.PubKey)
		}
	}
	var err error
	if dst.Bip32Derivation, err = mergeDerivations(dst.Bip32Derivation, src.Bip32Derivation); err != nil {
		return err
	}
	for _, s := range src.TaprootScriptSpendSig {
		found := false
		for _, d := range dst.TaprootScriptSpendSig {
			if d.EqualKey(s) {
				found = true
				if !bytes.Equal(d.Signature, s.Signature) || d.SigHash != s.SigHash {
					return fmt.Errorf("taproot script-path signature of key %x differs", s.XOnlyPubKey)
				}
			}
		}
		if !found {
			dst.TaprootScriptSpendSig = append(dst.TaprootScriptSpendSig, s)
		}
	}
	for _, l := range src.TaprootLeafScript {
		if k := leafIndexOf(dst.TaprootLeafScript, l.ControlBlock); k < 0 {
			dst.TaprootLeafScript = append(dst.TaprootLeafScript, l)
		} else if !bytes.Equal(dst.TaprootLeafScript[k].Script, l.Script) || dst.TaprootLeafScript[k].LeafVersion != l.LeafVersion {
			return errors.New("taproot leaf script differs")
		}
	}
	if dst.TaprootBip32Derivation, err = mergeTapDerivations(dst.TaprootBip32Derivation, src.TaprootBip32Derivation); err != nil {
		return err
	}
	dst.Unknowns, err = mergeUnknowns(dst.Unknowns, src.Unknowns)
	return err
}

func combineOutput(dst, src *psbt.POutput) error {
	for _, f := range []struct {
		name     string
		dst, src *[]byte
	}{
		{"redeem script", &dst.RedeemScript, &src.RedeemScript},
		{"witness script", &dst.WitnessScript, &src.WitnessScript},
		{"taproot internal key", &dst.TaprootInternalKey, &src.TaprootInternalKey},
		{"taproot tree", &dst.TaprootTapTree, &src.TaprootTapTree},
	} {
		if err := mergeBytes(f.name, f.dst, *f.src); err != nil {
			return err
		}
	}
	var err error
	if dst.Bip32Derivation, err = mergeDerivations(dst.Bip32Derivation, src.Bip32Derivation); err != nil {
		return err
	}
	if dst.TaprootBip32Derivation, err = mergeTapDerivations(dst.TaprootBip32Derivation, src.TaprootBip32Derivation); err != nil {
		return err
	}
	dst.Unknowns, err = mergeUnknowns(dst.Unknowns, src.Unknowns)
	return err
}

func mergeDerivations(dst, src []*psbt.Bip32Derivation) ([]*psbt.Bip32Derivation, error) {
	for _, s := range src {
		found := false
		for _, d := range dst {
			if bytes.Equal(d.PubKey, s.PubKey) {
				found = true
				if d.MasterKeyFingerprint != s.MasterKeyFingerprint || !slices.Equal(d.Bip32Path, s.Bip32Path) {
					return dst, fmt.Errorf("BIP32 derivation of key %x differs", s.PubKey)
				}
			}
		}
		if !found {
			dst = append(dst, s)
		}
	}
	return dst, nil
}

func mergeTapDerivations(dst, src []*psbt.TaprootBip32Derivation) ([]*psbt.TaprootBip32Derivation, error) {
	for _, s := range src {
		found := false
		for _, d := range dst {
			if bytes.Equal(d.XOnlyPubKey, s.XOnlyPubKey) {
				found = true
				if d.MasterKeyFingerprint != s.MasterKeyFingerprint || !slices.Equal(d.Bip32Path, s.Bip32Path) {
					return dst, fmt.Errorf("taproot BIP32 derivation of key %x differs", s.XOnlyPubKey)
				}
			}
		}
		if !found {
			dst = append(dst, s)
		}
	}
	return dst, nil
}

func mergeUnknowns(dst, src []*psbt.Unknown) ([]*psbt.Unknown, error) {
	for _, s := range src {
		found := false
		for _, d := range dst {
			if bytes.Equal(d.Key, s.Key) {
				found = true
				if !bytes.Equal(d.Value, s.Value) {
					return dst, fmt.Errorf("value of key %x differs", s.Key)
				}
			}
		}
		if !found {
			dst = append(dst, s)
		}
	}
	return dst, nil
}
