package psbt

// BIP-174 Creator role (https://github.com/bitcoin/bips/blob/master/bip-0174.mediawiki#creator),
// with the Updater of update.go, for the wallet's own transactions: from a coin selection
// (Select), the payments, and the registered descriptor, Build writes a PSBT v0 whose inputs and
// change output carry everything a co-signer (this one through Analyze and
// SignInputs, another one, or a hardware signer) needs to check and sign it.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/btcutil/txsort"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
)

// Payment is an output to pay: to Address, or to the raw PkScript (exactly one of them).
type Payment struct {
	Address  btcutil.Address
	PkScript []byte
	// Amount in sat. Ignored for a sweep, whose one payment gets Selection.Amount.
	Amount btcutil.Amount
}

func (p Payment) script(desc *descriptor.Descriptor) ([]byte, error) {
	switch {
	case p.Address != nil && p.PkScript != nil:
		return nil, fmt.Errorf("%w: give an address or a script, not both", ErrPayment)
	case p.PkScript != nil:
		if len(p.PkScript) == 0 || len(p.PkScript) > txscript.MaxScriptSize {
			return nil, fmt.Errorf("%w: script of %d bytes", ErrPayment, len(p.PkScript))
		}
		return p.PkScript, nil
	case p.Address != nil:
		if !p.Address.IsForNet(desc.Network()) {
			return nil, fmt.Errorf("%w: address %s is not for %s", ErrPayment, p.Address, desc.Network().Name)
		}
		return txscript.PayToAddrScript(p.Address)
	}
	return nil, fmt.Errorf("%w: no address and no script", ErrPayment)
}

// PrevTxFetcher gives full previous transactions for non_witness_utxo (BIP-174
// PSBT_IN_NON_WITNESS_UTXO). Hardware signers want them for segwit v0 inputs too, since the
// segwit fee attack (bitcoin#19215). Electrum's blockchain.transaction.get(txid) satisfies it.
type PrevTxFetcher interface {
	PrevTx(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error)
}

// Order is how Build orders inputs and outputs.
type Order int

const (
	// OrderShuffle puts inputs and outputs in random order, as Bitcoin Core does: the change
	// output's position says nothing. The default.
	OrderShuffle Order = iota
	// OrderBIP69 sorts inputs by outpoint and outputs by amount then script (BIP-69): the same
	// selection always gives the same transaction, which coordinators can compare.
	OrderBIP69
)

// BuildOptions are the parts of the transaction that are not the selection or the payments.
type BuildOptions struct {
	// ChangeIndex is the index, on the descriptor's change branch (1), of the change output:
	// the wallet's next unused change index. Analyze classifies the output as change only if
	// the watcher tracks that index.
	ChangeIndex uint32
	// TipHeight is the height of the best block, for the anti-fee-sniping nLockTime. Pass 0
	// when the view of the chain is not current (nLockTime is then 0).
	TipHeight int32
	Order     Order
	// Rand drives the shuffle and the nLockTime draw; nil uses math/rand/v2's randomly seeded
	// source.
	Rand *rand.Rand
}

