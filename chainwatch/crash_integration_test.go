package chainwatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/store"
)

// errCrash is what the injected crash returns instead of making the write.
var errCrash = errors.New("injected crash before this write")

// crashLookahead keeps the windows small, so that a sync takes many rounds (and writes).
const crashLookahead = 10

// crashRun is one watcher process of the crash test: a Watcher over the store file path whose
// state writes are counted, the crashAt-th one (1-based; 0 = none) failing as a kill -9 just
// before it would (every write is one SQLite transaction, so a kill during a write leaves the
// state before it). With afterReady, writes count only once arm is called.
type crashRun struct {
	w      *Watcher
	db     *store.DB
	log    *eventLog
	cancel context.CancelFunc
	done   chan error // Run's result, once
	mu     sync.Mutex
	armed  bool // writes are counted (from the start, unless startCrashRun was told otherwise)
	writes int
	hit    bool
}

// arm starts counting writes towards the crash from now on.
func (r *crashRun) arm() {
	r.mu.Lock()
	r.armed = true
	r.mu.Unlock()
}

func startCrashRun(t *testing.T, dn *devnet.Network, path string, src ScriptSource, crashAt int, afterReady bool) *crashRun {
	t.Helper()
	db, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{
		ServerURL: dn.ElectrumURL(), Scripts: src, DB: db, Params: dn.Params(), Lookahead: crashLookahead,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		ClientName:   "cosigner-crash-test",
		ReconnectMin: 100 * time.Millisecond,
		Electrum:     electrum.Options{RequestTimeout: 60 * time.Second},
	})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	r := &crashRun{w: w, db: db, log: &eventLog{}, done: make(chan error, 1), armed: !afterReady}
	w.beforeWrite = func(store.ChainwatchUpdate) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.hit {
			return errCrash // a dead process writes nothing more
		}
		if !r.armed {
			return nil
		}
		r.writes++
		if r.writes == crashAt {
			r.hit = true
			return errCrash
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	collected := make(chan struct{})
	go func() { r.log.collect(w.Events()); close(collected) }()
	go func() { err := w.Run(ctx); <-collected; r.done <- err }()
	return r
}

// wait returns when the watcher is Ready (crashed false) or Run returned after the injected
// crash (crashed true); any other end fails the test.
func (r *crashRun) wait(t *testing.T) (crashed bool) {
	t.Helper()
	select {
	case <-r.w.Ready():
		return false
	case err := <-r.done:
		r.done <- err // for close
		if !errors.Is(err, errCrash) || !errors.Is(err, ErrStore) {
			t.Fatalf("Run = %v, want the injected crash (ErrStore)", err)
		}
		return true
	case <-time.After(3 * time.Minute):
		t.Fatalf("watcher neither Ready nor crashed after 3 min: %+v", r.w.Health())
	}
	return false
}

// close stops the watcher (if it still runs) and closes its store; it returns Run's result.
func (r *crashRun) close(t *testing.T) error {
	t.Helper()
	r.cancel()
	var err error
	select {
	case err = <-r.done:
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute of cancel")
	}
	r.db.Close()
	return err
}

// checkContiguous asserts the property that makes every crash state loadable: the stored
// scripts of each branch are exactly the indexes 0..n-1.
func checkContiguous(t *testing.T, path string) {
	t.Helper()
	db, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err := db.LoadChainwatch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	next := map[uint32]uint32{}
	for _, s := range st.Scripts { // ordered by branch, index
		if s.Index != next[s.Branch] {
			t.Fatalf("stored scripts of branch %d skip from %d to %d", s.Branch, next[s.Branch], s.Index)
		}
		next[s.Branch]++
	}
}

