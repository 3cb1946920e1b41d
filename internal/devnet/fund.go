package devnet

// fund.go — paying outputs from the harness's mature coinbases: one
// transaction with any outputs (FundOutputs), many scripts at once for big
// wallets (FundScripts), and BIP-125 replacement of such a payment
// (ReplaceFunding).

import (
	"context"
	"fmt"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// FundOptions tunes FundOutputs. The zero value is a non-replaceable
// transaction at 5 sat/vB.
type FundOptions struct {
	// RBF signals replaceability (BIP-125: nSequence 0xfffffffd on every
	// input), so that ReplaceFunding can replace the transaction.
	RBF bool
	// FeeRate in sat/vB; 0 means 5.
	FeeRate int64
}

// rbfSequence is the highest nSequence that signals BIP-125 replaceability.
const rbfSequence = wire.MaxTxInSequenceNum - 2

// DefaultFundPerTx is FundScripts' default number of outputs per
// transaction: 1,000 P2WSH outputs are about 43,000 vB, well below the
// standardness limit of 100,000 vB.
const DefaultFundPerTx = 1000

// FundOutputs pays outs in one transaction spending mature coinbases of the
// harness key (P2PKH), with change back to the harness key, and submits it to
// btcd (sendrawtransaction). It returns the signed transaction; it is
// unconfirmed until the next Mine. Errors: ErrNoFunds when the mature,
// unspent coinbases do not cover the outputs and the fee; btcd's rejection
// otherwise. Every output must be above the dust limit.
func (n *Network) FundOutputs(ctx context.Context, outs []*wire.TxOut, opts FundOptions) (*wire.MsgTx, error) {
	if err := n.checkOpen(); err != nil {
		return nil, err
	}
	if len(outs) == 0 {
		return nil, fmt.Errorf("devnet: FundOutputs: no outputs")
	}
	feeRate := opts.FeeRate
	if feeRate == 0 {
		feeRate = fundFeeRate
	}
	if feeRate < 0 {
		return nil, fmt.Errorf("devnet: FundOutputs: feerate %d sat/vB is negative", feeRate)
	}
	var amount btcutil.Amount
	for i, o := range outs {
		if o.Value < dustLimit {
			return nil, fmt.Errorf("devnet: FundOutputs: output %d of %d sat is below the dust limit %d", i, o.Value, dustLimit)
		}
		amount += btcutil.Amount(o.Value)
	}
	sequence := wire.MaxTxInSequenceNum
	if opts.RBF {
		sequence = rbfSequence
	}

	n.fundMu.Lock()
	defer n.fundMu.Unlock()

	_, tip, err := n.rpc.GetBestBlock()
	if err != nil {
		return nil, fmt.Errorf("devnet: FundOutputs: getbestblock: %w", err)
	}
	tx := wire.NewMsgTx(wire.TxVersion)
	for _, o := range outs {
		tx.AddTxOut(wire.NewTxOut(o.Value, o.PkScript))
	}
	var total btcutil.Amount
	height := n.nextCoinbase
	for ; height <= int64(tip)-coinbaseMaturity; height++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		op, value, ok, err := n.coinbaseAt(height)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		in := wire.NewTxIn(&op, nil, nil)
		in.Sequence = sequence
		tx.AddTxIn(in)
		total += value
		if total >= amount+n.fundFee(tx, feeRate) {
			break
		}
	}
	fee := n.fundFee(tx, feeRate)
	if total < amount+fee {
		return nil, fmt.Errorf("devnet: Fund %v: mature coinbases up to height %d hold %v: %w", amount, int64(tip)-coinbaseMaturity, total, ErrNoFunds)
	}
	if change := total - amount - fee; change >= dustLimit {
		tx.AddTxOut(wire.NewTxOut(int64(change), n.key.pkScript))
	}
	if err := n.signCoinbaseInputs(tx); err != nil {
		return nil, err
	}
	if _, err := n.rpc.SendRawTransaction(tx, false); err != nil {
		return nil, fmt.Errorf("devnet: Fund: sendrawtransaction: %w", err)
	}
	n.nextCoinbase = height + 1
	return tx, nil
}

// fundFee is the fee at feeRate of tx once signed and given a change output:
// its unsigned size plus a P2PKH signature script (at most 107 bytes and a
// length byte) per input and a P2PKH change output (34 bytes). No witness:
// vsize = size.
func (n *Network) fundFee(tx *wire.MsgTx, feeRate int64) btcutil.Amount {
	size := int64(tx.SerializeSizeStripped()) + 108*int64(len(tx.TxIn)) + 34 + 2
	return btcutil.Amount(size * feeRate)
}

