package psbtflow

// Keeping the spend exposure in step with the chain, and the decision's read-and-reserve.
//
// The reconcile is driven by the watcher's chain events (HandleChainEvent, called by the
// daemon's chain-event subscriber list) and touches only the entries an event can affect:
//
//   - Spent (a wallet coin left the UTXO set, in the mempool or a block): the entries spending
//     it are watched, and settled at once if the spend is already proven;
//   - NewTip and FundingConfirmed (a block, a proof): the watched entries are checked against
//     the proven spends;
//   - NewTip with Reorged, FundingReorged: the settled entries whose fact is in a block above
//     the fork (an indexed query) go back to outstanding when their block left the chain.
//
// A full sweep (ReconcileExposure) runs at the first Tick after a start (the watch set lives in
// memory, and events handled before a restart are not delivered again), after an event whose
// handling failed (the daemon does not acknowledge it, but delivers it again only at the next
// start: a reopen lost that way would under-count until then), and every sweepEvery (default
// 10 minutes) as a safety net for proofs that arrive without an event of their own. None of
// this holds a lock a decision waits on: a decision reads the in-memory book (exposure_book.go),
// and each change the reconcile makes takes the ledger's write lock only for its own write.

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// defaultSweepEvery is how often the full exposure sweep runs when no event asked for one.
const defaultSweepEvery = 10 * time.Minute

// WithSweep sets how often Run sweeps the whole spend exposure against the proven facts besides
// the chain events (default 10 minutes; see exposure_reconcile.go).
func WithSweep(d time.Duration) Option { return func(s *Service) { s.sweepEvery = d } }

// bookSince is the earliest confirmation time the windows in force at now count.
func (s *Service) bookSince(now time.Time) time.Time {
	return now.Add(-longestWindow(s.policy().Windows(now)))
}

// ready reports whether the book can answer for windows reaching back to since (mu held).
func (b *exposureBook) ready(since time.Time) bool {
	return b.loaded && !b.stale && since.Unix() >= b.conf.horizon
}

// ensureBook loads the book from the store if it is not loaded, stale, or does not reach back to
// since (a longer window came into force).
func (s *Service) ensureBook(ctx context.Context, since time.Time) error {
	b := &s.book
	b.mu.Lock()
	ok := b.ready(since)
	b.mu.Unlock()
	if ok {
		return nil
	}
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	b.mu.Lock()
	if b.ready(since) {
		b.mu.Unlock()
		return nil
	}
	if b.loaded && !b.stale && b.conf.horizon < since.Unix() {
		since = time.Unix(b.conf.horizon, 0)
	}
	b.mu.Unlock()
	// ledgerMu is held: no entry changes in the store until the book is rebuilt.
	rows, err := s.db.Exposure(ctx, since)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := map[string]*bookNode{}
	for k, n := range b.nodes {
		if k != n.txid && !n.orphan {
			keep[k] = n // a decision's reservation not committed yet
		}
	}
	b.reset()
	b.fill(rows, since)
	for k, n := range keep {
		b.add(k, n)
	}
	s.sweepDue.Store(true) // the watch set is rebuilt by a sweep
	return nil
}

// decideExposure is the decision's critical section: it reads the exposure with the new
// transaction counted, evaluates the policy, and, when the policy allows signing, reserves the
// transaction in the book (a pending entry) before anything else can read the exposure. It
// returns the decision and the pending entry's key ("" when none), which the caller commits
// (finishSigned) or drops (dropPending). Errors: the store's, when the book had to be loaded.
func (s *Service) decideExposure(ctx context.Context, pol *policy.Policy, in *policy.Input, a *psbt.Analysis) (policy.Decision, string, error) {
	windows := pol.Windows(in.Now)
	since := in.Now.Add(-longestWindow(windows))
	n := &bookNode{txid: a.UnsignedTxID, outflow: a.Outflow, inputs: outpoints(a), at: in.Now}
	b := &s.book
	for {
		if err := s.ensureBook(ctx, since); err != nil {
			return policy.Decision{}, "", err
		}
		b.mu.Lock()
		if !b.ready(since) {
			b.mu.Unlock() // trimmed or made stale meanwhile: load again
			continue
		}
		in.Spent = b.view(n, windows, in.Now).spentFor(windows, a.Outflow)
		d := policy.Evaluate(pol, *in)
		key := ""
		if d.Outcome == policy.Allow {
			b.seq++
			key = pendingKey(b.seq)
			b.add(key, n)
		}
		b.mu.Unlock()
		return d, key, nil
	}
}

