package chainwatch

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/store"
)

func newTestStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// storeScripts writes src's scripts at the given indexes of branch (null status) to db.
func storeScripts(t *testing.T, db *store.DB, src ScriptSource, branch uint32, indexes ...uint32) {
	t.Helper()
	var su store.ChainwatchUpdate
	for _, i := range indexes {
		pk, err := src.PkScript(branch, i)
		if err != nil {
			t.Fatal(err)
		}
		su.PutScripts = append(su.PutScripts, store.ChainwatchScript{Branch: branch, Index: i, ScriptHash: ScriptHash(pk), PkScript: pk})
	}
	if _, err := db.ApplyChainwatchUpdate(context.Background(), su); err != nil {
		t.Fatal(err)
	}
}

func span(from, to uint32) []uint32 {
	var out []uint32
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func offlineWatcher(t *testing.T, db *store.DB, src ScriptSource) *Watcher {
	t.Helper()
	w, err := New(Config{ServerURL: "tcp://127.0.0.1:1", Scripts: src, DB: db, Params: &chaincfg.RegressionNetParams, Lookahead: 20})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestLoadRepairsAPartlyStoredWindow: the store that the watcher killed during its initial sync
// left before the window's scripts were stored with it (receive 0–29 and 31–39 stored, 30 still
// being fetched) — today's fresh-clone failure "stored scripts of branch 0 are not contiguous at
// index 31" — loads: the missing script is derived again, stored, and the window is whole.
func TestLoadRepairsAPartlyStoredWindow(t *testing.T) {
	ctx := context.Background()
	db := newTestStore(t)
	src := fakeScripts{branches: 2}
	storeScripts(t, db, src, 0, append(span(0, 30), span(31, 40)...)...)
	storeScripts(t, db, src, 1, span(0, 20)...)
	w := offlineWatcher(t, db, src)
	if err := w.load(ctx); err != nil {
		t.Fatalf("load: %v", err)
	}
	if tracked, _ := w.tr.Window(0); tracked != 40 {
		t.Fatalf("receive window %d scripts, want 40", tracked)
	}
	if b, i, ok := w.Lookup(mustFake(t, 0, 30)); !ok || b != 0 || i != 30 {
		t.Fatal("script 0/30 is not tracked after the load")
	}
	st, err := db.LoadChainwatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Scripts) != 60 || st.Scripts[30].Index != 30 || st.Scripts[30].ScriptHash != ScriptHash(mustFake(t, 0, 30)) {
		t.Fatalf("stored after the load: %d scripts, want 60 with 0/30 at its place", len(st.Scripts))
	}
}

// TestLoadRefusesAnAbsurdGap: a stored index far past any window (a corrupt row) is ErrStore,
// not hundreds of millions of derivations.
func TestLoadRefusesAnAbsurdGap(t *testing.T) {
	db := newTestStore(t)
	src := fakeScripts{branches: 2}
	storeScripts(t, db, src, 0, 0, 200_005)
	if err := offlineWatcher(t, db, src).load(context.Background()); !errors.Is(err, ErrStore) || !strings.Contains(err.Error(), "jump from index 1 to 200005") {
		t.Fatalf("load = %v, want ErrStore naming the jump", err)
	}
}

func mustFake(t *testing.T, branch, index uint32) []byte {
	t.Helper()
	pk, err := fakeScripts{branches: 2}.PkScript(branch, index)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// TestRunRefusesAnotherWalletsStore: a store written for another descriptor stops Run with
// ErrWalletMismatch before it connects anywhere, naming the first script that differs, whether
// or not the store also misses indexes; a store with more branches than the descriptor too.
func TestRunRefusesAnotherWalletsStore(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fill    func(t *testing.T, db *store.DB)
		message string
	}{
		{"whole window", func(t *testing.T, db *store.DB) {
			storeScripts(t, db, fakeScripts{branches: 2}, 0, span(0, 20)...)
			storeScripts(t, db, fakeScripts{branches: 2}, 1, span(0, 20)...)
		}, "stored script 0/0 differs from the script the configured descriptor derives at 0/0"},
		{"window with a gap", func(t *testing.T, db *store.DB) {
			storeScripts(t, db, fakeScripts{branches: 2}, 0, append(span(0, 5), span(6, 20)...)...)
		}, "stored script 0/0 differs"},
		{"more branches", func(t *testing.T, db *store.DB) {
			storeScripts(t, db, otherScripts{}, 0, span(0, 20)...)
			storeScripts(t, db, fakeScripts{branches: 3}, 2, span(0, 20)...)
		}, "the database has scripts on branch 2, the configured descriptor has 2 branches"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := newTestStore(t)
			tc.fill(t, db)
			w := offlineWatcher(t, db, otherScripts{})
			go func() {
				for range w.Events() {
				}
			}()
			err := w.Run(context.Background())
			if !errors.Is(err, ErrWalletMismatch) || !strings.Contains(err.Error(), tc.message) {
				t.Fatalf("Run = %v, want ErrWalletMismatch saying %q", err, tc.message)
			}
			if !strings.Contains(err.Error(), "database belongs to a different wallet") {
				t.Fatalf("Run = %v: does not say the database belongs to a different wallet", err)
			}
		})
	}
}

// TestMergedUpdateStoresWhatSequentialOnesWould: one fetch round merges the updates of several
// scripts into one write, and the store applies an update's removals before its puts. An output
// that the first script's update puts (its transaction moved height) and the second's removes
// (spent in its history) must not be stored as unspent, nor a transaction (and its raw bytes)
// that one update puts and a later one removes.
func TestMergedUpdateStoresWhatSequentialOnesWould(t *testing.T) {
	ctx := context.Background()
	db := newTestStore(t)
	src := fakeScripts{branches: 2}
	storeScripts(t, db, src, 0, 0)
	pk := mustFake(t, 0, 0)
	fund := payTx(1, nil, wire.TxOut{Value: 5_000, PkScript: pk})
	op := wire.OutPoint{Hash: fund.TxHash()}
	var u Update
	u.Merge(Update{
		Put:    []UTXO{{OutPoint: op, Value: 5_000, PkScript: pk}},
		PutTxs: []TxState{{TxID: fund.TxHash()}},
		RawTxs: []*wire.MsgTx{fund},
	})
	u.Merge(Update{Remove: []wire.OutPoint{op}, RemoveTxs: []chainhash.Hash{fund.TxHash()}})
	su, err := toStore(u)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyChainwatchUpdate(ctx, su); err != nil {
		t.Fatal(err)
	}
	st, err := db.LoadChainwatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.UTXOs) != 0 || len(st.Txs) != 0 || len(st.RawTxs) != 0 {
		t.Fatalf("stored %d UTXOs, %d txs, %d raw txs after put then remove; want none", len(st.UTXOs), len(st.Txs), len(st.RawTxs))
	}
}
