package psbtflow

// Spend exposure: what the policy's velocity windows count. A signature is a commitment the
// co-signer cannot take back — whoever holds the signed transaction can broadcast it later — so
// a signed transaction is outstanding from signing until a fact the co-signer checked itself
// settles it:
//
//   - it confirms (its merkle proof checks against the watcher's own header chain): from then on
//     it counts in each window at its block's time (never before its signing time);
//   - one of its inputs is spent by a different transaction that confirms (proven the same way):
//     it can never confirm and stops counting.
//
// While outstanding it counts against every window, whatever its age. Time alone never settles
// anything; a mempool spend never settles anything (the Electrum server can invent one); a
// settled entry becomes outstanding again only when the watcher's header chain no longer has the
// block of its fact (a reorg the co-signer saw), never because the server stops listing a
// transaction. Outstanding transactions that share an input (an RBF replacement and what it
// replaces) cannot all confirm: they count as the heaviest set of them that could confirm
// together (for a fee bump, the larger outflow).

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// SpendFacts are the proven chain facts the exposure moves on (satisfied by
// *chainwatch.Watcher): ProvenSpenders gives, for outpoints spent in a block of the watcher's
// header chain, the spending transaction (merkle proof checked); InBestChain whether that chain
// still has a block (known false before the headers are loaded); Tip its best header.
type SpendFacts interface {
	ProvenSpenders(ops []wire.OutPoint) map[wire.OutPoint]chainwatch.ProvenSpend
	InBestChain(height int32, hash chainhash.Hash) (in, known bool)
	Tip() chainwatch.Tip
}

// reorgHorizon is how far below the tip settled entries are checked against the header chain:
// far deeper than any reorg the watcher follows (chainwatch.DefaultReorgSafetyLimit).
const reorgHorizon = 1008

// maxExactGroup bounds the conflict groups whose heaviest confirmable set is searched exactly;
// a larger group (only a client's own odd PSBTs make one) counts the sum of all its members,
// which is never less.
const maxExactGroup = 16

// OutstandingExposure is what outstanding transactions can still move out of the wallet: for
// each group of transactions linked by shared inputs, the largest total outflow of a set of them
// that do not share an input (only such a set can confirm together), summed over groups. For a
// transaction and its fee bumps that is the largest outflow; for unrelated ones their sum.
func OutstandingExposure(rs []store.Reservation) btcutil.Amount {
	byInput := map[string][]int{}
	for i, r := range rs {
		for _, op := range r.Inputs {
			byInput[op] = append(byInput[op], i)
		}
	}
	adj := make([]map[int]bool, len(rs))
	for _, idx := range byInput {
		for _, i := range idx {
			for _, j := range idx {
				if i != j {
					if adj[i] == nil {
						adj[i] = map[int]bool{}
					}
					adj[i][j] = true
				}
			}
		}
	}
	seen := make([]bool, len(rs))
	var total btcutil.Amount
	for i := range rs {
		if seen[i] {
			continue
		}
		group := []int{i}
		seen[i] = true
		for g := 0; g < len(group); g++ {
			for j := range adj[group[g]] {
				if !seen[j] {
					seen[j] = true
					group = append(group, j)
				}
			}
		}
		if len(group) > maxExactGroup {
			for _, j := range group {
				total += btcutil.Amount(rs[j].OutflowSat)
			}
			continue
		}
		total += heaviest(rs, adj, group)
	}
	return total
}

// heaviest is the maximum-weight set of pairwise non-adjacent members of group (exhaustive
// branching: take the first member and drop its neighbours, or leave it out).
func heaviest(rs []store.Reservation, adj []map[int]bool, group []int) btcutil.Amount {
	if len(group) == 0 {
		return 0
	}
	v, rest := group[0], group[1:]
	without := heaviest(rs, adj, rest)
	var keep []int
	for _, u := range rest {
		if !adj[v][u] {
			keep = append(keep, u)
		}
	}
	return max(without, btcutil.Amount(max(0, rs[v].OutflowSat))+heaviest(rs, adj, keep))
}

// withLedger fills in.Spent for every velocity window in force: the exposure as it would be
// with this transaction signed (outstanding), less its own outflow (the policy adds that). So an
// RBF replacement is counted once with what it replaces (the larger of the two when they spend
// the same inputs), and a transaction spending the inputs of two outstanding ones counts against
// their sum, since those could both confirm if it does not.
func withLedger(ctx context.Context, db Ledger, pol *policy.Policy, in *policy.Input, a *psbt.Analysis) error {
	windows := pol.Windows(in.Now)
	in.Spent = map[time.Duration]btcutil.Amount{}
	if len(windows) == 0 {
		return nil
	}
	longest := windows[0]
	for _, w := range windows {
		longest = max(longest, w)
	}
	entries, err := db.Exposure(ctx, in.Now.Add(-longest))
	if err != nil {
		return err
	}
	out := []store.Reservation{{TxID: a.UnsignedTxID, OutflowSat: int64(a.Outflow), Inputs: outpoints(a), State: store.LedgerOutstanding}}
	var confirmed []store.Reservation
	for _, r := range entries {
		switch {
		case r.TxID == a.UnsignedTxID:
			// Signed before (another request id): counted once, as this one.
		case r.State == store.LedgerOutstanding:
			out = append(out, r)
		case r.State == store.LedgerConfirmed:
			confirmed = append(confirmed, r)
		}
	}
	outstanding := OutstandingExposure(out) - a.Outflow
	for _, w := range windows {
		since := in.Now.Add(-w)
		spent := outstanding
		for _, r := range confirmed {
			if !r.ConfAt.Before(since) {
				spent += btcutil.Amount(r.OutflowSat)
			}
		}
		in.Spent[w] = spent
	}
	return nil
}