// copyFile copies a closed SQLite store (its -wal file too, if one was left).
func copyFile(t *testing.T, from, to string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(from + suffix)
		if suffix != "" && errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// crashEveryWrite runs the watcher from the store file base (absent: a fresh store) once per
// write point: run n crashes at its n-th write, then a new watcher over what run n left must
// start, become Ready and equal want (checked against btcd), having published a FundingSeen for
// every coin of want (delivered again from the outbox or new). It stops after the first run
// that reaches Ready without its n-th write, and returns how many write points it covered.
func crashEveryWrite(t *testing.T, dn *devnet.Network, wallet ScriptSource, base, dir string, want map[wire.OutPoint]btcutil.Amount) int {
	t.Helper()
	for n := 1; ; n++ {
		path := filepath.Join(dir, fmt.Sprintf("crash-%d.db", n))
		if base != "" {
			copyFile(t, base, path)
		}
		r := startCrashRun(t, dn, path, wallet, n, false)
		crashed := r.wait(t)
		r.close(t)
		if !crashed {
			t.Logf("%d write points covered", n-1)
			return n - 1
		}
		resumeAfterCrash(t, dn, wallet, path, want, fmt.Sprintf("a crash at write %d", n))
	}
}

// resumeAfterCrash checks what a crash left in the store file path (contiguous scripts), then
// starts a new watcher over it, which must become Ready and equal want (checked against btcd,
// confirmed coins in btcd's blocks), having published a FundingSeen of every coin of want.
func resumeAfterCrash(t *testing.T, dn *devnet.Network, wallet ScriptSource, path string, want map[wire.OutPoint]btcutil.Amount, what string) {
	t.Helper()
	checkContiguous(t, path)
	r2 := startCrashRun(t, dn, path, wallet, 0, false)
	if r2.wait(t) {
		t.Fatal("unreachable: no crash injected")
	}
	waitFor(t, "the watcher restarted after "+what+" to equal btcd", func() bool {
		return sameOutPoints(r2.w.UTXOs(), want) && r2.w.Tip().Hash == nodeTip(t, dn)
	})
	got := r2.w.UTXOs()
	checkAgainstNode(t, dn, got, want)
	checkConfirmedBlocks(t, dn, got)
	seen := map[wire.OutPoint]bool{}
	for _, ev := range r2.log.snapshot() {
		if f, ok := ev.(FundingSeen); ok {
			seen[f.UTXO.OutPoint] = true
		}
	}
	for op := range want {
		if !seen[op] {
			t.Fatalf("after %s: no FundingSeen of %v after the restart (events: %s)", what, op, eventKinds(r2.log.snapshot()))
		}
	}
	if err := r2.close(t); err != nil {
		t.Fatalf("after %s: restarted Run = %v", what, err)
	}
}

func sameOutPoints(got []UTXO, want map[wire.OutPoint]btcutil.Amount) bool {
	if len(got) != len(want) {
		return false
	}
	for _, u := range got {
		if _, ok := want[u.OutPoint]; !ok {
			return false
		}
	}
	return true
}

func nodeTip(t *testing.T, dn *devnet.Network) chainhash.Hash {
	t.Helper()
	h, _, err := dn.RPC().GetBestBlock()
	if err != nil {
		t.Fatal(err)
	}
	return *h
}

// spendTo spends op (value, paying wallet's branch/index) to outs, signed; the fee is what outs
// leave.
func spendTo(t *testing.T, dn *devnet.Network, wallet p2wpkhWallet, branch, index uint32, op wire.OutPoint, value btcutil.Amount, outs ...*wire.TxOut) *wire.MsgTx {
	t.Helper()
	pk := mustPk(t, wallet, branch, index)
	key, err := wallet.key(branch, index)
	if err != nil {
		t.Fatal(err)
	}
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&op, nil, nil))
	for _, o := range outs {
		tx.AddTxOut(o)
	}
	fetcher := txscript.NewCannedPrevOutputFetcher(pk, int64(value))
	wit, err := txscript.WitnessSignature(tx, txscript.NewTxSigHashes(tx, fetcher), 0, int64(value), pk, txscript.SigHashAll, key, true)
	if err != nil {
		t.Fatal(err)
	}
	tx.TxIn[0].Witness = wit
	if _, err := dn.RPC().SendRawTransaction(tx, false); err != nil {
		t.Fatalf("broadcast spend of %v: %v", op, err)
	}
	return tx
}

