package electrum

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/btcsuite/btcd/wire"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// Reasons a broadcast is rejected. A *BroadcastError unwraps to ErrBroadcastRejected, to one of
// these (or none when the reason is not recognised) and to the server's *ServerError.
var (
	// ErrBroadcastRejected is wrapped by every *BroadcastError.
	ErrBroadcastRejected = errors.New("electrum: broadcast rejected")
	// ErrTxAlreadyKnown: the transaction is already in the node's mempool or chain (btcd:
	// "already have transaction", "transaction already exists"; Bitcoin Core:
	// "txn-already-in-mempool", "txn-already-known", "Transaction already in block chain").
	// Usually harmless: the transaction was broadcast before.
	ErrTxAlreadyKnown = errors.New("electrum: transaction already known")
	// ErrTxConflict: an input is spent by another transaction in the mempool that cannot be
	// replaced (btcd: "output already spent in mempool", "replacement transaction …"; Core:
	// "txn-mempool-conflict", "bad-txns-spends-conflicting-tx", "insufficient fee, rejecting
	// replacement").
	ErrTxConflict = errors.New("electrum: transaction conflicts with the mempool")
	// ErrFeeTooLow: the fee is under the node's relay or mempool minimum (btcd: "fees which is
	// under the required amount", "insufficient priority"; Core: "min relay fee not met",
	// "mempool min fee not met").
	ErrFeeTooLow = errors.New("electrum: fee too low")
	// ErrNonStandard: the transaction breaks the node's standardness policy (btcd: "is not
	// standard", "non-standard"; Core: "non-mandatory-script-verify-flag", "dust",
	// "tx-size", "non-final", "scriptpubkey", "bad-txns-nonstandard-inputs").
	ErrNonStandard = errors.New("electrum: transaction is non-standard")
	// ErrMissingInputs: an input is unknown or already spent on chain (btcd: "references
	// outputs of unknown or fully-spent transaction"; Core: "bad-txns-inputs-missingorspent",
	// "missing-inputs", "Missing inputs").
	ErrMissingInputs = errors.New("electrum: transaction inputs missing or spent")
)

// broadcastReasons maps lowercase fragments of node messages to reasons, checked in order
// (conflicts before fee, since Core's "insufficient fee, rejecting replacement" is a conflict).
var broadcastReasons = []struct {
	fragment string
	reason   error
}{
	{"already have transaction", ErrTxAlreadyKnown},
	{"transaction already exists", ErrTxAlreadyKnown},
	{"txn-already-in-mempool", ErrTxAlreadyKnown},
	{"txn-already-known", ErrTxAlreadyKnown},
	{"already in block chain", ErrTxAlreadyKnown},
	{"already in utxo set", ErrTxAlreadyKnown},
	{"output already spent in mempool", ErrTxConflict},
	{"replacement transaction", ErrTxConflict},
	{"rejecting replacement", ErrTxConflict},
	{"txn-mempool-conflict", ErrTxConflict},
	{"spends-conflicting-tx", ErrTxConflict},
	{"references outputs of unknown or fully-spent", ErrMissingInputs},
	{"missingorspent", ErrMissingInputs},
	{"missing-inputs", ErrMissingInputs},
	{"missing inputs", ErrMissingInputs},
	{"under the required amount", ErrFeeTooLow},
	{"insufficient priority", ErrFeeTooLow},
	{"due to low fees", ErrFeeTooLow},
	{"min relay fee not met", ErrFeeTooLow},
	{"mempool min fee not met", ErrFeeTooLow},
	{"insufficient fee", ErrFeeTooLow},
	{"fee too low", ErrFeeTooLow},
	{"not standard", ErrNonStandard},
	{"non-standard", ErrNonStandard},
	{"nonstandard", ErrNonStandard},
	{"non-mandatory-script-verify-flag", ErrNonStandard},
	{"dust", ErrNonStandard},
	{"tx-size", ErrNonStandard},
	{"non-final", ErrNonStandard},
	{"non-bip68-final", ErrNonStandard},
	{"scriptpubkey", ErrNonStandard},
	{"scriptsig-not-pushonly", ErrNonStandard},
	{"multi-op-return", ErrNonStandard},
}

