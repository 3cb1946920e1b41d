package psbt

// The coordinator's side of asking another co-signer (BIP-174 Signer role, played remotely):
// what the PSBT sent carries, and how its answer is checked before it is combined.

import (
	"bytes"
	"crypto/sha256"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"

	"github.com/custodyagents/cosigner/descriptor"
)

// WithoutSignatures removes every input's partial signatures (PSBT_IN_PARTIAL_SIG,
// PSBT_IN_TAP_KEY_SIG, PSBT_IN_TAP_SCRIPT_SIG): what stays is what a co-signer needs to check
// and sign its share.
func WithoutSignatures(p *psbt.Packet) {
	for i := range p.Inputs {
		p.Inputs[i].PartialSigs = nil
		p.Inputs[i].TaprootKeySpendSig = nil
		p.Inputs[i].TaprootScriptSpendSig = nil
	}
}

// Resolved is a PSBT's inputs tied to the scripts they spend and their previous outputs (see
// Resolve), what CheckAnswer verifies a co-signer's signatures against.
type Resolved struct{ ins []resolvedInput }

// Resolve ties p's inputs to the registered descriptor desc (as the Finalizer does: witness or
// non-witness UTXO, and a BIP32 derivation of the wallet's keys that re-derives the script), or,
// when desc is nil, to the PSBT's own witness scripts (P2WSH or P2SH-P2WSH multisig only).
// Errors: ErrInputUnresolved.
func Resolve(desc *descriptor.Descriptor, p *psbt.Packet) (Resolved, error) {
	var ins []resolvedInput
	var err error
	if desc != nil {
		ins, err = resolveInputs(desc, p)
	} else {
		ins, err = resolveScripts(p)
	}
	return Resolved{ins: ins}, err
}

// resolveScripts ties every input to its own witness script: the witness UTXO's script must be
// P2WSH of it (or P2SH of the P2WSH program given as the redeem script), and the witness script
// a multisig script (BIP-11 form, as wsh(multi|sortedmulti) writes it). Errors:
// ErrInputUnresolved.
func resolveScripts(p *psbt.Packet) ([]resolvedInput, error) {
	if p == nil || p.UnsignedTx == nil || len(p.Inputs) != len(p.UnsignedTx.TxIn) {
		return nil, fmt.Errorf("%w: malformed PSBT", ErrInputUnresolved)
	}
	out := make([]resolvedInput, len(p.Inputs))
	for i := range p.Inputs {
		pin := &p.Inputs[i]
		op := p.UnsignedTx.TxIn[i].PreviousOutPoint
		prev := pin.WitnessUtxo
		if prev == nil && pin.NonWitnessUtxo != nil && pin.NonWitnessUtxo.TxHash() == op.Hash && int(op.Index) < len(pin.NonWitnessUtxo.TxOut) {
			prev = pin.NonWitnessUtxo.TxOut[op.Index]
		}
		if prev == nil || pin.WitnessScript == nil {
			return nil, fmt.Errorf("%w: input %d: needs its witness UTXO and witness script", ErrInputUnresolved, i)
		}
		h := sha256.Sum256(pin.WitnessScript)
		program := append([]byte{txscript.OP_0, txscript.OP_DATA_32}, h[:]...)
		switch {
		case pin.RedeemScript == nil && bytes.Equal(prev.PkScript, program):
		case bytes.Equal(pin.RedeemScript, program) && bytes.Equal(prev.PkScript, p2shScript(program)):
		default:
			return nil, fmt.Errorf("%w: input %d: the witness script does not commit to the script spent", ErrInputUnresolved, i)
		}
		if txscript.GetScriptClass(pin.WitnessScript) != txscript.MultiSigTy {
			return nil, fmt.Errorf("%w: input %d: the witness script is not a multisig script", ErrInputUnresolved, i)
		}
		d := &descriptor.Derived{WitnessScript: pin.WitnessScript, RedeemScript: pin.RedeemScript, PkScript: prev.PkScript}
		tok := txscript.MakeScriptTokenizer(0, pin.WitnessScript)
		for tok.Next() {
			if len(tok.Data()) == 33 {
				pub, err := btcec.ParsePubKey(tok.Data())
				if err != nil {
					return nil, fmt.Errorf("%w: input %d: witness script key: %v", ErrInputUnresolved, i, err)
				}
				d.Keys = append(d.Keys, descriptor.DerivedKey{PubKey: pub})
			}
		}
		out[i] = resolvedInput{derived: d, prevOut: prev}
	}
	return out, nil
}