// TestWatcherSurvivesACrashAtEveryWrite kills the watcher (in effect: its next state write fails
// and it stops, as a kill -9 at that point would leave the store) at every write of an initial
// sync, then of a restart's catch-up over a 2-deep reorg, and starts a new watcher over what each
// crash left. Every crash state must have contiguous stored scripts per branch and must be
// resumed: the new watcher becomes Ready and its UTXO set equals btcd's, with every coin
// published. The wallet is laid out so that the sync takes several rounds with a gap-limit window
// of 10: receive indexes 0–24 used but for 3 and 17 (unused scripts among used ones, stored with
// a null status while their neighbours' histories are still being fetched — the state that the
// old write order left non-contiguous), 33 reachable only through histories fetched ahead of the
// window, change indexes 0–2, a spend between wallet scripts and a mempool payment. While the
// synced watcher is down, a reorg replaces both blocks of its history (one payment conflicted
// away, the others confirmed again elsewhere) and new payments arrive beyond its window.
func TestWatcherSurvivesACrashAtEveryWrite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	dn := startDevnet(ctx, t)
	wallet := newP2WPKHWallet(t, dn.Params(), 43)
	outside := newP2WPKHWallet(t, dn.Params(), 44)
	want := map[wire.OutPoint]btcutil.Amount{}
	type ref struct{ branch, index uint32 }
	pay := func(refs []ref, value func(ref) int64, rbf bool) *wire.MsgTx {
		t.Helper()
		var outs []*wire.TxOut
		for _, r := range refs {
			outs = append(outs, wire.NewTxOut(value(r), mustPk(t, wallet, r.branch, r.index)))
		}
		tx, err := dn.FundOutputs(ctx, outs, devnet.FundOptions{RBF: rbf})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range refs {
			op, v := findOut(t, dn, tx.TxHash(), mustPk(t, wallet, r.branch, r.index))
			want[op] = v
		}
		return tx
	}
	mine := func(n int) {
		t.Helper()
		if _, err := dn.Mine(ctx, n); err != nil {
			t.Fatal(err)
		}
	}

	var refs []ref
	for i := uint32(0); i < 25; i++ {
		if i != 3 && i != 17 {
			refs = append(refs, ref{0, i})
		}
	}
	refs = append(refs, ref{0, 33}, ref{1, 0}, ref{1, 2})
	tx1 := pay(refs, func(r ref) int64 { return 20_000 + int64(r.branch)*30_000 + int64(r.index) }, false)
	txR := pay([]ref{{0, 21}}, func(ref) int64 { return 60_000 }, true)
	mine(1)
	op5, v5 := findOut(t, dn, tx1.TxHash(), mustPk(t, wallet, 0, 5))
	spend := spendTo(t, dn, wallet, 0, 5, op5, v5,
		wire.NewTxOut(10_000, mustPk(t, wallet, 1, 1)), wire.NewTxOut(9_000, mustPk(t, outside, 0, 0)))
	delete(want, op5)
	want[wire.OutPoint{Hash: spend.TxHash(), Index: 0}] = 10_000
	mine(1)
	pay([]ref{{0, 8}}, func(ref) int64 { return 70_000 }, false) // stays in the mempool

	dir := t.TempDir()
	t.Run("initial sync", func(t *testing.T) {
		if n := crashEveryWrite(t, dn, wallet, "", t.TempDir(), want); n < 6 {
			t.Fatalf("only %d write points: the sync did not take the rounds this test is about", n)
		}
	})
	if t.Failed() {
		return
	}

	// A synced store, then the chain changes while its watcher is down.
	synced := filepath.Join(dir, "synced.db")
	r := startCrashRun(t, dn, synced, wallet, 0, false)
	if r.wait(t) {
		t.Fatal("unreachable: no crash injected")
	}
	waitFor(t, "the synced watcher to equal btcd", func() bool { return sameOutPoints(r.w.UTXOs(), want) })
	if err := r.close(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	opR, _ := findOut(t, dn, txR.TxHash(), mustPk(t, wallet, 0, 21))
	res, err := dn.Reorg(ctx, 2, func(ctx context.Context) error {
		_, err := dn.ReplaceFunding(ctx, txR, []*wire.TxOut{wire.NewTxOut(58_000, mustPk(t, outside, 0, 1))}, 40)
		return err
	})
	if err != nil {
		t.Fatalf("reorg: %v", err)
	}
	t.Logf("reorg: %d blocks replaced above height %d", len(res.Old), res.ForkHeight)
	delete(want, opR)
	pay([]ref{{0, 40}, {1, 5}}, func(r ref) int64 { return 80_000 + int64(r.branch)*1_000 }, false)
	mine(1)
	pay([]ref{{0, 48}}, func(ref) int64 { return 82_000 }, false) // reachable once 40 is seen used

	t.Run("restart over a reorg", func(t *testing.T) {
		if n := crashEveryWrite(t, dn, wallet, synced, t.TempDir(), want); n < 3 {
			t.Fatalf("only %d write points in the catch-up", n)
		}
	})
	if t.Failed() {
		return
	}

	// A running, synced watcher follows a payment beyond its window and its block, or a payment,
	// its block and a 1-deep reorg that re-mines that block; it is killed at its k-th write after
	// Ready, for k = 1, 2, … of each kind of round until a round of that kind needs fewer writes.
	// The chain cannot be replayed, so each round brings new changes to the same store.
	t.Run("running session", func(t *testing.T) {
		live := filepath.Join(t.TempDir(), "live.db")
		copyFile(t, synced, live)
		round := 0
		for _, reorg := range []bool{false, true} {
			for k := 1; ; k++ {
				round++
				r := startCrashRun(t, dn, live, wallet, k, true)
				if r.wait(t) {
					t.Fatal("crashed before Ready")
				}
				r.arm()
				index := 48 + uint32(round) // the window reaches it once the previous one is used
				pay([]ref{{0, index}}, func(ref) int64 { return 90_000 + int64(round) }, false)
				mine(1)
				if reorg {
					if _, err := dn.Reorg(ctx, 1, nil); err != nil {
						t.Fatalf("reorg: %v", err)
					}
				}
				crashed := false
				deadline := time.Now().Add(3 * time.Minute) // bounds a hang; not a speed assertion
				for !crashed && !(sameOutPoints(r.w.UTXOs(), want) && r.w.Tip().Hash == nodeTip(t, dn) && r.w.Health().Unproven == 0) {
					select {
					case err := <-r.done:
						r.done <- err
						if !errors.Is(err, errCrash) {
							t.Fatalf("Run = %v, want the injected crash", err)
						}
						crashed = true
					case <-time.After(20 * time.Millisecond):
						if time.Now().After(deadline) {
							t.Fatalf("round %d: the watcher neither crashed nor followed the chain: %+v", round, r.w.Health())
						}
					}
				}
				err := r.close(t)
				if errors.Is(err, errCrash) {
					crashed = true
				} else if err != nil {
					t.Fatalf("Run = %v", err)
				}
				if !crashed {
					t.Logf("rounds with reorg=%v: %d write points covered", reorg, k-1)
					break
				}
				resumeAfterCrash(t, dn, wallet, live, want, fmt.Sprintf("a crash at write %d of a running session (reorg %v)", k, reorg))
			}
		}
	})
}