// dropPending stops counting a reservation whose signature never left (signing failed); "" is
// nothing.
func (s *Service) dropPending(key string) {
	if key == "" {
		return
	}
	s.book.mu.Lock()
	s.book.remove(key)
	s.book.mu.Unlock()
}

// finishSigned writes a signed decision d (with its reservation) and replaces the pending
// entry key by what the store then holds for its transaction (see exposure_book.go). When the
// store cannot be read back, the pending entry keeps counting until the book is rebuilt.
func (s *Service) finishSigned(ctx context.Context, d store.Decided, key string) error {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	err := s.db.FinishDecision(ctx, d)
	r, found, rerr := s.db.LedgerEntry(ctx, d.Reserve.TxID)
	b := &s.book
	if rerr != nil {
		b.mu.Lock()
		if n := b.nodes[key]; n != nil {
			n.orphan = true
		}
		b.stale = true
		b.mu.Unlock()
		if err == nil {
			s.log.Error("spend exposure: could not read back a reservation; it keeps counting until the ledger is reloaded", "error", rerr)
		}
		return err
	}
	spent := s.notUnspent(r.Inputs)
	b.mu.Lock()
	b.remove(key)
	b.apply(r, found)
	if found && r.State == store.LedgerOutstanding {
		for _, op := range spent {
			b.watch[op] = struct{}{}
		}
	}
	b.mu.Unlock()
	return err
}

// notUnspent returns the outpoints of ops the wallet view does not list as unspent coins (spent,
// or unknown): those whose spends the reconcile watches.
func (s *Service) notUnspent(ops []string) []string {
	var out []string
	for _, o := range ops {
		op, err := wire.NewOutPointFromString(o)
		if err != nil {
			out = append(out, o)
			continue
		}
		if _, ok := s.chain.Coin(*op); !ok {
			out = append(out, o)
		}
	}
	return out
}

// HandleChainEvent moves the spend exposure on what a chain event can change, and notes a
// coin spent by a known transaction (NoteSpentCoin) for RBF replacements. The event itself is
// never taken as a fact: it says where to look, and only the watcher's proven facts
// (SpendFacts) move an entry. Idempotent. Errors: the store's; the next Tick then sweeps the
// whole exposure (the daemon delivers an unacknowledged event again only at the next start).
func (s *Service) HandleChainEvent(ctx context.Context, ev chainwatch.Event) error {
	if e, ok := ev.(chainwatch.Spent); ok && e.SpentBy != nil {
		s.NoteSpentCoin(e.OutPoint, psbt.Coin{Value: e.UTXO.Value, PkScript: e.UTXO.PkScript, Branch: e.UTXO.Branch,
			Index: e.UTXO.Index, Height: e.UTXO.Height}, *e.SpentBy)
	}
	if s.facts == nil {
		return nil
	}
	switch ev.(type) {
	case chainwatch.Spent, chainwatch.FundingConfirmed, chainwatch.FundingReorged, chainwatch.NewTip:
	default:
		return nil
	}
	s.reconcileMu.Lock()
	defer s.reconcileMu.Unlock()
	err := s.ensureBook(ctx, s.bookSince(s.now()))
	if err == nil {
		switch e := ev.(type) {
		case chainwatch.Spent:
			err = s.watchSpent(ctx, e.OutPoint.String())
		case chainwatch.FundingConfirmed:
			err = s.settleWatched(ctx)
		case chainwatch.FundingReorged:
			err = errors.Join(s.reopenAbove(ctx, e.UTXO.Height), s.settleWatched(ctx))
		case chainwatch.NewTip:
			if e.Reorged {
				err = s.reopenAbove(ctx, e.Fork+1)
			}
			err = errors.Join(err, s.settleWatched(ctx))
		}
	}
	if err != nil {
		s.sweepDue.Store(true)
	}
	return err
}

