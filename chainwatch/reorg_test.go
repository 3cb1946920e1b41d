package chainwatch

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// TestTrackerReorg: a funding confirmed at 101 is reorged 1 deep. Cases: the tx is re-mined at
// the same height in a different block (no history change: the server sends no scripthash
// notification, only the proof in the new header finds it), the tx moves to another height, and
// the tx leaves the chain and the mempool.
func TestTrackerReorg(t *testing.T) {
	a := txid('a')
	setup := func(t *testing.T) (*Tracker, *testChain, string) {
		tc := &testChain{t: t, blocks: map[int32][]chainhash.Hash{101: {a}}}
		tr := newTestTracker(t)
		growTo(t, tr, tc, 102)
		s0 := sh(t, tr, 0, 0)
		hist := []HistoryItem{{a, 101}}
		if _, err := tr.Apply(s0, status(t, hist), hist, []UnspentItem{{a, 0, 101, 1000}}); err != nil {
			t.Fatal(err)
		}
		if _, err := tr.ApplyProof(a, tc.proof(101, a)); err != nil {
			t.Fatal(err)
		}
		if u, _ := tr.UTXO(wire.OutPoint{Hash: a}); u.Height != 101 || tr.Confirmations(a) != 2 {
			t.Fatalf("setup: %+v", u)
		}
		return tr, tc, s0
	}
	// fork mines a competing chain from 101 (fork point 100) to 103 with blocks.
	fork := func(t *testing.T, tr *Tracker, blocks map[int32][]chainhash.Hash) (*testChain, Update) {
		tc := &testChain{t: t, blocks: blocks, salt: 'f'}
		prev, _ := tr.Chain().Header(100)
		up, err := tr.ConnectHeaders(101, tc.headers(prev, 101, 103))
		if err != nil {
			t.Fatal(err)
		}
		return tc, up
	}

	t.Run("re-mined at the same height in another block", func(t *testing.T) {
		tr, _, _ := setup(t)
		old, _ := tr.UTXO(wire.OutPoint{Hash: a})
		tc2, up := fork(t, tr, map[int32][]chainhash.Hash{101: {a}})
		if got := eventKinds(up.Events); got != "reorged a:0@101, tip 103 fork 100" {
			t.Fatalf("events %q", got)
		}
		if u, _ := tr.UTXO(wire.OutPoint{Hash: a}); u.Height != 0 {
			t.Fatal("reorged-out UTXO still counts as confirmed")
		}
		need := tr.ProofNeeded()
		if len(need) != 1 || need[0].TxID != a {
			t.Fatalf("ProofNeeded = %+v", need)
		}
		// The old block's proof does not hold in the new chain.
		if _, err := tr.ApplyProof(a, (&testChain{t: t, blocks: map[int32][]chainhash.Hash{101: {a}}}).proof(101, a)); !errors.Is(err, ErrMerkleProof) {
			t.Fatalf("old proof: %v", err)
		}
		up, err := tr.ApplyProof(a, tc2.proof(101, a))
		if err != nil {
			t.Fatal(err)
		}
		if got := eventKinds(up.Events); got != "confirmed a:0@101/3" {
			t.Fatalf("events %q", got)
		}
		u, _ := tr.UTXO(wire.OutPoint{Hash: a})
		if u.BlockHash == old.BlockHash || u.BlockHash != tr.Chain().hashes[101] {
			t.Fatal("block hash not updated to the new block")
		}
	})
	t.Run("moved to another height", func(t *testing.T) {
		tr, _, s0 := setup(t)
		tc2, _ := fork(t, tr, map[int32][]chainhash.Hash{102: {a}})
		hist := []HistoryItem{{a, 102}}
		up, err := tr.Apply(s0, status(t, hist), hist, []UnspentItem{{a, 0, 102, 1000}})
		if err != nil || len(up.Events) != 0 {
			t.Fatalf("%v %q", err, eventKinds(up.Events))
		}
		up, err = tr.ApplyProof(a, tc2.proof(102, a))
		if err != nil || eventKinds(up.Events) != "confirmed a:0@102/2" {
			t.Fatalf("%v %q", err, eventKinds(up.Events))
		}
	})
	t.Run("gone from the chain and the mempool", func(t *testing.T) {
		tr, _, s0 := setup(t)
		fork(t, tr, nil)
		up, err := tr.Apply(s0, "", nil, nil)
		if err != nil || eventKinds(up.Events) != "dropped a:0" || len(tr.UTXOs()) != 0 || len(tr.Txs()) != 0 {
			t.Fatalf("%v %q", err, eventKinds(up.Events))
		}
	})
	t.Run("back to the mempool", func(t *testing.T) {
		tr, _, s0 := setup(t)
		fork(t, tr, nil)
		hist := []HistoryItem{{a, 0}}
		up, err := tr.Apply(s0, status(t, hist), hist, []UnspentItem{{a, 0, 0, 1000}})
		if err != nil || len(up.Events) != 0 || len(tr.ProofNeeded()) != 0 {
			t.Fatalf("%v %q %v", err, eventKinds(up.Events), tr.ProofNeeded())
		}
	})
	t.Run("deeper than the safety limit is refused", func(t *testing.T) {
		tr, _, _ := setup(t)
		tc := &testChain{t: t, salt: 'z'}
		prev, _ := tr.Chain().Header(80)
		if _, err := tr.ConnectHeaders(81, tc.headers(prev, 81, 110)); !errors.Is(err, ErrReorgTooDeep) {
			t.Fatalf("err %v", err)
		}
		if tr.Confirmations(a) != 2 {
			t.Fatal("a refused reorg changed the state")
		}
	})
}

