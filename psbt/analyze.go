package psbt

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
)

// Coin is an unspent output of the wallet as the watcher knows it from the chain.
type Coin struct {
	Value    btcutil.Amount
	PkScript []byte
	Branch   uint32
	Index    uint32
	Height   int32 // 0 while in the mempool
}

// ChainView is the wallet view the analysis and the signer read (satisfied by an adapter over
// chainwatch, or by StateView).
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

// ChangeBranch is the descriptor branch change is paid to (/1/* of /<0;1>/*).
const ChangeBranch = 1

// Output kinds (OutputInfo.Kind).
const (
	KindSpend    = "spend"     // leaves the wallet
	KindChange   = "change"    // re-derived on the wallet's change branch within the watched window
	KindOpReturn = "op_return" // provably unspendable data carrier
)

// Warning codes (Warning.Code): facts a person or a policy rule should see; none of them stops
// the analysis.
const (
	WarnOpReturn       = "op_return_output"    // an OP_RETURN output (value burned if non-zero)
	WarnNonstandard    = "nonstandard_output"  // an output script of no standard type
	WarnSelfReceive    = "pays_receive_branch" // pays one of the wallet's receive scripts: counted as spend
	WarnForeignPath    = "foreign_path"        // a BIP32 derivation with our fingerprint outside the descriptor's paths
	WarnLockTimeFuture = "locktime_future"     // nLockTime is a height above the next block
	WarnLockTime       = "locktime"            // nLockTime is enforced (some input not final)
	WarnRelativeLock   = "relative_locktime"   // an input's nSequence sets a BIP-68 relative lock
	WarnKeyPathSpend   = "taproot_key_path"    // the tr() internal key can spend without the multisig
	WarnTxVersion      = "tx_version"          // a transaction version other than 1 or 2
)

// Warning is one fact about the PSBT worth a human's (or a policy rule's) attention.
type Warning struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// InputInfo is the analysis of one PSBT input.
type InputInfo struct {
	OutPoint      string         `json:"outpoint"`
	Value         btcutil.Amount `json:"value_sat"`
	Branch        uint32         `json:"branch"`
	Index         uint32         `json:"index"`
	Confirmations int32          `json:"confirmations"`
	// ScriptType is the output type spent (descriptor.ScriptType: p2wsh, p2sh-p2wsh, p2tr).
	ScriptType string `json:"script_type"`
	// SighashType is the sighash this co-signer signs with: 1 (ALL) for segwit v0, 0 (DEFAULT)
	// for taproot unless the PSBT asks for ALL.
	SighashType uint32 `json:"sighash_type"`
	// Sequence is the input's nSequence.
	Sequence uint32 `json:"sequence"`
	// SpendingPath says how the input will be spent: "k-of-n multisig" for wsh / sh(wsh);
	// "script path" and the registered tree's leaves (k-of-n and leaf hash prefix) for taproot,
	// any of which a finalizer may use (this co-signer signs those holding its key).
	SpendingPath string `json:"spending_path"`
	// LeafHashes are the BIP-341 leaf hashes (hex) of the registered tree's tapscript leaves at
	// this input's index (taproot only).
	LeafHashes []string `json:"leaf_hashes,omitempty"`
	// RelativeLock is the BIP-68 relative lock nSequence sets ("10 blocks", "5120s"), or "".
	RelativeLock string `json:"relative_lock,omitempty"`
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
	// ScriptClass is txscript's name of the output script's class (witness_v0_scripthash,
	// witness_v1_taproot, nulldata, nonstandard, …).
	ScriptClass string `json:"script_class"`
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

	// PSBTVersion is 0 (BIP-174) or 2 (BIP-370).
	PSBTVersion uint32 `json:"psbt_version"`
	// TxVersion is the transaction's nVersion.
	TxVersion int32 `json:"tx_version"`
	// ScriptType is the registered descriptor's output type (p2wsh, p2sh-p2wsh, p2tr).
	ScriptType string `json:"script_type"`
	// LockTimeKind is "none" (nLockTime 0 or not enforced because every input is final),
	// "height" or "time" (BIP-65 threshold 500,000,000).
	LockTimeKind string `json:"locktime_kind"`
	// Warnings are facts for people and policy rules; they do not stop signing by themselves.
	Warnings []Warning `json:"warnings,omitempty"`
}

