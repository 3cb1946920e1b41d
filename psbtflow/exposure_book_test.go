package psbtflow

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/store"
)

// TestBookTotalMatchesRecount: the book keeps the outstanding exposure by recomputing only the
// conflict groups a change touches; after every add and remove, in any order, with groups that
// merge and split, its total equals OutstandingExposure recounted over all its entries, and the
// exposure with a new transaction equals the recount with it.
func TestBookTotalMatchesRecount(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	b := &exposureBook{}
	b.reset()
	live := map[string]*bookNode{}
	recount := func(extra *bookNode) btcutil.Amount {
		var rs []store.Reservation
		for k, n := range live {
			rs = append(rs, store.Reservation{TxID: k, OutflowSat: int64(n.outflow), Inputs: n.inputs})
		}
		if extra != nil {
			rs = append(rs, store.Reservation{TxID: "new", OutflowSat: int64(extra.outflow), Inputs: extra.inputs})
		}
		return OutstandingExposure(rs)
	}
	node := func() *bookNode {
		var ins []string
		for range 1 + rng.IntN(3) {
			ins = append(ins, fmt.Sprint("c", rng.IntN(60), ":0"))
		}
		return &bookNode{outflow: btcutil.Amount(1 + rng.IntN(1000)), inputs: ins}
	}
	for step := range 600 {
		if len(live) > 30 && rng.IntN(2) == 0 {
			for k := range live {
				b.remove(k)
				delete(live, k)
				break
			}
		} else {
			k := fmt.Sprint("tx", step)
			n := node()
			n.txid = k
			b.add(k, n)
			live[k] = n
		}
		if got, want := b.total, recount(nil); got != want {
			t.Fatalf("step %d: book total %d, recount %d", step, got, want)
		}
		n := node()
		if got, want := b.with(n), recount(n); got != want {
			t.Fatalf("step %d: exposure with a new transaction %d, recount %d", step, got, want)
		}
	}
}

// TestConfirmedSetSums: the confirmed entries' sum over a window is a binary search over prefix
// sums kept through inserts in any order, removals and trims.
func TestConfirmedSetSums(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	c := confirmedSet{byTxID: map[string]int64{}, prefix: []int64{0}}
	live := map[string][2]int64{}
	for step := range 2000 {
		switch r := rng.IntN(10); {
		case r < 6:
			id := fmt.Sprint("tx", step)
			at, sat := int64(1000+rng.IntN(1000)), int64(1+rng.IntN(100))
			c.add(id, at, sat)
			if at >= c.horizon {
				live[id] = [2]int64{at, sat}
			}
		case r < 9:
			for id := range live {
				c.remove(id)
				delete(live, id)
				break
			}
		default:
			h := c.horizon + int64(rng.IntN(20))
			c.trim(h)
			for id, v := range live {
				if v[0] < h {
					delete(live, id)
				}
			}
		}
		since := c.horizon + int64(rng.IntN(1200))
		var want int64
		for _, v := range live {
			if v[0] >= since {
				want += v[1]
			}
		}
		if got := c.since(since); int64(got) != want {
			t.Fatalf("step %d: sum since %d = %d, want %d", step, since, got, want)
		}
	}
}

// bookMatchesStore fails the test unless the Service's book counts, per window, what a book
// rebuilt from the store counts (no decision is under way).
func bookMatchesStore(t *testing.T, svc *Service, db *store.DB, now time.Time, windows ...time.Duration) {
	t.Helper()
	fresh, err := bookFromStore(context.Background(), db, now.Add(-longestWindow(windows)))
	if err != nil {
		t.Fatal(err)
	}
	svc.book.mu.Lock()
	got := svc.book.view(nil, windows, now).spentFor(windows, 0)
	svc.book.mu.Unlock()
	want := fresh.view(nil, windows, now).spentFor(windows, 0)
	for _, w := range windows {
		if got[w] != want[w] {
			t.Fatalf("window %s: the book counts %d, the store %d", w, got[w], want[w])
		}
	}
}
