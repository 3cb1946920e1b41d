package psbt

// Inspection for people: `cosigner psbt inspect FILE` runs Analyze against a wallet view and
// prints the result as a table. The views here are plain values (no I/O): StateView over what
// chainwatch persisted, and PSBTView when no wallet view exists.

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
)

// StateView is a ChainView over a snapshot of the wallet: its unspent coins, its tracked scripts
// (with their branch and index) and the tip height, as chainwatch last persisted them.
type StateView struct {
	Coins   map[wire.OutPoint]Coin
	Scripts map[string][2]uint32 // string(pkScript) → {branch, index}
	Tip     int32
	HasTip  bool
}

// Coin implements ChainView.
func (v *StateView) Coin(op wire.OutPoint) (Coin, bool) { c, ok := v.Coins[op]; return c, ok }

// Lookup implements ChainView.
func (v *StateView) Lookup(pkScript []byte) (uint32, uint32, bool) {
	bi, ok := v.Scripts[string(pkScript)]
	return bi[0], bi[1], ok
}

// TipHeight implements ChainView.
func (v *StateView) TipHeight() int32 { return v.Tip }

// Synced implements ChainView: a snapshot is as complete as it was when written, once a tip
// was seen.
func (v *StateView) Synced() bool { return v.HasTip }

// PSBTView is the ChainView to use when there is no wallet view at all: it believes the PSBT's
// own witness_utxo / non_witness_utxo for the amount and script of each input (it cannot check
// them against the chain: no input_amount or input_unspent protection), and it takes a script as
// the wallet's when the descriptor derives it on some branch at an index below lookahead. Tip
// height is 0, so confirmations are 0.
func PSBTView(p *psbt.Packet, desc *descriptor.Descriptor, lookahead uint32) *StateView {
	v := &StateView{Coins: map[wire.OutPoint]Coin{}, Scripts: map[string][2]uint32{}}
	for b := uint32(0); b < uint32(desc.Branches()); b++ {
		for i := uint32(0); i < lookahead; i++ {
			if s, err := desc.PkScript(b, i); err == nil {
				v.Scripts[string(s)] = [2]uint32{b, i}
			}
		}
	}
	if p == nil || p.UnsignedTx == nil {
		return v
	}
	for i, in := range p.UnsignedTx.TxIn {
		if i >= len(p.Inputs) {
			break
		}
		var out *wire.TxOut
		switch pin := p.Inputs[i]; {
		case pin.WitnessUtxo != nil:
			out = pin.WitnessUtxo
		case pin.NonWitnessUtxo != nil && pin.NonWitnessUtxo.TxHash() == in.PreviousOutPoint.Hash &&
			int(in.PreviousOutPoint.Index) < len(pin.NonWitnessUtxo.TxOut):
			out = pin.NonWitnessUtxo.TxOut[in.PreviousOutPoint.Index]
		}
		if out == nil {
			continue
		}
		if bi, ok := v.Scripts[string(out.PkScript)]; ok {
			v.Coins[in.PreviousOutPoint] = Coin{Value: btcutil.Amount(out.Value), PkScript: out.PkScript, Branch: bi[0], Index: bi[1]}
		}
	}
	v.HasTip = true
	return v
}

// WriteTable writes the analysis as tables for people: inputs, outputs, then the totals (input
// total, change, outflow, fee, estimated vsize, feerate, fee share of outflow), the transaction's
// lock time, RBF and versions, and every warning.
func WriteTable(w io.Writer, a *Analysis) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "unsigned txid\t%s\n", a.UnsignedTxID)
	fmt.Fprintf(tw, "PSBT version\t%d (tx version %d, %s)\n", a.PSBTVersion, a.TxVersion, a.ScriptType)
	tw.Flush()

	fmt.Fprintf(w, "\ninputs (%d)\n", len(a.Inputs))
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\toutpoint\tvalue\tpath\tconf\tsequence\tsighash\tspending path")
	for i, in := range a.Inputs {
		seq := fmt.Sprintf("%#08x", in.Sequence)
		if in.RelativeLock != "" {
			seq += " (" + in.RelativeLock + ")"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s/%d\t%d\t%s\t%s\t%s\n", i, in.OutPoint, in.Value, branchName(in.Branch), in.Index,
			in.Confirmations, seq, sighashLabel(in.SighashType), in.SpendingPath)
	}
	tw.Flush()

	fmt.Fprintf(w, "\noutputs (%d)\n", len(a.Outputs))
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  #\tkind\tvalue\taddress / script")
	for _, o := range a.Outputs {
		kind := o.Kind
		if o.Kind == KindChange && o.Number != nil {
			kind = fmt.Sprintf("change/%d", *o.Number)
		}
		addr := o.Address
		if addr == "" {
			addr = "(" + o.ScriptClass + ")"
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", o.Index, kind, o.Value, addr)
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', tabwriter.AlignRight)
	row := func(label string, v btcutil.Amount) { fmt.Fprintf(tw, "%s\t%s\t\n", label, v) }
	row("inputs", a.InputTotal)
	row("change", a.ChangeTotal)
	row("outflow (inputs − change)", a.Outflow)
	row("fee", a.Fee)
	share := 0.0
	if a.Outflow > 0 {
		share = 100 * float64(a.Fee) / float64(a.Outflow)
	}
	fmt.Fprintf(tw, "fee share of outflow\t%.2f %%\t\n", share)
	fmt.Fprintf(tw, "vsize (estimated, largest witness)\t%d vB\t\n", a.VSize)
	fmt.Fprintf(tw, "feerate\t%.2f sat/vB\t\n", float64(a.FeeRate))
	lock := "none"
	if a.LockTimeKind != "none" {
		lock = fmt.Sprintf("%d (%s)", a.LockTime, a.LockTimeKind)
	} else if a.LockTime != 0 {
		lock = fmt.Sprintf("%d (not enforced: every input final)", a.LockTime)
	}
	fmt.Fprintf(tw, "nLockTime\t%s\t\n", lock)
	fmt.Fprintf(tw, "RBF (BIP-125)\t%s\t\n", yesNo(a.RBF))
	tw.Flush()

	if len(a.Warnings) == 0 {
		_, err := fmt.Fprintln(w, "\nwarnings: none")
		return err
	}
	fmt.Fprintf(w, "\nwarnings (%d)\n", len(a.Warnings))
	for _, wa := range a.Warnings {
		fmt.Fprintf(w, "  %s: %s\n", wa.Code, wa.Message)
	}
	return nil
}

func branchName(b uint32) string {
	switch b {
	case 0:
		return "receive"
	case ChangeBranch:
		return "change"
	}
	return fmt.Sprintf("branch %d", b)
}

func sighashLabel(h uint32) string {
	if h == 0 {
		return "DEFAULT"
	}
	return sighashName(txscript.SigHashType(h))
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