func (a *Analysis) warn(code, format string, args ...any) {
	a.Warnings = append(a.Warnings, Warning{Code: code, Message: fmt.Sprintf(format, args...)})
}

// Analyze checks a PSBT against the registered wallet and the chain and computes its Analysis
// (docs/psbt-safety.md). It is a pure function of
// its arguments and never modifies p. It refuses (with a *Refusal) anything this co-signer
// must not sign:
//   - InvalidPSBT: no inputs or outputs, a duplicated input, an impossible output value,
//     outputs worth more than inputs;
//   - NotOurWallet: an input that is not an unspent output of the registered descriptor;
//   - UnsafePSBT, Detail "<check>: …", with check one of
//     tx_modifiable (a v2 PSBT whose TX_MODIFIABLE flags are not all 0, BIP-370),
//     input_unspent (our script, but not unspent on the chain: spent or unseen),
//     input_amount (witness_utxo or non_witness_utxo disagrees with the chain: the segwit fee
//     attack, bitcoin#19215), non_witness_utxo (does not hash to the input's txid),
//     witness_script / redeem_script (not the descriptor's at the coin's index),
//     taproot_internal_key / taproot_merkle_root / taproot_output_key (the BIP-371 fields do not
//     recompute the output key the coin pays to), taproot_leaf (a leaf script, control block or
//     signature leaf hash not in the registered tree), sighash (anything but ALL, or DEFAULT for
//     taproot: NONE, SINGLE and ANYONECANPAY let others change what is signed),
//     change_key (an output claims one of our key slots at a descriptor path with a key that
//     path does not derive: forged BIP32 derivation), change_script (our keys at that path, but
//     not the descriptor's script: a swapped quorum such as 2-of-3 → 1-of-4), change_index (our
//     change script, at an index beyond the watched lookahead window: change-path ransom).
//
// Change is an output whose script re-derives from the registered descriptor on branch 1 at an
// index the watcher tracks; an output carrying no derivation counts as change when its script is
// tracked on branch 1. Everything else is spend. Outflow = inputs − change.
func Analyze(p *psbt.Packet, desc *descriptor.Descriptor, chain ChainView) (*Analysis, error) {
	return AnalyzeWith(p, desc, chain, AnalyzeOptions{})
}

// AnalyzeOptions relaxes Analyze where a policy has explicitly opted in (docs/psbt-safety.md,
// check 6). The zero value is Analyze's strict behaviour.
type AnalyzeOptions struct {
	// AllowSighash lists sighash types signed besides ALL (and DEFAULT on taproot), for
	// example SIGHASH_SINGLE|ANYONECANPAY for a coinjoin-style policy. Only the six defined
	// types (ALL, NONE, SINGLE, each optionally |ANYONECANPAY) can be allowed; others are
	// always refused. SignInputs then signs such an input with the type it asks for.
	AllowSighash []txscript.SigHashType
}

func (o AnalyzeOptions) allows(h txscript.SigHashType) bool {
	switch h &^ txscript.SigHashAnyOneCanPay {
	case txscript.SigHashAll, txscript.SigHashNone, txscript.SigHashSingle:
	default:
		return false
	}
	for _, a := range o.AllowSighash {
		if a == h {
			return true
		}
	}
	return false
}