// watchSpent watches op if an outstanding entry spends it, and settles those entries if the
// spend is already proven.
func (s *Service) watchSpent(ctx context.Context, op string) error {
	b := &s.book
	b.mu.Lock()
	entries := map[string][]string{}
	for k := range b.byInput[op] {
		if n := b.nodes[k]; n.txid == k {
			entries[k] = n.inputs
		}
	}
	if b.spentBy(op) {
		b.watch[op] = struct{}{}
	}
	b.mu.Unlock()
	return s.settle(ctx, entries)
}

// settleWatched checks the entries spending watched outpoints against the proven spends.
func (s *Service) settleWatched(ctx context.Context) error {
	b := &s.book
	b.mu.Lock()
	entries := map[string][]string{}
	for op := range b.watch {
		for k := range b.byInput[op] {
			if n := b.nodes[k]; n.txid == k {
				entries[k] = n.inputs
			}
		}
	}
	b.mu.Unlock()
	return s.settle(ctx, entries)
}

// settle confirms each of entries (txid → inputs) whose own transaction is proven in a block,
// and invalidates each with an input spent by a different proven transaction.
func (s *Service) settle(ctx context.Context, entries map[string][]string) error {
	if len(entries) == 0 {
		return nil
	}
	var ops []wire.OutPoint
	txids := make([]string, 0, len(entries))
	for txid, inputs := range entries {
		txids = append(txids, txid)
		for _, in := range inputs {
			op, err := wire.NewOutPointFromString(in)
			if err != nil {
				return fmt.Errorf("spend ledger %s: input %q: %w", txid, in, err)
			}
			ops = append(ops, *op)
		}
	}
	spenders := s.facts.ProvenSpenders(ops)
	if len(spenders) == 0 {
		return nil
	}
	sort.Strings(txids)
	for _, txid := range txids {
		var own, other *chainwatch.ProvenSpend
		for _, in := range entries[txid] {
			op, _ := wire.NewOutPointFromString(in)
			sp, ok := spenders[*op]
			if !ok {
				continue
			}
			if sp.UnsignedTxID.String() == txid || sp.TxID.String() == txid {
				own = &sp
			} else if other == nil {
				other = &sp
			}
		}
		var err error
		switch {
		case own != nil:
			err = s.lowerEntry(ctx, txid, func(r store.Reservation) error {
				at := own.BlockTime
				if at.Before(r.At) {
					at = r.At
				}
				if err := s.db.ConfirmEntry(ctx, txid, own.Height, own.BlockHash.String(), at); err != nil {
					return err
				}
				s.log.Info("spend exposure: confirmed", "txid", txid, "height", own.Height, "counts_at", at.UTC().Format(time.RFC3339), "outflow_sat", r.OutflowSat)
				return nil
			})
		case other != nil:
			err = s.lowerEntry(ctx, txid, func(r store.Reservation) error {
				if err := s.db.InvalidateEntry(ctx, txid, other.TxID.String(), other.Height, other.BlockHash.String()); err != nil {
					return err
				}
				s.log.Info("spend exposure: invalidated (an input was spent by a confirmed transaction)", "txid", txid, "by", other.TxID.String(),
					"height", other.Height, "outflow_sat", r.OutflowSat)
				return nil
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// lowerEntry applies a change that lowers the exposure (a confirmation, an invalidation) to the
// store first, then to the book, under the ledger's write lock: write gets the stored entry, and
// is not called when the entry is no longer outstanding (then the book is only refreshed).
func (s *Service) lowerEntry(ctx context.Context, txid string, write func(store.Reservation) error) error {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	cur, found, err := s.db.LedgerEntry(ctx, txid)
	if err != nil {
		return err
	}
	if found && cur.State == store.LedgerOutstanding {
		if err := write(cur); err != nil && !errors.Is(err, store.ErrLedgerState) {
			return err // the book still counts the entry: more, never less
		}
		if cur, found, err = s.db.LedgerEntry(ctx, txid); err != nil {
			return err
		}
	}
	s.book.mu.Lock()
	s.book.apply(cur, found)
	s.book.mu.Unlock()
	return nil
}

// reopenAbove makes outstanding again every settled entry whose fact is in a block at or above
// height that the watcher's header chain no longer has.
func (s *Service) reopenAbove(ctx context.Context, height int32) error {
	settled, err := s.db.SettledFactsAbove(ctx, max(0, height))
	if err != nil {
		return err
	}
	for _, r := range settled {
		height, hash := r.ConfHeight, r.ConfHash
		if r.State == store.LedgerInvalidated {
			height, hash = r.InvalidHeight, r.InvalidHash
		}
		h, err := chainhash.NewHashFromStr(hash)
		if err != nil {
			return fmt.Errorf("spend ledger %s: block hash %q: %w", r.TxID, hash, err)
		}
		if in, known := s.facts.InBestChain(height, *h); !known || in {
			continue
		}
		if err := s.reopen(ctx, r); err != nil {
			return err
		}
		s.log.Warn("spend exposure: the block of a settled transaction left the header chain; outstanding again",
			"txid", r.TxID, "was", r.State, "height", height, "outflow_sat", r.OutflowSat)
	}
	return nil
}

// reopen applies a change that raises the exposure (an entry outstanding again) to the book
// first, then to the store, under the ledger's write lock. When the store's write fails the
// book keeps counting the entry (more, never less) and the next sweep writes it again.
func (s *Service) reopen(ctx context.Context, r store.Reservation) error {
	s.ledgerMu.Lock()
	defer s.ledgerMu.Unlock()
	r, found, err := s.db.LedgerEntry(ctx, r.TxID) // with its inputs
	if err != nil || !found || r.State == store.LedgerOutstanding {
		return err
	}
	b := &s.book
	b.mu.Lock()
	b.conf.remove(r.TxID)
	b.add(r.TxID, &bookNode{txid: r.TxID, outflow: btcutil.Amount(max(0, r.OutflowSat)), inputs: r.Inputs, at: r.At})
	for _, op := range r.Inputs {
		b.watch[op] = struct{}{} // its spender must be proven again, in the new chain
	}
	b.mu.Unlock()
	if err := s.db.ReopenEntry(ctx, r.TxID); err != nil && !errors.Is(err, store.ErrLedgerState) {
		return err
	}
	return nil
}

// ReconcileExposure sweeps the whole spend exposure against the proven facts (see the file
// comments): a confirmed or invalidated entry whose block left the watcher's header chain is
// outstanding again; an outstanding entry whose own transaction is proven in a block is
// confirmed at that block's time (never before its signing time); one with an input spent by a
// different proven transaction is invalidated; the entries whose inputs the wallet view no
// longer lists unspent are watched. Without SpendFacts it does nothing. Safe to call at any time
// and as often as wanted; decisions do not wait for it.
func (s *Service) ReconcileExposure(ctx context.Context) error {
	if s.facts == nil {
		return nil
	}
	s.reconcileMu.Lock()
	defer s.reconcileMu.Unlock()
	tip := s.facts.Tip()
	if tip.Height <= 0 {
		return nil
	}
	now := s.now()
	if err := s.ensureBook(ctx, s.bookSince(now)); err != nil {
		return err
	}
	if s.onReconcile != nil {
		s.onReconcile()
	}
	if err := s.reopenAbove(ctx, tip.Height-reorgHorizon); err != nil {
		return err
	}
	b := &s.book
	b.mu.Lock()
	outs := b.outstandingInputs()
	b.mu.Unlock()
	if err := s.settle(ctx, outs); err != nil {
		return err
	}
	b.mu.Lock()
	outs = b.outstandingInputs()
	b.mu.Unlock()
	var ops []string
	for _, inputs := range outs {
		ops = append(ops, inputs...)
	}
	spent := s.notUnspent(ops)
	b.mu.Lock()
	for _, op := range spent {
		if b.spentBy(op) {
			b.watch[op] = struct{}{}
		}
	}
	b.conf.trim(s.bookSince(now).Add(-trimSlack).Unix())
	b.mu.Unlock()
	s.sweepDue.Store(false)
	s.lastSweep.Store(time.Now().UnixNano())
	return nil
}

// trimSlack keeps confirmed entries a day older than the longest window needs, so that the
// clock moving a little does not make the next decision reload the book.
const trimSlack = 24 * time.Hour

// sweepNeeded reports whether Tick should sweep the exposure now.
func (s *Service) sweepNeeded() bool {
	return s.sweepDue.Load() || time.Since(time.Unix(0, s.lastSweep.Load())) >= s.sweepEvery
}
