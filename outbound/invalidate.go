package outbound

// Invalidation: the operator's way to end an outstanding signature that will never be used. A
// signed transaction stays outstanding exposure until it confirms or one of its inputs is spent
// by a different confirmed transaction (exposure.go); so to end it, the wallet spends one of its
// inputs back to itself. That transaction is an outbound proposal like an automation's (trigger
// key "invalidate:<txid>:<outpoint>:<attempt>", automation = the one whose co-signers and fee
// settings it borrows): built by the engine, signed through the Service (policy, exposure, audit)
// as client "automation:<name>", sent to the co-signers, finalized, broadcast and followed. While
// both are outstanding they share an input, so the exposure counts the larger of the two (the
// invalidation only pays a fee); once the invalidation confirms (proven), the withheld
// transaction can never confirm and stops counting.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// InvalidationPrefix starts the trigger key of an invalidation proposal.
const InvalidationPrefix = "invalidate:"

// Invalidation errors.
var (
	// ErrNotOutstanding means the ledger has no outstanding entry with that txid (unknown,
	// already confirmed, or already invalidated).
	ErrNotOutstanding = errors.New("psbtflow: no outstanding signed transaction with that txid")
	// ErrNoFreeInput means none of the entry's inputs is an unspent wallet coin that no live
	// proposal spends (all spent, in the mempool, or foreign).
	ErrNoFreeInput = errors.New("psbtflow: no input of the transaction is an unspent wallet coin free to spend")
)

// InvalidationKey is the trigger key of the attempt-th invalidation of txid by spending op.
func InvalidationKey(txid string, op wire.OutPoint, attempt int) string {
	return fmt.Sprintf("%s%s:%s:%d", InvalidationPrefix, txid, op, attempt)
}

// ParseInvalidationKey returns the txid and outpoint of an invalidation trigger key; ok is false
// for any other key.
func ParseInvalidationKey(key string) (txid string, op wire.OutPoint, ok bool) {
	rest, found := strings.CutPrefix(key, InvalidationPrefix)
	if !found {
		return "", op, false
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 4 {
		return "", op, false
	}
	if _, err := chainhash.NewHashFromStr(parts[0]); err != nil || len(parts[0]) != 64 {
		return "", op, false
	}
	if _, err := strconv.Atoi(parts[3]); err != nil {
		return "", op, false
	}
	p, err := wire.NewOutPointFromString(parts[1] + ":" + parts[2])
	if err != nil {
		return "", op, false
	}
	return parts[0], *p, true
}

// RequestInvalidation stores an invalidation proposal for the outstanding ledger entry txid,
// spending the first of its inputs that is in utxos (the wallet's unspent coins as the watcher
// last stored them) and not taken by a live proposal, under automation via (whose co-signers,
// fee strategy and timeout it uses). The running daemon's engine picks it up at its next step.
// An invalidation of txid still in flight is returned as it is (created false). Errors:
// ErrNotOutstanding, ErrNoFreeInput, the database's.
func RequestInvalidation(ctx context.Context, db Store, utxos []chainwatch.UTXO, txid, via string, now time.Time) (store.Proposal, bool, error) {
	r, ok, err := db.LedgerEntry(ctx, txid)
	if err != nil {
		return store.Proposal{}, false, err
	}
	if !ok || r.State != store.LedgerOutstanding {
		state := "unknown"
		if ok {
			state = r.State
		}
		return store.Proposal{}, false, fmt.Errorf("%w: %s is %s", ErrNotOutstanding, txid, state)
	}
	ps, err := db.Proposals(ctx)
	if err != nil {
		return store.Proposal{}, false, err
	}
	taken := map[string]bool{}
	attempt := 0
	for _, p := range ps {
		if t, _, ok := ParseInvalidationKey(p.TriggerKey); ok && t == txid {
			if Live(p.State) {
				return p, false, nil
			}
			attempt++
		}
		if Live(p.State) {
			if pk, err := storedPSBT(p); err == nil && pk != nil {
				for _, in := range pk.UnsignedTx.TxIn {
					taken[in.PreviousOutPoint.String()] = true
				}
			}
		}
	}
	unspent := map[string]bool{}
	for _, u := range utxos {
		unspent[u.OutPoint.String()] = true
	}
	for _, in := range r.Inputs {
		if !unspent[in] || taken[in] {
			continue
		}
		op, err := wire.NewOutPointFromString(in)
		if err != nil {
			continue
		}
		key := InvalidationKey(txid, *op, attempt)
		p, created, err := db.CreateProposal(ctx, store.Proposal{ID: ProposalID(via, key), Automation: via, TriggerKey: key, State: string(StateProposed), CreatedAt: now},
			fmt.Sprintf("invalidate %s (outflow %d sat) by spending its input %s back to the wallet", txid, r.OutflowSat, in))
		return p, created, err
	}
	return store.Proposal{}, false, fmt.Errorf("%w: %s spends %s", ErrNoFreeInput, txid, strings.Join(r.Inputs, ", "))
}

// buildInvalidation builds proposal p, an invalidation of ledger entry txid: the wallet coin op
// spent whole to the wallet's next unused change address at the automation's feerate.
func (e *Engine) buildInvalidation(ctx context.Context, p store.Proposal, a policy.Automation, txid string, op wire.OutPoint) (bool, error) {
	if _, err := e.needed(a); err != nil {
		return true, e.abandon(ctx, p, err.Error())
	}
	r, ok, err := e.db.LedgerEntry(ctx, txid)
	if err != nil {
		return false, err
	}
	if !ok || r.State != store.LedgerOutstanding {
		return true, e.abandon(ctx, p, fmt.Sprintf("%s is no longer outstanding (%s): nothing to invalidate", txid, r.State))
	}
	var coin *psbt.UTXO
	for _, u := range e.chain.SpendableUTXOs() {
		if u.OutPoint == op {
			c := toCoin(u)
			coin = &c
		}
	}
	if coin == nil {
		return true, e.abandon(ctx, p, fmt.Sprintf("%s: the input %s is not an unspent wallet coin (spent, in the mempool, or immature)", ReasonInsufficientFunds, op))
	}
	taken, err := e.takenInputs(ctx)
	if err != nil {
		return false, err
	}
	if by, ok := taken[op]; ok && by != p.ID {
		return true, e.abandon(ctx, p, fmt.Sprintf("%s: the input %s is already spent by proposal %s", ReasonInsufficientFunds, op, by))
	}
	used, err := e.usedOutputs(ctx)
	if err != nil {
		return false, err
	}
	idx, err := e.changeIndex(ctx, used)
	if err != nil {
		return false, err
	}
	payTo, err := e.desc.PkScript(psbt.ChangeBranch, idx)
	if err != nil {
		return false, err
	}
	used[string(payTo)] = true
	target := a.Fee.TargetBlocks
	if target <= 0 {
		target = 6
	}
	rate := AutomationFeeRate(a, e.estimateFee(ctx, target), e.limitFeeRate())
	pk, _, err := e.buildPSBT(ctx, []psbt.UTXO{*coin}, payTo, 0, rate, used)
	if err != nil {
		if errors.Is(err, psbt.ErrInsufficientFunds) || errors.Is(err, psbt.ErrDustOutput) {
			return true, e.abandon(ctx, p, ReasonInsufficientFunds+": "+strings.TrimPrefix(err.Error(), "psbtflow: "))
		}
		return false, err
	}
	return true, e.storeBuilt(ctx, p, pk, rate, fmt.Sprintf("invalidates %s: spends %s back to change address %d at %.1f sat/vB", txid, op, idx, float64(rate)))
}