// AnalyzeWith is Analyze with options (see AnalyzeOptions).
func AnalyzeWith(p *psbt.Packet, desc *descriptor.Descriptor, chain ChainView, opts AnalyzeOptions) (*Analysis, error) {
	tx := p.UnsignedTx
	if tx == nil || len(tx.TxIn) == 0 || len(tx.TxOut) == 0 {
		return nil, refuse(InvalidPSBT, "the transaction has no inputs or no outputs")
	}
	if len(p.Inputs) != len(tx.TxIn) || len(p.Outputs) != len(tx.TxOut) {
		return nil, refuse(InvalidPSBT, "the PSBT has %d input and %d output maps for %d inputs and %d outputs",
			len(p.Inputs), len(p.Outputs), len(tx.TxIn), len(tx.TxOut))
	}
	a := &Analysis{UnsignedTxID: tx.TxHash().String(), LockTime: tx.LockTime, PSBTVersion: PSBTVersion(p),
		TxVersion: tx.Version, ScriptType: string(desc.Type())}
	if flags, ok := TxModifiable(p); ok && flags != 0 {
		return nil, refuse(UnsafePSBT, "tx_modifiable: the v2 PSBT lets others add or remove inputs or outputs (PSBT_GLOBAL_TX_MODIFIABLE = %#02x); only a fixed transaction is signed", flags)
	}
	if tx.Version < 1 || tx.Version > 2 {
		a.warn(WarnTxVersion, "transaction version %d is non-standard", tx.Version)
	}
	tip := chain.TipHeight()
	seen := map[wire.OutPoint]int{}
	weight := int64(tx.SerializeSizeStripped())*4 + 2 // + segwit marker and flag
	anyNonFinal := false
	for i, in := range tx.TxIn {
		op := in.PreviousOutPoint
		if j, dup := seen[op]; dup {
			return nil, refuse(InvalidPSBT, "duplicate_input: inputs %d and %d both spend %s", j, i, op)
		}
		seen[op] = i
		if in.Sequence < wire.MaxTxInSequenceNum-1 {
			a.RBF = true
		}
		if in.Sequence != wire.MaxTxInSequenceNum {
			anyNonFinal = true
		}
		info, _, err := analyzeInput(p, i, desc, chain, tip, opts)
		if err != nil {
			return nil, err
		}
		if rel := relativeLock(tx.Version, in.Sequence); rel != "" {
			info.RelativeLock = rel
			a.warn(WarnRelativeLock, "input %d sets a relative lock of %s (BIP-68)", i, rel)
		}
		a.Inputs = append(a.Inputs, info)
		a.InputTotal += info.Value
		weight += int64(desc.MaxWitnessSize()) + 4*int64(desc.MaxScriptSigSize())
	}
	switch {
	case tx.LockTime == 0 || !anyNonFinal:
		a.LockTimeKind = "none"
	case tx.LockTime < lockTimeThreshold:
		a.LockTimeKind = "height"
		// Final in a block of height h when nLockTime < h (BIP-65 / consensus IsFinalTx).
		a.warn(WarnLockTime, "nLockTime %d: valid from block %d on", tx.LockTime, int64(tx.LockTime)+1)
		if int64(tx.LockTime) > int64(tip) {
			a.warn(WarnLockTimeFuture, "nLockTime %d: not valid in the next block (%d); %d more blocks first", tx.LockTime, int64(tip)+1, int64(tx.LockTime)-int64(tip))
		}
	default:
		a.LockTimeKind = "time"
		a.warn(WarnLockTime, "nLockTime %d: not valid before that UNIX time (median time past)", tx.LockTime)
	}
	if desc.KeyPathSpendable() {
		a.warn(WarnKeyPathSpend, "the descriptor's taproot internal key can spend these coins alone, without the multisig")
	}

	var outTotal btcutil.Amount
	for j, out := range tx.TxOut {
		if out.Value < 0 || out.Value > btcutil.MaxSatoshi {
			return nil, refuse(InvalidPSBT, "output %d has an impossible value", j)
		}
		oi, err := analyzeOutput(a, p.Outputs[j], j, out, desc, chain)
		if err != nil {
			return nil, err
		}
		if oi.Kind == KindChange {
			a.ChangeTotal += oi.Value
		}
		outTotal += oi.Value
		if outTotal > btcutil.MaxSatoshi {
			return nil, refuse(InvalidPSBT, "outputs add up to more than 21 million BTC")
		}
		a.Outputs = append(a.Outputs, oi)
	}
	if outTotal > a.InputTotal {
		return nil, refuse(InvalidPSBT, "outputs (%s) are worth more than inputs (%s)", outTotal, a.InputTotal)
	}
	a.Fee = a.InputTotal - outTotal
	a.Outflow = a.InputTotal - a.ChangeTotal
	a.VSize = (weight + 3) / 4
	a.FeeRate = FeeRate(float64(a.Fee) / float64(a.VSize))
	return a, nil
}