// Build writes the unsigned PSBT (v0, transaction version 2) that spends sel.Inputs to
// payments and, when sel.Change > 0, to the change output at (branch 1, opts.ChangeIndex).
//
// Every input carries witness_utxo, non_witness_utxo (fetched through prev; skipped when prev
// is nil), and for wsh / sh(wsh) its witness script (and redeem script if P2SH-wrapped) and a
// BIP32 derivation for every key slot of desc; the change output carries its witness script
// and the derivations. For tr() wallets (BIP-371) every input carries instead
// tap_internal_key, tap_merkle_root, a tap_leaf_script (control block, leaf script, leaf
// version) per leaf and a tap_bip32_derivation per key with the hashes of its leaves; the
// change output tap_internal_key, tap_tree and the tap_bip32_derivations;
// the global map has every key slot's xpub with its origin (PSBT_GLOBAL_XPUB), which hardware
// co-signers use to check the multisig (this co-signer never takes keys from a PSBT).
// Every input signals replaceability (nSequence 0xfffffffd, BIP-125) and nLockTime discourages
// fee sniping as Bitcoin Core does (wallet/spend.cpp DiscourageFeeSniping): the tip height, and
// one time in ten a random 0–99 blocks earlier so that transactions built late do not stand out.
//
// Errors: ErrPayment, ErrDustOutput (a payment below its dust limit), ErrForeignCoin,
// ErrUnsupportedDescriptor,
// ErrPrevTx (or the fetcher's error, wrapped), ErrSelectionMismatch.
func Build(ctx context.Context, desc *descriptor.Descriptor, sel Selection, payments []Payment, opts BuildOptions, prev PrevTxFetcher) (*psbt.Packet, error) {
	if len(sel.Inputs) == 0 || len(payments) == 0 {
		return nil, fmt.Errorf("%w: no inputs or no payments", ErrSelectionMismatch)
	}
	if opts.TipHeight < 0 || opts.TipHeight >= txscript.LockTimeThreshold {
		return nil, fmt.Errorf("psbt: tip height %d is not a block height", opts.TipHeight)
	}
	if sel.Algorithm == AlgorithmSweep && len(payments) != 1 {
		return nil, fmt.Errorf("%w: a sweep pays exactly one output, got %d", ErrSelectionMismatch, len(payments))
	}
	tx := wire.NewMsgTx(2)
	paid, err := addPayments(tx, desc, sel, payments)
	if err != nil {
		return nil, err
	}
	var change *descriptor.Derived
	if sel.Change > 0 {
		if change, err = desc.Derive(ChangeBranch, opts.ChangeIndex); err != nil {
			return nil, fmt.Errorf("psbt: change output: %w", err)
		}
		tx.AddTxOut(wire.NewTxOut(int64(sel.Change), change.PkScript))
	}
	coins, derived, err := addInputs(tx, desc, sel)
	if err != nil {
		return nil, err
	}
	if err := checkAgainstSelection(tx, desc, sel, paid); err != nil {
		return nil, err
	}
	tx.LockTime = antiFeeSnipingLockTime(opts.TipHeight, opts.Rand)
	if err := order(tx, opts); err != nil {
		return nil, err
	}
	p, err := psbt.NewFromUnsignedTx(tx)
	if err != nil {
		return nil, fmt.Errorf("psbt: create PSBT: %w", err)
	}
	if err := update(ctx, p, desc, coins, derived, change, sel.Change, prev); err != nil {
		return nil, err
	}
	return p, nil
}

// addPayments adds one output per payment to tx (a sweep's single payment gets sel.Amount) and
// returns what they add up to, which must be sel.Amount. Errors: ErrPayment, ErrDustOutput,
// ErrSelectionMismatch.
func addPayments(tx *wire.MsgTx, desc *descriptor.Descriptor, sel Selection, payments []Payment) (btcutil.Amount, error) {
	var paid btcutil.Amount
	for i, pay := range payments {
		script, err := pay.script(desc)
		if err != nil {
			return 0, fmt.Errorf("psbt: payment %d: %w", i, err)
		}
		amount := pay.Amount
		if sel.Algorithm == AlgorithmSweep {
			amount = sel.Amount
		}
		out := wire.NewTxOut(int64(amount), script)
		if amount <= 0 || amount > btcutil.MaxSatoshi {
			return 0, fmt.Errorf("%w: payment %d of %d sat", ErrPayment, i, int64(amount))
		}
		if dust := DustThreshold(out); amount < dust {
			return 0, fmt.Errorf("%w: payment %d of %s is below %s", ErrDustOutput, i, amount, dust)
		}
		paid += amount
		tx.AddTxOut(out)
	}
	if paid != sel.Amount {
		return 0, fmt.Errorf("%w: payments add up to %s, the selection to %s", ErrSelectionMismatch, paid, sel.Amount)
	}
	return paid, nil
}

