package psbtflow

// The exposure book: the spend ledger's counted part held in memory, so that a decision reads
// the exposure in time that does not grow with the ledger (the outstanding entries in the
// conflict group of the new transaction, a binary search over the confirmed ones) and so that
// reading the exposure and reserving a new entry is one short critical section that touches no
// disk.
//
// Why the book never counts less than the signatures given (the argument the exposure's
// promise rests on; the store stays the record, the book is rebuilt from it at every start):
//
//   - This process is the only writer of the spend ledger (the daemon; the commands only read
//     it), and every write goes through Service: a decision's reservation (FinishDecision) and
//     the reconcile's confirm, invalidate and reopen. Each such write and the book's change that
//     mirrors it happen under Service.ledgerMu, one at a time, so the book's copy of an entry is
//     never overwritten by an older reading of it.
//   - A change that raises the exposure reaches the book before the database: a decision
//     reserves its transaction in the book (a pending entry, counted as outstanding) inside the
//     same critical section in which it read the exposure, before it signs, and the signature
//     leaves only after the entry is committed; a reopen (a reorg took a fact's block away) puts
//     the entry back among the outstanding ones before the database moves it.
//   - A change that lowers the exposure reaches the book only after the database committed it
//     (a confirmation, an invalidation, a pending entry whose request was not recorded signed).
//
// So between two steps a reader can only see more exposure than the database, never less, and
// two decisions never both fit under a limit only one fits under: the second reads the first's
// pending entry.

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/store"
)

// exposureBook is the counted part of the spend ledger in memory: every outstanding entry (with
// its inputs, grouped by shared inputs), the decisions' pending reservations, and the confirmed
// entries counting at or after horizon. Guarded by mu; see the file comment for how it stays in
// step with the store.
type exposureBook struct {
	mu     sync.Mutex
	loaded bool
	// nodes are the outstanding entries (key: txid) and the pending reservations (key:
	// pendingKey), byInput the keys of those spending each outpoint ("txid:vout"), total the
	// exposure of them all (OutstandingExposure).
	nodes   map[string]*bookNode
	byInput map[string]map[string]struct{}
	total   btcutil.Amount
	seq     uint64 // numbers pending keys
	conf    confirmedSet
	// watch are outpoints spent by outstanding entries that the watcher has seen spent (in the
	// mempool or a block) but whose spender is not proven yet: the reconcile checks only these
	// when a block arrives (exposure_reconcile.go).
	watch map[string]struct{}
	// stale is set when the book may differ from the store (a write whose outcome is unknown):
	// the next sweep rebuilds it.
	stale bool
}

type bookNode struct {
	txid    string
	outflow btcutil.Amount
	inputs  []string
	at      time.Time // signing time
	// orphan marks a pending reservation whose request's outcome could not be read back: it
	// counts until the book is rebuilt from the store, which then has the truth.
	orphan bool
}

// pendingKey names a decision's reservation in the book until its entry is committed; it can
// never equal a txid (hex).
func pendingKey(n uint64) string { return fmt.Sprintf("pending-%d", n) }

// reset empties the book (mu held).
func (b *exposureBook) reset() {
	b.nodes, b.byInput, b.total = map[string]*bookNode{}, map[string]map[string]struct{}{}, 0
	b.conf = confirmedSet{byTxID: map[string]int64{}, prefix: []int64{0}}
	b.watch = map[string]struct{}{}
	b.stale = false
}

// fill loads rows (outstanding entries and confirmed ones counting at or after horizon, as
// store.DB.Exposure returns them) into an empty book (mu held).
func (b *exposureBook) fill(rows []store.Reservation, horizon time.Time) {
	b.conf.horizon = horizon.Unix()
	var outs []store.Reservation
	for _, r := range rows {
		switch r.State {
		case store.LedgerOutstanding:
			n := &bookNode{txid: r.TxID, outflow: btcutil.Amount(max(0, r.OutflowSat)), inputs: r.Inputs, at: r.At}
			b.nodes[r.TxID] = n
			for _, op := range r.Inputs {
				b.link(op, r.TxID)
			}
			outs = append(outs, r)
		case store.LedgerConfirmed:
			b.conf.add(r.TxID, r.ConfAt.Unix(), r.OutflowSat)
		}
	}
	b.total = OutstandingExposure(outs)
	b.loaded = true
}

func (b *exposureBook) link(op, key string) {
	s := b.byInput[op]
	if s == nil {
		s = map[string]struct{}{}
		b.byInput[op] = s
	}
	s[key] = struct{}{}
}