// analyzeInput checks input i against the chain and the descriptor (checks 1, 2, 6, 11 of
// docs/psbt-safety.md) and returns its InputInfo and the descriptor's scripts there.
func analyzeInput(p *psbt.Packet, i int, desc *descriptor.Descriptor, chain ChainView, tip int32, opts AnalyzeOptions) (InputInfo, *descriptor.Derived, error) {
	in := p.UnsignedTx.TxIn[i]
	op := in.PreviousOutPoint
	pin := p.Inputs[i]
	coin, ok := chain.Coin(op)
	if !ok {
		claimed := [][]byte{}
		if pin.WitnessUtxo != nil {
			claimed = append(claimed, pin.WitnessUtxo.PkScript)
		}
		if pin.NonWitnessUtxo != nil && int(op.Index) < len(pin.NonWitnessUtxo.TxOut) {
			claimed = append(claimed, pin.NonWitnessUtxo.TxOut[op.Index].PkScript)
		}
		for _, s := range claimed {
			if _, _, ours := chain.Lookup(s); ours {
				return InputInfo{}, nil, refuse(UnsafePSBT, "input_unspent: input %d (%s) pays one of this wallet's scripts but is not unspent on the chain (already spent, or not yet seen)", i, op)
			}
		}
		return InputInfo{}, nil, refuse(NotOurWallet, "input %d (%s) is not an unspent output of the registered wallet", i, op)
	}
	if pin.WitnessUtxo != nil {
		if btcutil.Amount(pin.WitnessUtxo.Value) != coin.Value || !bytes.Equal(pin.WitnessUtxo.PkScript, coin.PkScript) {
			return InputInfo{}, nil, refuse(UnsafePSBT, "input_amount: input %d claims %s but the chain says %s at that outpoint", i,
				btcutil.Amount(pin.WitnessUtxo.Value), coin.Value)
		}
	}
	if pin.NonWitnessUtxo != nil {
		if pin.NonWitnessUtxo.TxHash() != op.Hash || int(op.Index) >= len(pin.NonWitnessUtxo.TxOut) {
			return InputInfo{}, nil, refuse(UnsafePSBT, "non_witness_utxo: input %d's previous transaction does not hash to %s", i, op.Hash)
		}
		prev := pin.NonWitnessUtxo.TxOut[op.Index]
		if btcutil.Amount(prev.Value) != coin.Value || !bytes.Equal(prev.PkScript, coin.PkScript) {
			return InputInfo{}, nil, refuse(UnsafePSBT, "input_amount: input %d's previous transaction disagrees with the chain", i)
		}
	}
	d, err := desc.Derive(coin.Branch, coin.Index)
	if err != nil {
		return InputInfo{}, nil, fmt.Errorf("psbt: derive input %d: %w", i, err)
	}
	if !bytes.Equal(d.PkScript, coin.PkScript) {
		return InputInfo{}, nil, fmt.Errorf("psbt: watcher's script for %s does not match the descriptor at %d/%d", op, coin.Branch, coin.Index)
	}
	info := InputInfo{OutPoint: op.String(), Value: coin.Value, Branch: coin.Branch, Index: coin.Index,
		ScriptType: string(d.Type), Sequence: in.Sequence, SighashType: uint32(txscript.SigHashAll)}
	if coin.Height > 0 && tip >= coin.Height {
		info.Confirmations = tip - coin.Height + 1
	}
	switch d.Type {
	case descriptor.P2WSH, descriptor.P2SHP2WSH:
		if pin.WitnessScript != nil && !bytes.Equal(pin.WitnessScript, d.WitnessScript) {
			return InputInfo{}, nil, refuse(UnsafePSBT, "witness_script: input %d's witness script is not the registered descriptor's", i)
		}
		if d.Type == descriptor.P2WSH && pin.RedeemScript != nil {
			return InputInfo{}, nil, refuse(UnsafePSBT, "redeem_script: input %d is native P2WSH but carries a redeem script", i)
		}
		if d.Type == descriptor.P2SHP2WSH && pin.RedeemScript != nil && !bytes.Equal(pin.RedeemScript, d.RedeemScript) {
			return InputInfo{}, nil, refuse(UnsafePSBT, "redeem_script: input %d's redeem script is not the registered descriptor's P2WSH program", i)
		}
		if pin.SighashType != 0 && pin.SighashType != txscript.SigHashAll {
			if !opts.allows(pin.SighashType) {
				return InputInfo{}, nil, refuse(UnsafePSBT, "sighash: input %d asks for sighash type %#x (%s); only SIGHASH_ALL is signed", i, uint32(pin.SighashType), sighashName(pin.SighashType))
			}
			info.SighashType = uint32(pin.SighashType)
		}
		info.SpendingPath = fmt.Sprintf("%d-of-%d multisig", desc.Threshold(), len(d.Keys))
	case descriptor.P2TR:
		if err := checkTaprootInput(pin, i, d); err != nil {
			return InputInfo{}, nil, err
		}
		switch pin.SighashType {
		case txscript.SigHashDefault:
			info.SighashType = uint32(txscript.SigHashDefault)
		case txscript.SigHashAll:
		default:
			if opts.allows(pin.SighashType) {
				info.SighashType = uint32(pin.SighashType)
				break
			}
			return InputInfo{}, nil, refuse(UnsafePSBT, "sighash: input %d asks for sighash type %#x (%s); only SIGHASH_DEFAULT or SIGHASH_ALL is signed", i, uint32(pin.SighashType), sighashName(pin.SighashType))
		}
		info.SpendingPath = "script path"
		for _, l := range d.Taproot.Leaves {
			info.LeafHashes = append(info.LeafHashes, hex.EncodeToString(l.LeafHash[:]))
			info.SpendingPath += fmt.Sprintf(" | %d-of-%d leaf %x…", l.Threshold, len(l.Keys), l.LeafHash[:4])
		}
	}
	return info, d, nil
}