// addInputs adds sel's coins to tx as inputs signalling replaceability (nSequence 0xfffffffd,
// BIP-125), each checked to be desc's script at its (branch, index), and returns the coins and
// their derived scripts by outpoint. Errors: ErrSelectionMismatch (a coin twice),
// ErrForeignCoin, ErrUnsupportedDescriptor.
func addInputs(tx *wire.MsgTx, desc *descriptor.Descriptor, sel Selection) (map[wire.OutPoint]Coin, map[wire.OutPoint]*descriptor.Derived, error) {
	derived := make(map[wire.OutPoint]*descriptor.Derived, len(sel.Inputs))
	coins := make(map[wire.OutPoint]Coin, len(sel.Inputs))
	for _, c := range sel.Inputs {
		if _, dup := coins[c.OutPoint]; dup {
			return nil, nil, fmt.Errorf("%w: coin %s selected twice", ErrSelectionMismatch, c.OutPoint)
		}
		d, err := desc.Derive(c.Branch, c.Index)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s at %d/%d: %v", ErrForeignCoin, c.OutPoint, c.Branch, c.Index, err)
		}
		if !bytes.Equal(d.PkScript, c.PkScript) {
			return nil, nil, fmt.Errorf("%w: %s is not the descriptor's script at %d/%d", ErrForeignCoin, c.OutPoint, c.Branch, c.Index)
		}
		if d.WitnessScript == nil && d.Taproot == nil {
			return nil, nil, fmt.Errorf("%w: %s has neither a witness script nor a taproot tree", ErrUnsupportedDescriptor, c.OutPoint)
		}
		derived[c.OutPoint], coins[c.OutPoint] = d, c.Coin
		tx.AddTxIn(&wire.TxIn{PreviousOutPoint: c.OutPoint, Sequence: wire.MaxTxInSequenceNum - 2})
	}
	return coins, derived, nil
}

// checkAgainstSelection checks that tx (inputs, the payments worth paid, change) is the transaction
// sel was computed for: the same input total and fee, and the same vsize. Errors:
// ErrSelectionMismatch.
func checkAgainstSelection(tx *wire.MsgTx, desc *descriptor.Descriptor, sel Selection, paid btcutil.Amount) error {
	var inTotal btcutil.Amount
	for _, c := range sel.Inputs {
		inTotal += c.Value
	}
	if inTotal != sel.InputTotal || inTotal-paid-sel.Change != sel.Fee {
		return fmt.Errorf("%w: inputs %s, outputs %s, fee %s", ErrSelectionMismatch, inTotal, paid+sel.Change, sel.Fee)
	}
	inWeight, err := InputWeight(desc)
	if err != nil {
		return err
	}
	outSizes := make([]int, len(tx.TxOut))
	for i, o := range tx.TxOut {
		outSizes[i] = o.SerializeSize()
	}
	if v := (txWeight(len(tx.TxIn), inWeight, outSizes, 0) + 3) / 4; v != sel.VSize {
		return fmt.Errorf("%w: the transaction's vsize is %d vB, the selection's %d vB", ErrSelectionMismatch, v, sel.VSize)
	}
	return nil
}

// order puts tx's inputs and outputs in opts.Order: BIP-69, or shuffled with opts.Rand.
func order(tx *wire.MsgTx, opts BuildOptions) error {
	switch opts.Order {
	case OrderBIP69:
		txsort.InPlaceSort(tx)
	case OrderShuffle:
		shuffle := rand.Shuffle
		if opts.Rand != nil {
			shuffle = opts.Rand.Shuffle
		}
		shuffle(len(tx.TxIn), func(i, j int) { tx.TxIn[i], tx.TxIn[j] = tx.TxIn[j], tx.TxIn[i] })
		shuffle(len(tx.TxOut), func(i, j int) { tx.TxOut[i], tx.TxOut[j] = tx.TxOut[j], tx.TxOut[i] })
	default:
		return fmt.Errorf("psbt: unknown output order %d", opts.Order)
	}
	return nil
}

// antiFeeSnipingLockTime is Bitcoin Core's DiscourageFeeSniping for height-based locktimes:
// the tip height (a miner reorging the tip to take the fee cannot include the transaction
// earlier), and with probability 1/10 up to 99 blocks less, so that transactions that waited
// (for co-signers, say) look like the others. 0 when tip is 0 (no current view of the chain).
func antiFeeSnipingLockTime(tip int32, r *rand.Rand) uint32 {
	if tip <= 0 {
		return 0
	}
	intN := rand.IntN
	if r != nil {
		intN = r.IntN
	}
	lt := tip
	if intN(10) == 0 {
		lt = max(0, lt-int32(intN(100)))
	}
	return uint32(lt)
}
