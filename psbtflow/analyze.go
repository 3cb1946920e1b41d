package psbtflow

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/signer"
)

// Coin is an unspent output of the wallet as the watcher knows it from the chain.
type Coin struct {
	Value    btcutil.Amount
	PkScript []byte
	Branch   uint32
	Index    uint32
	Height   int32 // 0 while in the mempool
}

// ChainView is the wallet view psbtflow reads (satisfied by an adapter over chainwatch).
type ChainView interface {
	// Coin returns the wallet's unspent output at op, if the chain says it exists and is ours.
	Coin(op wire.OutPoint) (Coin, bool)
	// Lookup tells whether pkScript is one of the wallet's tracked scripts, and where.
	Lookup(pkScript []byte) (branch, index uint32, ok bool)
	// TipHeight is the height of the best known block.
	TipHeight() int32
	// Synced reports whether the view is complete (the watcher's initial sync is done). Before
	// that, a coin of ours could look foreign, so no request is decided.
	Synced() bool
}

// FeeRate is a feerate in sat/vB.
type FeeRate float64

// InputInfo is the analysis of one PSBT input.
type InputInfo struct {
	OutPoint      string         `json:"outpoint"`
	Value         btcutil.Amount `json:"value_sat"`
	Branch        uint32         `json:"branch"`
	Index         uint32         `json:"index"`
	Confirmations int32          `json:"confirmations"`
}

// OutputInfo is the analysis of one PSBT output.
type OutputInfo struct {
	Index   int            `json:"index"`
	Address string         `json:"address,omitempty"`
	Value   btcutil.Amount `json:"value_sat"`
	// Kind is "change" (re-derived on the wallet's change branch), "spend" or "op_return".
	Kind   string  `json:"kind"`
	Branch *uint32 `json:"branch,omitempty"`
	Number *uint32 `json:"change_index,omitempty"`
}

// Analysis is what a PSBT does to the wallet, computed before any policy is asked. Policy rules
// read it and the audit log stores it (as JSON).
type Analysis struct {
	UnsignedTxID string         `json:"unsigned_txid"`
	Inputs       []InputInfo    `json:"inputs"`
	Outputs      []OutputInfo   `json:"outputs"`
	InputTotal   btcutil.Amount `json:"input_total_sat"`
	ChangeTotal  btcutil.Amount `json:"change_total_sat"`
	// Outflow is inputs − change: what leaves the wallet, the fee included.
	Outflow btcutil.Amount `json:"outflow_sat"`
	Fee     btcutil.Amount `json:"fee_sat"`
	// VSize is the virtual size of the finalized transaction, estimated from the descriptor's
	// largest satisfaction (BIP-141 weight / 4, rounded up).
	VSize    int64   `json:"vsize"`
	FeeRate  FeeRate `json:"feerate_sat_vb"`
	LockTime uint32  `json:"locktime"`
	// RBF is true when some input signals replaceability (BIP-125: nSequence < 0xfffffffe).
	RBF bool `json:"rbf"`
}