// BroadcastError is a rejected blockchain.transaction.broadcast. Reason is one of
// ErrTxAlreadyKnown, ErrTxConflict, ErrFeeTooLow, ErrNonStandard, ErrMissingInputs, or nil when
// the node's message is not recognised; Message is the node's reason as ElectrumX passed it
// through, without ElectrumX's preamble and the echoed raw transaction.
type BroadcastError struct {
	Txid    chainhash.Hash
	Reason  error
	Message string
	Server  *ServerError
}

func (e *BroadcastError) Error() string {
	what := "rejected"
	if e.Reason != nil {
		what = strings.TrimPrefix(e.Reason.Error(), "electrum: ")
	}
	return fmt.Sprintf("electrum: broadcast %s: %s: %s", e.Txid, what, e.Message)
}

// Unwrap gives ErrBroadcastRejected, the reason (if recognised) and the *ServerError.
func (e *BroadcastError) Unwrap() []error {
	errs := []error{ErrBroadcastRejected}
	if e.Reason != nil {
		errs = append(errs, e.Reason)
	}
	if e.Server != nil {
		errs = append(errs, e.Server)
	}
	return errs
}

// BroadcastReason classifies a node's rejection message (see BroadcastError); nil when unknown.
func BroadcastReason(message string) error {
	m := strings.ToLower(message)
	for _, r := range broadcastReasons {
		if strings.Contains(m, r.fragment) {
			return r.reason
		}
	}
	return nil
}

// cleanRejectMessage strips ElectrumX's "the transaction was rejected by network rules.\n\n"
// preamble and the "[rawtx]" it appends (electrumx/server/session.py, transaction_broadcast),
// and bounds the length.
func cleanRejectMessage(msg string) string {
	msg = strings.TrimSpace(msg)
	if _, rest, ok := strings.Cut(msg, "rejected by network rules."); ok {
		msg = strings.TrimSpace(rest)
	}
	if i := strings.LastIndex(msg, "\n["); i >= 0 && strings.HasSuffix(msg, "]") {
		msg = strings.TrimSpace(msg[:i])
	}
	msg = strings.Join(strings.Fields(msg), " ")
	const limit = 300
	if len(msg) > limit {
		msg = msg[:limit] + "…"
	}
	return msg
}

// BroadcastTransaction sends a serialized transaction with blockchain.transaction.broadcast
// (Electrum protocol) and returns its txid, checked against the server's answer.
// Errors: ErrBadRequest (nothing sent) when rawTx does not parse as a transaction;
// *BroadcastError (errors.Is ErrBroadcastRejected and the reason) when the server
// refuses it; an error naming the answer when the server answers something other than the txid
// (ElectrumX may answer a warning text to old clients); transport errors as Call returns them.
func (c *Client) BroadcastTransaction(ctx context.Context, rawTx []byte) (chainhash.Hash, error) {
	// The txid hashes the serialization without witness data (BIP-141); a double SHA-256 of
	// rawTx would be the wtxid of a segwit transaction.
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(rawTx)); err != nil {
		return chainhash.Hash{}, fmt.Errorf("electrum: broadcast: %w: not a transaction: %v", ErrBadRequest, err)
	}
	txid := tx.TxHash()
	var got string
	err := c.Call(ctx, "blockchain.transaction.broadcast", []any{hex.EncodeToString(rawTx)}, &got)
	var se *ServerError
	if errors.As(err, &se) {
		msg := cleanRejectMessage(se.Message)
		return chainhash.Hash{}, &BroadcastError{Txid: txid, Reason: BroadcastReason(msg), Message: msg, Server: se}
	}
	if err != nil {
		return chainhash.Hash{}, fmt.Errorf("electrum: broadcast %s: %w", txid, err)
	}
	h, err := chainhash.NewHashFromStr(got)
	if err != nil || *h != txid {
		return chainhash.Hash{}, fmt.Errorf("electrum: broadcast %s: %w: server answered %q, not the txid", txid, ErrMalformedMessage, truncate([]byte(got)))
	}
	return txid, nil
}

// FeeRate is a feerate in sat/vB.
type FeeRate float64