// checkTaprootInput checks the BIP-371 fields of a taproot input against the descriptor's
// derivation d: the internal key and merkle root, if given, must recompute the output key the
// coin pays to (BIP-341 "taproot_tweak_pubkey"), and every leaf script and script signature must
// belong to a leaf of the registered tree.
func checkTaprootInput(pin psbt.PInput, i int, d *descriptor.Derived) error {
	tr := d.Taproot
	internal := schnorr.SerializePubKey(tr.InternalKey)
	if pin.TaprootInternalKey != nil && !bytes.Equal(pin.TaprootInternalKey, internal) {
		return refuse(UnsafePSBT, "taproot_internal_key: input %d's internal key is not the registered descriptor's", i)
	}
	if pin.TaprootMerkleRoot != nil && !bytes.Equal(pin.TaprootMerkleRoot, tr.MerkleRoot) {
		return refuse(UnsafePSBT, "taproot_merkle_root: input %d's merkle root is not the registered script tree's", i)
	}
	if pin.TaprootInternalKey != nil && pin.TaprootMerkleRoot != nil {
		// Both fields are byte-equal to the descriptor's (checked above), so the output key they
		// make (BIP-341 taproot_tweak_pubkey) is the one the descriptor computed from the same
		// two values: compare that with the coin's witness program instead of tweaking again.
		if !bytes.Equal(schnorr.SerializePubKey(tr.OutputKey), d.PkScript[2:]) {
			return refuse(UnsafePSBT, "taproot_output_key: input %d's internal key and merkle root do not make the output key it spends", i)
		}
	}
	for _, ls := range pin.TaprootLeafScript {
		if leafIndex(tr, ls.Script, ls.ControlBlock, ls.LeafVersion) < 0 {
			return refuse(UnsafePSBT, "taproot_leaf: input %d names a leaf script (or control block) that is not in the registered tree", i)
		}
	}
	for _, s := range pin.TaprootScriptSpendSig {
		if leafByHash(tr, s.LeafHash) < 0 {
			return refuse(UnsafePSBT, "taproot_leaf: input %d carries a signature for leaf %x, which is not in the registered tree", i, s.LeafHash)
		}
	}
	return nil
}

