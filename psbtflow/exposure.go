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

// withLedger fills in.Spent for every velocity window in force from the store (the offline
// commands: Explain): the exposure as it would be with this transaction signed (outstanding),
// less its own outflow (the policy adds that). So an RBF replacement is counted once with what
// it replaces (the larger of the two when they spend the same inputs), and a transaction
// spending the inputs of two outstanding ones counts against their sum, since those could both
// confirm if it does not. The Service reads the same from its exposure book (decideExposure).
func withLedger(ctx context.Context, db Ledger, pol *policy.Policy, in *policy.Input, a *psbt.Analysis) error {
	windows := pol.Windows(in.Now)
	in.Spent = map[time.Duration]btcutil.Amount{}
	if len(windows) == 0 {
		return nil
	}
	b, err := bookFromStore(ctx, db, in.Now.Add(-longestWindow(windows)))
	if err != nil {
		return err
	}
	n := &bookNode{txid: a.UnsignedTxID, outflow: a.Outflow, inputs: outpoints(a), at: in.Now}
	in.Spent = b.view(n, windows, in.Now).spentFor(windows, a.Outflow)
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
	b, err := bookFromStore(ctx, db, now.Add(-longestWindow(windows)))
	if err != nil {
		return nil, err
	}
	return b.view(nil, windows, now).spentFor(windows, 0), nil
}