// Fee estimation bounds and fallback (sat/vB).
const (
	// DefaultFallbackFeeRate is used when the server has no estimate (-1, as regtest and a
	// fresh node answer) or fails: 2 sat/vB, above the default minimum relay feerate (1) so the
	// transaction relays, and low enough not to overpay on a quiet network. Callers that need
	// a confirmation deadline should pass their own.
	DefaultFallbackFeeRate FeeRate = 2
	// MinFeeRate is the floor of an estimate: Bitcoin Core's default minimum relay feerate.
	MinFeeRate FeeRate = 1
	// DefaultMaxFeeRate is the ceiling above which a server's estimate is not believed (a
	// hostile or broken server could otherwise make us overpay): 1,000 sat/vB.
	DefaultMaxFeeRate FeeRate = 1000
)

// FeeEstimate is the answer of EstimateFee: always a usable Rate.
type FeeEstimate struct {
	Rate      FeeRate // sat/vB, ≥ MinFeeRate
	Estimated bool    // Rate is the server's estimate; false: it is the fallback
	Reason    error   // why the fallback was used (ErrNoFeeEstimate, ErrImplausibleFee or the call's error); nil when Estimated
}

var (
	// ErrNoFeeEstimate: the server answered -1 (its node has no estimate for the target).
	ErrNoFeeEstimate = errors.New("electrum: server has no fee estimate")
	// ErrImplausibleFee: the server's estimate is not a number, is negative (other than -1) or
	// exceeds the ceiling.
	ErrImplausibleFee = errors.New("electrum: implausible fee estimate")
)

// EstimateFee asks blockchain.estimatefee(blocks) (Electrum protocol; the answer is BTC per
// kvB, or -1 when the node has no estimate) and converts it to sat/vB (× 100,000), raised to
// MinFeeRate when lower. When the server answers -1, fails, or answers something implausible
// (not a number, negative, or above maxRate; maxRate ≤ 0 means DefaultMaxFeeRate), the
// estimate is fallback (≤ 0 means DefaultFallbackFeeRate) with Estimated false and the reason.
// blocks must be ≥ 1.
func (c *Client) EstimateFee(ctx context.Context, blocks int, fallback, maxRate FeeRate) FeeEstimate {
	return c.estimateFee(ctx, []any{blocks}, fallback, maxRate)
}

// estimateFee is EstimateFee with blockchain.estimatefee's params: [blocks] or [blocks, mode].
func (c *Client) estimateFee(ctx context.Context, params []any, fallback, maxRate FeeRate) FeeEstimate {
	blocks := params[0].(int)
	if fallback <= 0 {
		fallback = DefaultFallbackFeeRate
	}
	if maxRate <= 0 {
		maxRate = DefaultMaxFeeRate
	}
	fb := func(reason error) FeeEstimate {
		return FeeEstimate{Rate: max(fallback, MinFeeRate), Reason: reason}
	}
	if blocks < 1 {
		return fb(fmt.Errorf("%w: target %d blocks, want ≥ 1", ErrImplausibleFee, blocks))
	}
	var raw json.RawMessage
	if err := c.Call(ctx, "blockchain.estimatefee", params, &raw); err != nil {
		return fb(err)
	}
	rate, err := feeRateFromBTCPerKvB(raw)
	if err != nil {
		return fb(err)
	}
	if rate > maxRate {
		return fb(fmt.Errorf("%w: %.1f sat/vB exceeds the ceiling %.1f", ErrImplausibleFee, float64(rate), float64(maxRate)))
	}
	return FeeEstimate{Rate: max(rate, MinFeeRate), Estimated: true}
}

// feeRateFromBTCPerKvB converts the result of blockchain.estimatefee to sat/vB.
func feeRateFromBTCPerKvB(raw json.RawMessage) (FeeRate, error) {
	var p *float64
	if err := json.Unmarshal(raw, &p); err != nil || p == nil {
		return 0, fmt.Errorf("%w: %s is not a number", ErrImplausibleFee, truncate(raw))
	}
	v := *p
	switch {
	case v == -1:
		return 0, ErrNoFeeEstimate
	case v < 0 || math.IsNaN(v) || math.IsInf(v, 0):
		return 0, fmt.Errorf("%w: %v BTC/kvB", ErrImplausibleFee, v)
	}
	return FeeRate(v * 1e5), nil
}