// component returns the keys of the nodes linked to inputs by shared inputs, transitively
// (the conflict groups a transaction spending inputs would join), leaving out skip.
func (b *exposureBook) component(inputs []string, skip string) []string {
	seen := map[string]bool{skip: true}
	var out []string
	queue := append([]string(nil), inputs...)
	doneOp := map[string]bool{}
	for len(queue) > 0 {
		op := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if doneOp[op] {
			continue
		}
		doneOp[op] = true
		for k := range b.byInput[op] {
			if seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, k)
			queue = append(queue, b.nodes[k].inputs...)
		}
	}
	return out
}

// exposureOf is OutstandingExposure of the nodes keys, plus extra when given.
func (b *exposureBook) exposureOf(keys []string, extra *bookNode) btcutil.Amount {
	rs := make([]store.Reservation, 0, len(keys)+1)
	for _, k := range keys {
		n := b.nodes[k]
		rs = append(rs, store.Reservation{TxID: k, OutflowSat: int64(n.outflow), Inputs: n.inputs})
	}
	if extra != nil {
		rs = append(rs, store.Reservation{TxID: "\x00new", OutflowSat: int64(extra.outflow), Inputs: extra.inputs})
	}
	return OutstandingExposure(rs)
}

// add counts n as outstanding under key (mu held). Only the conflict groups n joins are
// recomputed.
func (b *exposureBook) add(key string, n *bookNode) {
	if _, ok := b.nodes[key]; ok {
		b.remove(key)
	}
	comp := b.component(n.inputs, key)
	before := b.exposureOf(comp, nil)
	after := b.exposureOf(comp, n)
	b.nodes[key] = n
	for _, op := range n.inputs {
		b.link(op, key)
	}
	b.total += after - before
}

// remove stops counting node key (mu held); its former group may split, and only it is
// recomputed.
func (b *exposureBook) remove(key string) {
	n, ok := b.nodes[key]
	if !ok {
		return
	}
	comp := b.component(n.inputs, "")
	before := b.exposureOf(comp, nil)
	delete(b.nodes, key)
	for _, op := range n.inputs {
		if s := b.byInput[op]; s != nil {
			delete(s, key)
			if len(s) == 0 {
				delete(b.byInput, op)
				delete(b.watch, op)
			}
		}
	}
	rest := comp[:0]
	for _, k := range comp {
		if k != key {
			rest = append(rest, k)
		}
	}
	b.total += b.exposureOf(rest, nil) - before
}

// spentBy reports whether an outstanding entry or a pending reservation spends op (mu held).
func (b *exposureBook) spentBy(op string) bool { return len(b.byInput[op]) > 0 }

// with is the outstanding exposure if n were signed too (mu held): the groups n joins are
// recomputed with it, the others kept.
func (b *exposureBook) with(n *bookNode) btcutil.Amount {
	comp := b.component(n.inputs, "")
	return b.total - b.exposureOf(comp, nil) + b.exposureOf(comp, n)
}

// apply makes the book's copy of an entry what the store says it is (mu held): outstanding
// (counted with its inputs), confirmed (counted at its confirmation time), invalidated or
// absent (not counted).
func (b *exposureBook) apply(r store.Reservation, found bool) {
	b.remove(r.TxID)
	b.conf.remove(r.TxID)
	if !found {
		return
	}
	switch r.State {
	case store.LedgerOutstanding:
		b.add(r.TxID, &bookNode{txid: r.TxID, outflow: btcutil.Amount(max(0, r.OutflowSat)), inputs: r.Inputs, at: r.At})
	case store.LedgerConfirmed:
		b.conf.add(r.TxID, r.ConfAt.Unix(), r.OutflowSat)
	}
}

// outstandingInputs returns, per outstanding entry (not pending reservations), its txid and
// inputs (mu held): what a sweep checks against the proven facts.
func (b *exposureBook) outstandingInputs() map[string][]string {
	out := make(map[string][]string, len(b.nodes))
	for k, n := range b.nodes {
		if k == n.txid {
			out[k] = n.inputs
		}
	}
	return out
}

// confirmedSet is the confirmed entries that count at or after horizon (Unix seconds), sorted
// by the time they count at, with prefix sums of their outflows, so that the sum over a window
// is a binary search. Confirmations arrive with recent times, so inserts and removals move
// only the tail.
type confirmedSet struct {
	horizon int64
	at      []int64
	txid    []string
	sat     []int64
	prefix  []int64 // prefix[i] = sum of sat[:i]; len(at)+1 entries
	byTxID  map[string]int64
}