// leafIndex returns the position of (script, control block, version) among tr's leaves, or −1.
// The control block must be the one the descriptor derives: same internal key, parity and path.
func leafIndex(tr *descriptor.TaprootDerived, script, controlBlock []byte, version txscript.TapscriptLeafVersion) int {
	for i, l := range tr.Leaves {
		if bytes.Equal(l.Script, script) && bytes.Equal(l.ControlBlock, controlBlock) && l.LeafVersion == version {
			return i
		}
	}
	return -1
}

func leafByHash(tr *descriptor.TaprootDerived, h []byte) int {
	for i, l := range tr.Leaves {
		if bytes.Equal(l.LeafHash[:], h) {
			return i
		}
	}
	return -1
}

// analyzeOutput classifies output j (checks 3, 4, 9 of docs/psbt-safety.md).
func analyzeOutput(a *Analysis, pout psbt.POutput, j int, out *wire.TxOut, desc *descriptor.Descriptor, chain ChainView) (OutputInfo, error) {
	class := txscript.GetScriptClass(out.PkScript)
	oi := OutputInfo{Index: j, Value: btcutil.Amount(out.Value), Kind: KindSpend, ScriptClass: class.String()}
	if _, addrs, _, err := txscript.ExtractPkScriptAddrs(out.PkScript, desc.Network()); err == nil && len(addrs) == 1 {
		oi.Address = addrs[0].EncodeAddress()
	}
	switch class {
	case txscript.NullDataTy:
		oi.Kind = KindOpReturn
		a.warn(WarnOpReturn, "output %d is OP_RETURN data (%s burned)", j, oi.Value)
		return oi, nil
	case txscript.NonStandardTy, txscript.WitnessUnknownTy:
		a.warn(WarnNonstandard, "output %d pays a script of no standard type (%s)", j, class)
	}
	branch, index, claimed, err := claimedChange(pout, j, out.PkScript, desc)
	if err != nil {
		return oi, err
	}
	if !claimed {
		// No derivation claims our keys at a descriptor path: change only if the watcher tracks
		// the script on the change branch (then it is ours whatever the PSBT says).
		b, i, tracked := chain.Lookup(out.PkScript)
		if !tracked {
			if foreignPathClaim(pout, desc) {
				a.warn(WarnForeignPath, "output %d carries a BIP32 derivation of one of our master fingerprints outside the descriptor's paths; counted as spend", j)
			}
			return oi, nil
		}
		branch, index = b, i
	} else if b, i, tracked := chain.Lookup(out.PkScript); !tracked || b != branch || i != index {
		return oi, refuse(UnsafePSBT, "change_index: output %d is the wallet's script at %d/%d, beyond the watched lookahead window: coins there would go unseen", j, branch, index)
	}
	if branch != ChangeBranch {
		a.warn(WarnSelfReceive, "output %d pays the wallet's own receive address at index %d; counted as spend", j, index)
		return oi, nil
	}
	oi.Kind, oi.Branch, oi.Number = KindChange, &branch, &index
	return oi, nil
}