// TestTrackerRBF: a mempool funding replaced by fee (the first disappears, the replacement
// appears) and a mempool funding evicted.
func TestTrackerRBF(t *testing.T) {
	a, b := txid('a'), txid('b')
	tr := newTestTracker(t)
	s0 := sh(t, tr, 0, 0)
	apply := func(hist []HistoryItem, unspent []UnspentItem) string {
		t.Helper()
		up, err := tr.Apply(s0, status(t, hist), hist, unspent)
		if err != nil {
			t.Fatal(err)
		}
		return eventKinds(up.Events)
	}
	if got := apply([]HistoryItem{{a, 0}}, []UnspentItem{{a, 0, 0, 1000}}); got != "seen a:0@0" {
		t.Fatal(got)
	}
	if got := apply([]HistoryItem{{b, 0}}, []UnspentItem{{b, 1, 0, 990}}); got != "dropped a:0, seen b:1@0" {
		t.Fatal(got)
	}
	if _, ok := tr.Tx(a); ok {
		t.Fatal("replaced tx still tracked")
	}
	if got := apply(nil, nil); got != "dropped b:1" {
		t.Fatal(got)
	}
}

// TestTrackerCoinbaseMaturity: a coinbase output (position 0) is in UTXOs at once but in
// SpendableUTXOs, and announced by FundingMatured, only once a transaction in the next block may
// spend it: consensus wants spendHeight - coinbaseHeight >= 100 (Bitcoin Core CheckTxInputs,
// btcd CheckTransactionInputs), i.e. 100 confirmations at the tip. A shorter best chain or a
// reorg that takes the block away makes it immature again (FundingImmature).
func TestTrackerCoinbaseMaturity(t *testing.T) {
	newTr := func(t *testing.T) (*Tracker, *testChain, string) {
		tr, err := NewTracker(fakeScripts{branches: 2}, 20, NewHeaderChain(&chaincfg.RegressionNetParams, 200))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Extend(); err != nil {
			t.Fatal(err)
		}
		return tr, &testChain{t: t}, sh(t, tr, 0, 0)
	}
	cb := coinbaseLeaf(5, 0)
	op := wire.OutPoint{Hash: cb}
	short := cb.String()[:1]
	hist := []HistoryItem{{cb, 5}}
	found := func(t *testing.T, tr *Tracker, tc *testChain, s0 string) string {
		t.Helper()
		up, err := tr.Apply(s0, status(t, hist), hist, []UnspentItem{{cb, 0, 5, 50 * 1e8}})
		if err != nil {
			t.Fatal(err)
		}
		got := eventKinds(up.Events)
		if up, err = tr.ApplyProof(cb, tc.proof(5, cb)); err != nil {
			t.Fatal(err)
		}
		return got + "; " + eventKinds(up.Events)
	}
	want := func(t *testing.T, up Update, format string, args ...any) {
		t.Helper()
		w := format
		if strings.Contains(format, "%") {
			w = fmt.Sprintf(format, append([]any{short}, args...)...)
		}
		if got := eventKinds(up.Events); got != w {
			t.Fatalf("events %q, want %q", got, w)
		}
	}

	t.Run("matures at 100 confirmations, not 99", func(t *testing.T) {
		tr, tc, s0 := newTr(t)
		growTo(t, tr, tc, 5)
		if got := found(t, tr, tc, s0); got != fmt.Sprintf("seen %s:0@0; confirmed %[1]s:0@5/1", short) {
			t.Fatalf("found: %q", got)
		}
		u, _ := tr.UTXO(op)
		if !u.Coinbase || len(tr.UTXOs()) != 1 || len(tr.SpendableUTXOs()) != 0 {
			t.Fatalf("fresh coinbase: %+v, spendable %d", u, len(tr.SpendableUTXOs()))
		}
		want(t, growTo(t, tr, tc, 103), "tip 103") // 99 confirmations
		if len(tr.SpendableUTXOs()) != 0 {
			t.Fatal("coinbase with 99 confirmations spendable in the next block (premature spend)")
		}
		if _, ok := tr.SpendableCoin(op); ok {
			t.Fatal("SpendableCoin: coinbase with 99 confirmations offered for signing (premature spend)")
		}
		if u.Mature(Tip{Height: 104}) || !u.Mature(Tip{Height: 105}) {
			t.Fatal("Mature: spend height 104 (99 blocks after 5) allowed or 105 refused")
		}
		want(t, growTo(t, tr, tc, 104), "matured %s:0@5 at 104, tip 104")
		if len(tr.SpendableUTXOs()) != 1 {
			t.Fatal("coinbase with 100 confirmations not spendable in the next block")
		}
		if c, ok := tr.SpendableCoin(op); !ok || c.OutPoint != op || !c.Coinbase {
			t.Fatalf("SpendableCoin: coinbase with 100 confirmations refused: %+v, %v", c, ok)
		}
		if _, ok := tr.SpendableCoin(wire.OutPoint{Hash: cb, Index: 1}); ok {
			t.Fatal("SpendableCoin: an outpoint the wallet does not hold")
		}
		want(t, growTo(t, tr, tc, 110), "tip 110") // once only
	})
	t.Run("found already mature", func(t *testing.T) {
		tr, tc, s0 := newTr(t)
		growTo(t, tr, tc, 120)
		if got := found(t, tr, tc, s0); got != fmt.Sprintf("seen %s:0@0; confirmed %[1]s:0@5/116, matured %[1]s:0@5 at 120", short) {
			t.Fatalf("found: %q", got)
		}
	})
	t.Run("shorter best chain is refused: the coinbase stays mature", func(t *testing.T) {
		tr, tc, s0 := newTr(t)
		growTo(t, tr, tc, 5)
		found(t, tr, tc, s0)
		growTo(t, tr, tc, 105)
		before := len(tr.SpendableUTXOs())
		// A fork at 102 ending at 103 (what invalidateblock shows) has less work than ours.
		fk := &testChain{t: t, salt: 'f'}
		prev, _ := tr.Chain().Header(102)
		if _, err := tr.ConnectHeaders(103, fk.headers(prev, 103, 103)); !errors.Is(err, ErrForkLessWork) {
			t.Fatalf("shorter fork: %v, want ErrForkLessWork", err)
		}
		if tip, _ := tr.Tip(); tip.Height != 105 || len(tr.SpendableUTXOs()) != before || before == 0 {
			t.Fatalf("after the refused fork: tip %d, spendable %d (was %d)", tip.Height, len(tr.SpendableUTXOs()), before)
		}
	})
	t.Run("reorg takes the block away", func(t *testing.T) {
		tr, tc, s0 := newTr(t)
		growTo(t, tr, tc, 5)
		found(t, tr, tc, s0)
		growTo(t, tr, tc, 110)
		fk := &testChain{t: t, salt: 'g'} // another coinbase at 5: ours is gone
		prev, _ := tr.Chain().Header(4)
		up, err := tr.ConnectHeaders(5, fk.headers(prev, 5, 111))
		if err != nil {
			t.Fatal(err)
		}
		want(t, up, "reorged %s:0@5, immature %[1]s:0@5 at 111, tip 111 fork 4")
		if len(tr.SpendableUTXOs()) != 0 {
			t.Fatal("reorged-out coinbase still spendable")
		}
		up, err = tr.Apply(s0, "", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		want(t, up, "dropped %s:0")
	})
}

// FuzzTrackerApply feeds arbitrary history/unspent answers (announced with their own status, as
// an honest-looking server would) for a few scripts and checks the invariants: no panic, every
// UTXO's transaction is tracked, every published UTXO is still listed by the server, a
// confirmed UTXO is proven, and a repeated answer changes nothing.
func FuzzTrackerApply(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 1, 2, 1, 0, 3, 0, 1, 2})
	f.Add([]byte{1, 5, 3, 2, 2, 0, 0, 0, 9, 1, 1, 1, 4, 4})
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := NewTracker(fakeScripts{branches: 2}, 3, NewHeaderChain(paramsRegtest(), 0))
		if err != nil {
			t.Fatal(err)
		}
		tr.Extend()
		for len(data) >= 3 {
			script, n := data[0]%4, int(data[1]%4)
			data = data[2:]
			var hist []HistoryItem
			var unspent []UnspentItem
			for i := 0; i < n && len(data) >= 2; i++ {
				id := txid("abcdef"[data[0]%6])
				h := int32(data[1]%5) - 1
				hist = append(hist, HistoryItem{id, h})
				if data[1]%2 == 0 {
					unspent = append(unspent, UnspentItem{id, uint32(data[0] % 3), h, 1000})
				}
				data = data[2:]
			}
			shs := sh(t, tr, uint32(script%2), uint32(script/2))
			st, err := ElectrumStatus(hist)
			if err != nil {
				continue
			}
			if _, err := tr.Apply(shs, st, hist, unspent); err != nil {
				continue
			}
			if up, err := tr.Apply(shs, st, hist, unspent); err != nil || len(up.Events) != 0 || len(up.Put)+len(up.Remove) != 0 {
				t.Fatalf("repeat changed something: %v %+v", err, up)
			}
			for _, u := range tr.UTXOs() {
				if _, ok := tr.Tx(u.OutPoint.Hash); !ok {
					t.Fatalf("UTXO %v without a tracked tx", u.OutPoint)
				}
				if _, ok := tr.utxos[u.OutPoint]; !ok {
					t.Fatalf("published UTXO %v not listed by the server", u.OutPoint)
				}
				if u.Height > 0 {
					t.Fatalf("UTXO %v confirmed without a proof", u.OutPoint)
				}
			}
			if len(tr.eff) != len(tr.utxos) {
				t.Fatalf("published %d UTXOs, server lists %d", len(tr.eff), len(tr.utxos))
			}
		}
	})
}

func paramsRegtest() *chaincfg.Params { return &chaincfg.RegressionNetParams }