// pos is where (at, txid) is or would be.
func (c *confirmedSet) pos(at int64, txid string) int {
	return sort.Search(len(c.at), func(i int) bool {
		return c.at[i] > at || (c.at[i] == at && c.txid[i] >= txid)
	})
}

func (c *confirmedSet) add(txid string, at, sat int64) {
	if at < c.horizon {
		return // counts in no window the book answers for
	}
	c.remove(txid)
	i := c.pos(at, txid)
	c.at = append(c.at, 0)
	copy(c.at[i+1:], c.at[i:])
	c.at[i] = at
	c.txid = append(c.txid, "")
	copy(c.txid[i+1:], c.txid[i:])
	c.txid[i] = txid
	c.sat = append(c.sat, 0)
	copy(c.sat[i+1:], c.sat[i:])
	c.sat[i] = max(0, sat)
	c.byTxID[txid] = at
	c.resum(i)
}

func (c *confirmedSet) remove(txid string) {
	at, ok := c.byTxID[txid]
	if !ok {
		return
	}
	delete(c.byTxID, txid)
	i := c.pos(at, txid)
	if i >= len(c.at) || c.txid[i] != txid {
		return
	}
	c.at = append(c.at[:i], c.at[i+1:]...)
	c.txid = append(c.txid[:i], c.txid[i+1:]...)
	c.sat = append(c.sat[:i], c.sat[i+1:]...)
	c.resum(i)
}

// resum recomputes the prefix sums from index i on.
func (c *confirmedSet) resum(i int) {
	if len(c.prefix) != len(c.at)+1 {
		c.prefix = append(c.prefix[:0], make([]int64, len(c.at)+1)...)
		i = 0
	}
	for j := i; j < len(c.at); j++ {
		c.prefix[j+1] = c.prefix[j] + c.sat[j]
	}
}

// since is the outflow of the entries counting at or after t (t must be ≥ horizon).
func (c *confirmedSet) since(t int64) btcutil.Amount {
	if len(c.at) == 0 {
		return 0
	}
	i := sort.Search(len(c.at), func(i int) bool { return c.at[i] >= t })
	return btcutil.Amount(c.prefix[len(c.at)] - c.prefix[i])
}

// trim forgets the entries counting before t and raises the horizon to t.
func (c *confirmedSet) trim(t int64) {
	if t <= c.horizon {
		return
	}
	i := sort.Search(len(c.at), func(i int) bool { return c.at[i] >= t })
	for _, id := range c.txid[:i] {
		delete(c.byTxID, id)
	}
	c.at = append([]int64(nil), c.at[i:]...)
	c.txid = append([]string(nil), c.txid[i:]...)
	c.sat = append([]int64(nil), c.sat[i:]...)
	c.prefix = nil
	c.resum(0)
	c.horizon = t
}

// ledgerView is the exposure a decision reads: the outstanding exposure with its own transaction
// counted (outstanding) and the confirmed outflow per window.
type ledgerView struct {
	outstanding btcutil.Amount
	confirmed   map[time.Duration]btcutil.Amount
}

// spentFor fills in.Spent the way the policy reads it: per window, the exposure with the new
// transaction counted, less its own outflow (the policy adds that).
func (v ledgerView) spentFor(windows []time.Duration, own btcutil.Amount) map[time.Duration]btcutil.Amount {
	out := make(map[time.Duration]btcutil.Amount, len(windows))
	for _, w := range windows {
		out[w] = v.outstanding - own + v.confirmed[w]
	}
	return out
}

// longestWindow is the longest of windows (0 when none).
func longestWindow(windows []time.Duration) time.Duration {
	var l time.Duration
	for _, w := range windows {
		l = max(l, w)
	}
	return l
}

// bookFromStore builds a book from the store at once (the offline commands: Explain,
// ExposureAt), counting confirmed entries at or after since.
func bookFromStore(ctx context.Context, db Ledger, since time.Time) (*exposureBook, error) {
	rows, err := db.Exposure(ctx, since)
	if err != nil {
		return nil, err
	}
	b := &exposureBook{}
	b.reset()
	b.fill(rows, since)
	return b, nil
}

// view is the exposure with n counted, at now, for windows (mu held; the horizon must reach
// now minus the longest window).
func (b *exposureBook) view(n *bookNode, windows []time.Duration, now time.Time) ledgerView {
	v := ledgerView{confirmed: make(map[time.Duration]btcutil.Amount, len(windows))}
	if n != nil {
		v.outstanding = b.with(n)
	} else {
		v.outstanding = b.total
	}
	for _, w := range windows {
		v.confirmed[w] = b.conf.since(now.Add(-w).Unix())
	}
	return v
}