// Analyze checks a PSBT against the registered wallet and the chain and computes its Analysis.
// It refuses (with *signer.MethodError) anything this co-signer must not sign:
//   - invalid_psbt: structural problems (no inputs, output sum above input sum, …);
//   - not_our_wallet: an input that is not an output of the registered descriptor;
//   - unsafe_psbt: <check>: an input spent or unknown to the chain (input_unspent), a
//     witness_utxo that disagrees with the chain (input_amount: the segwit fee attack,
//     bitcoin#19215), a non_witness_utxo that does not hash to the input's txid, a witness
//     script that is not the descriptor's, or a sighash type other than ALL (sighash).
//
// Change is an output whose script re-derives from the registered descriptor on branch 1 at an
// index the PSBT claims through a BIP32 derivation of one of our key slots, within the watched
// window; everything else is spend (DESIGN.md, "PSBT analysis and safety", checks 2–7).
func Analyze(p *psbt.Packet, desc *descriptor.Descriptor, chain ChainView) (*Analysis, error) {
	tx := p.UnsignedTx
	if len(tx.TxIn) == 0 || len(tx.TxOut) == 0 {
		return nil, signer.Errorf(signer.CodeInvalidPSBT, "the transaction has no inputs or no outputs")
	}
	a := &Analysis{UnsignedTxID: tx.TxHash().String(), LockTime: tx.LockTime}
	tip := chain.TipHeight()
	seen := map[wire.OutPoint]bool{}
	witnessBytes := 0
	for i, in := range tx.TxIn {
		op := in.PreviousOutPoint
		if seen[op] {
			return nil, signer.Errorf(signer.CodeInvalidPSBT, "input %d spends %s twice", i, op)
		}
		seen[op] = true
		if in.Sequence < wire.MaxTxInSequenceNum-1 {
			a.RBF = true
		}
		pin := p.Inputs[i]
		coin, ok := chain.Coin(op)
		if !ok {
			if pin.WitnessUtxo != nil {
				if _, _, ours := chain.Lookup(pin.WitnessUtxo.PkScript); ours {
					return nil, signer.Errorf(signer.CodeUnsafePSBT, "input_unspent: input %d (%s) is not an unspent output of this wallet on the chain (already spent, or not yet seen)", i, op)
				}
			}
			return nil, signer.Errorf(signer.CodeNotOurWallet, "input %d (%s) is not an unspent output of the registered wallet", i, op)
		}
		if pin.WitnessUtxo != nil {
			if btcutil.Amount(pin.WitnessUtxo.Value) != coin.Value || !bytes.Equal(pin.WitnessUtxo.PkScript, coin.PkScript) {
				return nil, signer.Errorf(signer.CodeUnsafePSBT, "input_amount: input %d claims %s but the chain says %s at that outpoint", i,
					btcutil.Amount(pin.WitnessUtxo.Value), coin.Value)
			}
		}
		if pin.NonWitnessUtxo != nil {
			if pin.NonWitnessUtxo.TxHash() != op.Hash || int(op.Index) >= len(pin.NonWitnessUtxo.TxOut) {
				return nil, signer.Errorf(signer.CodeUnsafePSBT, "non_witness_utxo: input %d's previous transaction does not hash to %s", i, op.Hash)
			}
			prev := pin.NonWitnessUtxo.TxOut[op.Index]
			if btcutil.Amount(prev.Value) != coin.Value || !bytes.Equal(prev.PkScript, coin.PkScript) {
				return nil, signer.Errorf(signer.CodeUnsafePSBT, "input_amount: input %d's previous transaction disagrees with the chain", i)
			}
		}
		d, err := desc.Derive(coin.Branch, coin.Index)
		if err != nil {
			return nil, fmt.Errorf("psbtflow: derive input %d: %w", i, err)
		}
		if !bytes.Equal(d.PkScript, coin.PkScript) {
			return nil, fmt.Errorf("psbtflow: watcher's script for %s does not match the descriptor at %d/%d", op, coin.Branch, coin.Index)
		}
		if pin.WitnessScript != nil && !bytes.Equal(pin.WitnessScript, d.WitnessScript) {
			return nil, signer.Errorf(signer.CodeUnsafePSBT, "witness_script: input %d's witness script is not the registered descriptor's", i)
		}
		if pin.SighashType != 0 && pin.SighashType != txscript.SigHashAll {
			return nil, signer.Errorf(signer.CodeUnsafePSBT, "sighash: input %d asks for sighash type %#x; only SIGHASH_ALL is signed", i, uint32(pin.SighashType))
		}
		confs := int32(0)
		if coin.Height > 0 && tip >= coin.Height {
			confs = tip - coin.Height + 1
		}
		a.Inputs = append(a.Inputs, InputInfo{OutPoint: op.String(), Value: coin.Value, Branch: coin.Branch, Index: coin.Index, Confirmations: confs})
		a.InputTotal += coin.Value
		witnessBytes += desc.MaxWitnessSize()
	}
	var outTotal btcutil.Amount
	for j, out := range tx.TxOut {
		if out.Value < 0 || out.Value > btcutil.MaxSatoshi {
			return nil, signer.Errorf(signer.CodeInvalidPSBT, "output %d has an impossible value", j)
		}
		oi := OutputInfo{Index: j, Value: btcutil.Amount(out.Value), Kind: "spend"}
		if _, addrs, _, err := txscript.ExtractPkScriptAddrs(out.PkScript, desc.Network()); err == nil && len(addrs) == 1 {
			oi.Address = addrs[0].EncodeAddress()
		}
		if txscript.GetScriptClass(out.PkScript) == txscript.NullDataTy {
			oi.Kind = "op_return"
		} else if branch, index, ok := changeOutput(p.Outputs[j], out.PkScript, desc, chain); ok {
			oi.Kind, oi.Branch, oi.Number = "change", &branch, &index
			a.ChangeTotal += oi.Value
		}
		outTotal += oi.Value
		a.Outputs = append(a.Outputs, oi)
	}
	if outTotal > a.InputTotal {
		return nil, signer.Errorf(signer.CodeInvalidPSBT, "outputs (%s) are worth more than inputs (%s)", outTotal, a.InputTotal)
	}
	a.Fee = a.InputTotal - outTotal
	a.Outflow = a.InputTotal - a.ChangeTotal
	a.VSize = estimateVSize(tx, witnessBytes)
	a.FeeRate = FeeRate(float64(a.Fee) / float64(a.VSize))
	return a, nil
}

// changeOutput reports whether output pkScript is the wallet's change: one of our key slots'
// BIP32 derivations in the PSBT output claims a path on the change branch (1), the descriptor
// re-derives exactly pkScript there, and the watcher tracks that script on that branch (so the
// index is within the lookahead window — a far index would be change nobody watches).
func changeOutput(pout psbt.POutput, pkScript []byte, desc *descriptor.Descriptor, chain ChainView) (uint32, uint32, bool) {
	for _, d := range pout.Bip32Derivation {
		var fp [4]byte // btcd's psbt keeps the fingerprint as a little-endian uint32
		binary.LittleEndian.PutUint32(fp[:], d.MasterKeyFingerprint)
		branch, index, ok := desc.MatchPath(fp, d.Bip32Path)
		if !ok || branch != 1 {
			continue
		}
		script, err := desc.PkScript(branch, index)
		if err != nil || !bytes.Equal(script, pkScript) {
			continue
		}
		if b, i, tracked := chain.Lookup(pkScript); tracked && b == branch && i == index {
			return branch, index, true
		}
	}
	return 0, 0, false
}

// estimateVSize returns the vsize of tx once every input carries a witness of witnessBytes in
// total: weight = 4 × non-witness size + 2 (segwit marker and flag) + witness bytes (BIP-141).
func estimateVSize(tx *wire.MsgTx, witnessBytes int) int64 {
	weight := int64(tx.SerializeSizeStripped())*4 + 2 + int64(witnessBytes)
	return (weight + 3) / 4
}