func p2shScript(redeem []byte) []byte {
	return append(append([]byte{txscript.OP_HASH160, txscript.OP_DATA_20}, btcutil.Hash160(redeem)...), txscript.OP_EQUAL)
}

// CheckAnswer decodes a co-signer's answer (a PSBT as base64 or hex) to a request to sign
// asked, and checks it: the same unsigned transaction, no field that conflicts with asked
// (Combine), and on every input at least one new partial signature (BIP-174) or taproot
// script-path signature (BIP-371) that verifies against r (asked resolved by Resolve). It
// returns the co-signer's PSBT; the error says which check failed, for people.
func CheckAnswer(asked *psbt.Packet, r Resolved, res string) (*psbt.Packet, error) {
	ins := r.ins
	got, _, err := Decode(res)
	if err != nil {
		return nil, fmt.Errorf("the answer is not a PSBT: %v", err)
	}
	if h, want := got.UnsignedTx.TxHash(), asked.UnsignedTx.TxHash(); h != want || len(got.Inputs) != len(asked.Inputs) {
		return nil, fmt.Errorf("it answered a PSBT for unsigned transaction %s, asked %s", h, want)
	}
	if _, err := Combine(asked, got); err != nil {
		return nil, err
	}
	prev := prevOutFetcher(asked, ins)
	hashes := txscript.NewTxSigHashes(asked.UnsignedTx, prev)
	for i := range got.Inputs {
		added := 0
		for _, ts := range got.Inputs[i].TaprootScriptSpendSig {
			had := false
			for _, a := range asked.Inputs[i].TaprootScriptSpendSig {
				had = had || a.EqualKey(ts)
			}
			if had {
				continue
			}
			if err := verifyTapScriptSig(asked, i, ins[i], prev, hashes, ts); err != nil {
				return nil, fmt.Errorf("input %d: invalid taproot script-path signature: %v", i, err)
			}
			added++
		}
		for _, ps := range got.Inputs[i].PartialSigs {
			if _, had := findPartialSig(asked.Inputs[i].PartialSigs, ps.PubKey); had {
				continue // ours or another co-signer's, already there (Combine checked it is unchanged)
			}
			if err := verifyPartialSig(asked, i, ins[i], hashes, ps); err != nil {
				return nil, fmt.Errorf("input %d: invalid partial signature: %v", i, err)
			}
			added++
		}
		if added == 0 {
			return nil, fmt.Errorf("input %d: no new partial signature", i)
		}
	}
	return got, nil
}

// SignatureRequest is a PSBT prepared to be asked of another co-signer: a copy without partial
// signatures (a co-signer signs its own share whatever others signed, so a PSBT that other
// co-signers' signatures were combined into since is still the same request), its inputs tied
// to the scripts the answer is checked against.
type SignatureRequest struct {
	// PSBT is what is sent: the PSBT asked, without its partial signatures.
	PSBT *psbt.Packet
	r    Resolved
}

// NewSignatureRequest copies p without its partial signatures and ties every input to desc (the
// registered wallet: each input re-derived from its keys) or, when desc is nil, to the PSBT's
// own witness scripts, which must commit to the scripts spent (see Resolve). p is not
// modified. Errors: ErrInputUnresolved, a PSBT that does not serialize.
func NewSignatureRequest(p *psbt.Packet, desc *descriptor.Descriptor) (*SignatureRequest, error) {
	asked, err := Clone(p)
	if err != nil {
		return nil, fmt.Errorf("psbt: the PSBT to ask for: %w", err)
	}
	WithoutSignatures(asked)
	r, err := Resolve(desc, asked)
	if err != nil {
		return nil, err
	}
	return &SignatureRequest{PSBT: asked, r: r}, nil
}

// CheckAnswer decodes a co-signer's sign_psbt result (base64 or hex PSBT text) and checks it
// against the PSBT asked (see the function CheckAnswer). It returns the co-signer's PSBT; the
// error says which check failed.
func (sr *SignatureRequest) CheckAnswer(res string) (*psbt.Packet, error) {
	return CheckAnswer(sr.PSBT, sr.r, res)
}