// ExposureAt is the exposure per window at now, as a decision reads it before adding a new
// transaction: outstanding entries (whatever their age) plus the confirmed ones counting in the
// window. windows with no entries map to 0.
func ExposureAt(ctx context.Context, db Ledger, windows []time.Duration, now time.Time) (map[time.Duration]btcutil.Amount, error) {
	out := map[time.Duration]btcutil.Amount{}
	if len(windows) == 0 {
		return out, nil
	}
	longest := windows[0]
	for _, w := range windows {
		longest = max(longest, w)
	}
	entries, err := db.Exposure(ctx, now.Add(-longest))
	if err != nil {
		return nil, err
	}
	var outs []store.Reservation
	for _, r := range entries {
		if r.State == store.LedgerOutstanding {
			outs = append(outs, r)
		}
	}
	base := OutstandingExposure(outs)
	for _, w := range windows {
		n := base
		for _, r := range entries {
			if r.State == store.LedgerConfirmed && !r.ConfAt.Before(now.Add(-w)) {
				n += btcutil.Amount(r.OutflowSat)
			}
		}
		out[w] = n
	}
	return out, nil
}

// ReconcileExposure moves the spend ledger on proven facts only (see the file comment): a
// confirmed or invalidated entry whose block left the watcher's header chain is outstanding
// again; an outstanding entry whose own transaction is proven in a block is confirmed at that
// block's time (never before its signing time); one with an input spent by a different proven
// transaction is invalidated. Without SpendFacts it does nothing. Safe to call at any time and
// as often as wanted: it reads the facts afresh and changes only what they prove.
func (s *Service) ReconcileExposure(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.facts == nil {
		return nil
	}
	tip := s.facts.Tip()
	if tip.Height <= 0 {
		return nil
	}
	settled, err := s.db.SettledAbove(ctx, max(0, tip.Height-reorgHorizon))
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
		if err := s.db.ReopenEntry(ctx, r.TxID); err != nil {
			return err
		}
		s.log.Warn("spend exposure: the block of a settled transaction left the header chain; outstanding again",
			"txid", r.TxID, "was", r.State, "height", height, "outflow_sat", r.OutflowSat)
	}
	outs, err := s.db.Reservations(ctx, store.LedgerOutstanding)
	if err != nil {
		return err
	}
	var ops []wire.OutPoint
	for _, r := range outs {
		for _, in := range r.Inputs {
			op, err := wire.NewOutPointFromString(in)
			if err != nil {
				return fmt.Errorf("spend ledger %s: input %q: %w", r.TxID, in, err)
			}
			ops = append(ops, *op)
		}
	}
	spenders := s.facts.ProvenSpenders(ops)
	if len(spenders) == 0 {
		return nil
	}
	for _, r := range outs {
		var own, other *chainwatch.ProvenSpend
		for _, in := range r.Inputs {
			op, _ := wire.NewOutPointFromString(in)
			sp, ok := spenders[*op]
			if !ok {
				continue
			}
			if sp.UnsignedTxID.String() == r.TxID || sp.TxID.String() == r.TxID {
				own = &sp
			} else if other == nil {
				other = &sp
			}
		}
		switch {
		case own != nil:
			at := own.BlockTime
			if at.Before(r.At) {
				at = r.At
			}
			err = s.db.ConfirmEntry(ctx, r.TxID, own.Height, own.BlockHash.String(), at)
			if err == nil {
				s.log.Info("spend exposure: confirmed", "txid", r.TxID, "height", own.Height, "counts_at", at.UTC().Format(time.RFC3339), "outflow_sat", r.OutflowSat)
			}
		case other != nil:
			err = s.db.InvalidateEntry(ctx, r.TxID, other.TxID.String(), other.Height, other.BlockHash.String())
			if err == nil {
				s.log.Info("spend exposure: invalidated (an input was spent by a confirmed transaction)", "txid", r.TxID, "by", other.TxID.String(),
					"height", other.Height, "outflow_sat", r.OutflowSat)
			}
		}
		if err != nil && !errors.Is(err, store.ErrLedgerState) {
			return err
		}
	}
	return nil
}