// signCoinbaseInputs signs every input of tx, which all spend harness P2PKH outputs.
func (n *Network) signCoinbaseInputs(tx *wire.MsgTx) error {
	for i := range tx.TxIn {
		sig, err := txscript.SignatureScript(tx, i, n.key.pkScript, txscript.SigHashAll, n.key.priv, true)
		if err != nil {
			return fmt.Errorf("devnet: signing input %d: %w", i, err)
		}
		tx.TxIn[i].SignatureScript = sig
	}
	return nil
}

// FundScripts pays amount to every script of pkScripts, exactly one output
// each, in transactions of at most perTx outputs (0 means DefaultFundPerTx),
// and returns their txids in order; script i is paid by txids[i/perTx] at
// output i%perTx. It does not mine: call Mine to confirm them (a block holds
// tens of thousands of such outputs). This is how tests and benchmarks make a
// wallet with thousands of used scripts, one transaction in each script's
// history, in seconds.
func (n *Network) FundScripts(ctx context.Context, pkScripts [][]byte, amount btcutil.Amount, perTx int) ([]chainhash.Hash, error) {
	if perTx <= 0 {
		perTx = DefaultFundPerTx
	}
	var txids []chainhash.Hash
	for start := 0; start < len(pkScripts); start += perTx {
		end := min(start+perTx, len(pkScripts))
		outs := make([]*wire.TxOut, 0, end-start)
		for _, pk := range pkScripts[start:end] {
			outs = append(outs, wire.NewTxOut(int64(amount), pk))
		}
		tx, err := n.FundOutputs(ctx, outs, FundOptions{})
		if err != nil {
			return txids, fmt.Errorf("devnet: FundScripts: scripts %d..%d: %w", start, end-1, err)
		}
		txids = append(txids, tx.TxHash())
	}
	return txids, nil
}

// ReplaceFunding replaces orig, an unconfirmed FundOutputs transaction made
// with RBF, by one that spends the same coinbases and pays outs instead, at
// feeRate sat/vB (it must pay more than orig in total and per vbyte, BIP-125
// rules 3 and 4 as btcd applies them), with change to the harness key. orig's
// outputs disappear from the mempool; a wallet that orig paid sees its
// payment vanish (or replaced, when outs pays it too). Returns the
// replacement as submitted.
func (n *Network) ReplaceFunding(ctx context.Context, orig *wire.MsgTx, outs []*wire.TxOut, feeRate int64) (*wire.MsgTx, error) {
	if err := n.checkOpen(); err != nil {
		return nil, err
	}
	if feeRate <= 0 {
		return nil, fmt.Errorf("devnet: ReplaceFunding: feerate %d sat/vB must be positive", feeRate)
	}
	n.fundMu.Lock()
	defer n.fundMu.Unlock()
	tx := wire.NewMsgTx(wire.TxVersion)
	var total, amount btcutil.Amount
	for _, in := range orig.TxIn {
		prev, err := n.rpc.GetRawTransaction(&in.PreviousOutPoint.Hash)
		if err != nil {
			return nil, fmt.Errorf("devnet: ReplaceFunding: getrawtransaction %s: %w", in.PreviousOutPoint.Hash, err)
		}
		po := prev.MsgTx().TxOut[in.PreviousOutPoint.Index]
		if string(po.PkScript) != string(n.key.pkScript) {
			return nil, fmt.Errorf("devnet: ReplaceFunding: input %s is not the harness's", in.PreviousOutPoint)
		}
		total += btcutil.Amount(po.Value)
		ni := wire.NewTxIn(&in.PreviousOutPoint, nil, nil)
		ni.Sequence = rbfSequence
		tx.AddTxIn(ni)
	}
	for _, o := range outs {
		if o.Value < dustLimit {
			return nil, fmt.Errorf("devnet: ReplaceFunding: output of %d sat is below the dust limit", o.Value)
		}
		tx.AddTxOut(wire.NewTxOut(o.Value, o.PkScript))
		amount += btcutil.Amount(o.Value)
	}
	fee := n.fundFee(tx, feeRate)
	if total < amount+fee {
		return nil, fmt.Errorf("devnet: ReplaceFunding: inputs hold %v, outputs and fee need %v: %w", total, amount+fee, ErrNoFunds)
	}
	if change := total - amount - fee; change >= dustLimit {
		tx.AddTxOut(wire.NewTxOut(int64(change), n.key.pkScript))
	}
	if err := n.signCoinbaseInputs(tx); err != nil {
		return nil, err
	}
	if _, err := n.rpc.SendRawTransaction(tx, false); err != nil {
		return nil, fmt.Errorf("devnet: ReplaceFunding: sendrawtransaction: %w", err)
	}
	return tx, nil
}