// claimedChange looks at an output's BIP32 derivations (BIP-174 PSBT_OUT_BIP32_DERIVATION and
// BIP-371 PSBT_OUT_TAP_BIP32_DERIVATION). A derivation of one of our key slots (fingerprint) at a
// descriptor path (origin/branch/index) is a claim that the output is ours at (branch, index);
// a claim must be true: the key must be the one the path derives (else change_key), and the
// script the descriptor's there (else change_script). claimed is false when no derivation
// makes such a claim.
func claimedChange(pout psbt.POutput, j int, pkScript []byte, desc *descriptor.Descriptor) (branch, index uint32, claimed bool, err error) {
	type claim struct {
		fp     uint32
		path   []uint32
		pubKey []byte // compressed (33) or x-only (32)
	}
	var claims []claim
	for _, d := range pout.Bip32Derivation {
		claims = append(claims, claim{d.MasterKeyFingerprint, d.Bip32Path, d.PubKey})
	}
	for _, d := range pout.TaprootBip32Derivation {
		claims = append(claims, claim{d.MasterKeyFingerprint, d.Bip32Path, d.XOnlyPubKey})
	}
	for _, c := range claims {
		var fp [4]byte // btcd's psbt keeps the fingerprint as a little-endian uint32
		binary.LittleEndian.PutUint32(fp[:], c.fp)
		b, i, ok := desc.MatchPath(fp, c.path)
		if !ok {
			continue
		}
		der, derr := desc.Derive(b, i)
		if derr != nil {
			continue
		}
		var keyOK bool
		for _, k := range der.Keys {
			if k.Fingerprint != fp || !slices.Equal(k.Path, c.path) {
				continue
			}
			if bytes.Equal(k.PubKey.SerializeCompressed(), c.pubKey) || bytes.Equal(schnorr.SerializePubKey(k.PubKey), c.pubKey) {
				keyOK = true
			}
		}
		if !keyOK {
			return 0, 0, false, refuse(UnsafePSBT, "change_key: output %d claims key %x at %s of one of our key slots, but that path derives another key (forged BIP32 derivation)",
				j, c.pubKey, descriptor.FormatPath(c.path))
		}
		if !bytes.Equal(der.PkScript, pkScript) {
			return 0, 0, false, refuse(UnsafePSBT, "change_script: output %d uses our key at %s but its script is not the registered descriptor's (another quorum or script type)",
				j, descriptor.FormatPath(c.path))
		}
		return b, i, true, nil
	}
	return 0, 0, false, nil
}

// foreignPathClaim tells whether an output has a derivation with one of our fingerprints at a
// path outside the descriptor (for example a co-signer's own single-key wallet).
func foreignPathClaim(pout psbt.POutput, desc *descriptor.Descriptor) bool {
	fps := map[uint32]bool{}
	for _, k := range desc.Keys() {
		fps[binary.LittleEndian.Uint32(k.Fingerprint[:])] = true
	}
	for _, d := range pout.Bip32Derivation {
		if fps[d.MasterKeyFingerprint] {
			return true
		}
	}
	for _, d := range pout.TaprootBip32Derivation {
		if fps[d.MasterKeyFingerprint] {
			return true
		}
	}
	return false
}

// relativeLock describes the BIP-68 relative lock of nSequence seq in a transaction of version
// txVersion ("" when none: version < 2 or the disable flag, bit 31, set).
func relativeLock(txVersion int32, seq uint32) string {
	if txVersion < 2 || seq&wire.SequenceLockTimeDisabled != 0 {
		return ""
	}
	v := seq & wire.SequenceLockTimeMask
	if seq&wire.SequenceLockTimeIsSeconds != 0 {
		return fmt.Sprintf("%ds", uint64(v)<<wire.SequenceLockTimeGranularity)
	}
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%d blocks", v)
}

func sighashName(h txscript.SigHashType) string {
	base := map[txscript.SigHashType]string{txscript.SigHashDefault: "DEFAULT", txscript.SigHashAll: "ALL",
		txscript.SigHashNone: "NONE", txscript.SigHashSingle: "SINGLE"}
	name, ok := base[h&^txscript.SigHashAnyOneCanPay]
	if !ok {
		name = "unknown"
	}
	if h&txscript.SigHashAnyOneCanPay != 0 {
		name += "|ANYONECANPAY"
	}
	return name
}
