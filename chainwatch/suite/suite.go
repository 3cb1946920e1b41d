package suite

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/store"
)

// Case is one named test of the suite.
type Case struct {
	Name string
	Run  func(t *testing.T, e *Env)
}

// Cases are the suite's named cases, in the order Run runs them.
var Cases = []Case{
	{"payment seen in mempool", testMempool},
	{"payment confirmed", testConfirmed},
	{"payment spent", testSpent},
	{"payment replaced by fee", testReplacedByFee},
	{"reorg 1 deep", func(t *testing.T, e *Env) { testReorg(t, e, 1) }},
	{"reorg 6 deep", func(t *testing.T, e *Env) { testReorg(t, e, 6) }},
	{"re-mine at the same height", testRemine},
	{"electrum server restarted mid-stream", testServerRestart},
	{"watcher stopped and restarted mid-stream", testWatcherRestart},
	{"watcher killed (SIGKILL) and restarted mid-stream", testWatcherKilled},
	{"reorg while the watcher is stopped", testReorgWhileStopped},
	{"lookahead grows to 45, index 70 beyond the gap", testGapLimit},
	ManyScripts(2000),
}

// Env is what a case gets: the backend, a fresh wallet (its own seed) and
// store, and the height the case started at (the truth is computed from it).
type Env struct {
	B      Backend
	Wallet *Wallet
	Dir    string
	Start  int64
	Ctx    context.Context
	Seed   uint32 // Wallet is NewWallet(params, Seed)
	// Outside is a wallet that is not watched (payments away from the
	// wallet go there).
	Outside *Wallet
}

// Run runs every case against b as subtests named "<backend>/<case>". Each
// case uses its own wallet, store and watcher.
func Run(t *testing.T, b Backend) {
	for _, c := range Cases {
		RunCase(t, b, c)
	}
}

// caseNumber numbers the cases of this process: every case gets wallets of
// its own (the wallet 2n and the outside wallet 2n+1), so that cases (and
// backends sharing a chain) never see each other's coins, however many times
// the suite runs in one process (go test -count=N).
var caseNumber atomic.Uint32

// RunCase runs one case as a subtest.
func RunCase(t *testing.T, b Backend, c Case) {
	n := caseNumber.Add(1)
	if n >= 1<<31 {
		t.Fatal("suite: 2^31 cases in one process; wallet seeds would repeat")
	}
	t.Run(b.Name()+"/"+c.Name, func(t *testing.T) {
		if kd, ok := b.(interface{ KnownDefects() map[string]string }); ok {
			if why := kd.KnownDefects()[c.Name]; why != "" {
				t.Skipf("known defect on %s, not yet fixed: %s", b.Name(), why)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		w, err := NewWallet(b.Params(), 2*n)
		if err != nil {
			t.Fatal(err)
		}
		out, err := NewWallet(b.Params(), 2*n+1)
		if err != nil {
			t.Fatal(err)
		}
		_, h, err := b.Node().GetBestBlock()
		if err != nil {
			t.Fatal(err)
		}
		c.Run(t, &Env{B: b, Wallet: w, Seed: 2 * n, Outside: out, Dir: t.TempDir(), Start: int64(h) + 1, Ctx: ctx})
	})
}

// ManyScripts is the case "N used scripts": N receive scripts paid once each
// (outputs of a few big transactions), then a fresh watcher's initial sync.
func ManyScripts(n int) Case {
	return Case{fmt.Sprintf("%d used scripts", n), func(t *testing.T, e *Env) { testManyScripts(t, e, n) }}
}

// Truth is the node's UTXO set of the wallet's scripts with index < window
// on both branches.
func (e *Env) Truth(t testing.TB, window uint32) Truth {
	t.Helper()
	scripts, err := e.Wallet.ScriptSet(window)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NodeTruth(e.B.Node(), scripts, e.Start)
	if err != nil {
		t.Fatalf("NodeTruth: %v", err)
	}
	return tr
}

// Check waits until the watcher equals the node's truth over window scripts
// per branch, and returns that truth.
func (e *Env) Check(t testing.TB, r *Running, window uint32) Truth {
	t.Helper()
	tr := e.Truth(t, window)
	Converge(t, e.B, r, tr)
	return tr
}

// Store opens the case's SQLite store (the same file for the same name).
func (e *Env) Store(t testing.TB, name string) *store.DB { return OpenStore(t, e.Dir, name) }

func (e *Env) pk(t testing.TB, w *Wallet, branch, index uint32) []byte {
	t.Helper()
	pk, err := w.PkScript(branch, index)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// pay pays amount to the wallet's receive index and returns the outpoint.
func (e *Env) pay(t testing.TB, index uint32, amount btcutil.Amount, rbf bool) (wire.OutPoint, *wire.MsgTx) {
	t.Helper()
	tx, err := e.B.Pay(e.Ctx, []*wire.TxOut{wire.NewTxOut(int64(amount), e.pk(t, e.Wallet, 0, index))}, rbf)
	if err != nil {
		t.Fatalf("pay %v to receive %d: %v", amount, index, err)
	}
	return wire.OutPoint{Hash: tx.TxHash(), Index: 0}, tx
}

func (e *Env) mine(t testing.TB, n int) []chainhash.Hash {
	t.Helper()
	hs, err := e.B.Mine(e.Ctx, n)
	if err != nil {
		t.Fatalf("mine %d: %v", n, err)
	}
	return hs
}

func isSeen(op wire.OutPoint) func(chainwatch.Event) bool {
	return func(ev chainwatch.Event) bool {
		f, ok := ev.(chainwatch.FundingSeen)
		return ok && f.UTXO.OutPoint == op
	}
}

func isConfirmed(op wire.OutPoint) func(chainwatch.Event) bool {
	return func(ev chainwatch.Event) bool {
		f, ok := ev.(chainwatch.FundingConfirmed)
		return ok && f.UTXO.OutPoint == op
	}
}

func isSpent(op wire.OutPoint) func(chainwatch.Event) bool {
	return func(ev chainwatch.Event) bool {
		s, ok := ev.(chainwatch.Spent)
		return ok && s.OutPoint == op
	}
}

func isReorged(op wire.OutPoint) func(chainwatch.Event) bool {
	return func(ev chainwatch.Event) bool {
		d, ok := ev.(chainwatch.FundingReorged)
		return ok && d.UTXO.OutPoint == op
	}
}

// isConfirmedIn matches a FundingConfirmed of op in block hash.
func isConfirmedIn(op wire.OutPoint, hash chainhash.Hash) func(chainwatch.Event) bool {
	return func(ev chainwatch.Event) bool {
		f, ok := ev.(chainwatch.FundingConfirmed)
		return ok && f.UTXO.OutPoint == op && f.UTXO.BlockHash == hash
	}
}

func isDropped(op wire.OutPoint) func(chainwatch.Event) bool {
	return func(ev chainwatch.Event) bool {
		d, ok := ev.(chainwatch.FundingDropped)
		return ok && d.UTXO.OutPoint == op
	}
}

const window = 40 // truth window for the small cases: lookahead 20 past index ≤ 19

func testMempool(t *testing.T, e *Env) {
	r := StartWatcher(t, e.B, e.Store(t, "cw.db"), e.Wallet, WatcherOptions{})
	op, _ := e.pay(t, 3, 1_500_000, false)
	ev := r.Events.Wait(t, "FundingSeen", isSeen(op)).(chainwatch.FundingSeen)
	if ev.UTXO.Height != 0 || ev.UTXO.Value != 1_500_000 || ev.UTXO.Branch != 0 || ev.UTXO.Index != 3 {
		t.Fatalf("FundingSeen = %+v, want a mempool coin of 1500000 sat at 0/3", ev.UTXO)
	}
	if tr := e.Check(t, r, window); len(tr) != 1 {
		t.Fatalf("truth has %d coins, want 1", len(tr))
	}
}

func testConfirmed(t *testing.T, e *Env) {
	r := StartWatcher(t, e.B, e.Store(t, "cw.db"), e.Wallet, WatcherOptions{})
	op, _ := e.pay(t, 0, 2_000_000, false)
	r.Events.Wait(t, "FundingSeen", isSeen(op))
	hs := e.mine(t, 1)
	ev := r.Events.Wait(t, "FundingConfirmed", isConfirmed(op)).(chainwatch.FundingConfirmed)
	if ev.Confs != 1 || ev.UTXO.Height != int32(e.Start) {
		t.Fatalf("FundingConfirmed = %+v, want 1 confirmation at height %d", ev, e.Start)
	}
	e.Check(t, r, window)
	if r.Tip().Hash != hs[0] {
		t.Fatalf("tip %s, want %s", r.Tip().Hash, hs[0])
	}
	// Further blocks change the confirmation count (from the tip), not the set.
	e.mine(t, 2)
	e.Check(t, r, window)
	if u, ok := r.UTXO(op); !ok || u.Confirmations(r.Tip()) != 3 {
		t.Fatalf("after 2 more blocks UTXO = %+v, %v; want 3 confirmations", u, ok)
	}
}

func testSpent(t *testing.T, e *Env) {
	r := StartWatcher(t, e.B, e.Store(t, "cw.db"), e.Wallet, WatcherOptions{})
	op, _ := e.pay(t, 1, 5_000_000, false)
	e.mine(t, 1)
	r.Events.Wait(t, "FundingConfirmed", isConfirmed(op))
	e.Check(t, r, window)

	// Spend it: 3,000,000 away, the rest less 1,000 sat fee to change 0/1… 1/0.
	prev := wire.NewTxOut(5_000_000, e.pk(t, e.Wallet, 0, 1))
	tx, err := e.Wallet.Spend([]wire.OutPoint{op}, []*wire.TxOut{prev}, []ScriptRef{{0, 1}}, []*wire.TxOut{
		wire.NewTxOut(3_000_000, e.pk(t, e.Outside, 0, 0)),
		wire.NewTxOut(1_999_000, e.pk(t, e.Wallet, 1, 0)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.B.Broadcast(e.Ctx, tx); err != nil {
		t.Fatal(err)
	}
	sp := r.Events.Wait(t, "Spent", isSpent(op)).(chainwatch.Spent)
	if sp.SpentBy == nil || *sp.SpentBy != tx.TxHash() {
		t.Fatalf("Spent.SpentBy = %v, want %s", sp.SpentBy, tx.TxHash())
	}
	change := wire.OutPoint{Hash: tx.TxHash(), Index: 1}
	r.Events.Wait(t, "FundingSeen of the change", isSeen(change))
	if tr := e.Check(t, r, window); len(tr) != 1 || tr[change].Value != 1_999_000 {
		t.Fatalf("truth after the spend = %v, want the change only", tr)
	}
	e.mine(t, 1)
	r.Events.Wait(t, "FundingConfirmed of the change", isConfirmed(change))
	e.Check(t, r, window)
}

func testReplacedByFee(t *testing.T, e *Env) {
	r := StartWatcher(t, e.B, e.Store(t, "cw.db"), e.Wallet, WatcherOptions{})
	// A payment replaced by one that pays someone else: the coin is dropped.
	op, orig := e.pay(t, 2, 4_000_000, true)
	r.Events.Wait(t, "FundingSeen", isSeen(op))
	e.Check(t, r, window)
	if _, err := e.B.Replace(e.Ctx, orig, []*wire.TxOut{wire.NewTxOut(3_900_000, e.pk(t, e.Outside, 0, 1))}, 25); err != nil {
		t.Fatalf("replace: %v", err)
	}
	r.Events.Wait(t, "FundingDropped of the replaced payment", isDropped(op))
	if tr := e.Check(t, r, window); len(tr) != 0 {
		t.Fatalf("truth after the replacement = %v, want nothing", tr)
	}

	// A payment replaced by one that pays the wallet less, on another index.
	op2, orig2 := e.pay(t, 4, 6_000_000, true)
	r.Events.Wait(t, "FundingSeen", isSeen(op2))
	repl, err := e.B.Replace(e.Ctx, orig2, []*wire.TxOut{wire.NewTxOut(5_500_000, e.pk(t, e.Wallet, 0, 5))}, 30)
	if err != nil {
		t.Fatalf("replace: %v", err)
	}
	newOp := wire.OutPoint{Hash: repl.TxHash(), Index: 0}
	r.Events.Wait(t, "FundingDropped of the second payment", isDropped(op2))
	r.Events.Wait(t, "FundingSeen of its replacement", isSeen(newOp))
	e.Check(t, r, window)
	e.mine(t, 1)
	r.Events.Wait(t, "FundingConfirmed of the replacement", isConfirmed(newOp))
	if tr := e.Check(t, r, window); len(tr) != 1 {
		t.Fatalf("truth = %v, want the replacement only", tr)
	}
}

// testReorg: a replaceable payment A confirmed in the first block that the reorg replaces, and a
// payment B confirmed in the tip block. During the reorg A is replaced by a transaction paying
// someone else, so A vanishes; B is mined again in the new chain at another height (for depth
// 1: the same height, in another block).
func testReorg(t *testing.T, e *Env, depth int) {
	r := StartWatcher(t, e.B, e.Store(t, "cw.db"), e.Wallet, WatcherOptions{})
	// A in the lowest block the reorg replaces, B in the tip block (the same block when depth is 1).
	opA, txA := e.pay(t, 6, 7_000_000, true)
	if depth > 1 {
		e.mine(t, 1)
		if depth > 2 {
			e.mine(t, depth-2)
		}
	}
	opB, _ := e.pay(t, 7, 8_000_000, false)
	e.mine(t, 1)
	r.Events.Wait(t, "FundingConfirmed of A", isConfirmed(opA))
	r.Events.Wait(t, "FundingConfirmed of B", isConfirmed(opB))
	before := e.Check(t, r, window)
	if len(before) != 2 {
		t.Fatalf("truth before the reorg = %v, want A and B", before)
	}
	res, err := e.B.Reorg(e.Ctx, depth, func(ctx context.Context) error {
		_, err := e.B.Replace(ctx, txA, []*wire.TxOut{wire.NewTxOut(6_900_000, e.pk(t, e.Outside, 0, 2))}, 40)
		return err
	})
	if err != nil {
		t.Fatalf("reorg: %v", err)
	}
	t.Logf("reorg: %d blocks replaced above height %d", len(res.Old), res.ForkHeight)
	after := e.Check(t, r, window)
	if _, ok := after[opA]; ok || len(after) != 1 {
		t.Fatalf("truth after the reorg = %v, want B only", after)
	}
	if after[opB].Height != int32(res.ForkHeight+1) {
		t.Fatalf("B at height %d after the reorg, want %d", after[opB].Height, res.ForkHeight+1)
	}
	r.Events.Wait(t, "A reported reorged out", isReorged(opA))
	r.Events.Wait(t, "A reported gone (FundingDropped)", isDropped(opA))
	r.Events.Wait(t, "B reported reorged out", isReorged(opB))
	r.Events.Wait(t, "B confirmed again in the new chain", isConfirmedIn(opB, after[opB].BlockHash))
}

func testRemine(t *testing.T, e *Env) {
	r := StartWatcher(t, e.B, e.Store(t, "cw.db"), e.Wallet, WatcherOptions{})
	op, _ := e.pay(t, 8, 9_000_000, false)
	e.mine(t, 1)
	r.Events.Wait(t, "FundingConfirmed", isConfirmed(op))
	before := e.Check(t, r, window)
	res, err := e.B.RemineTip(e.Ctx)
	if err != nil {
		t.Fatalf("re-mine: %v", err)
	}
	after := e.Check(t, r, window)
	if after[op].Height != before[op].Height || after[op].BlockHash != res.New[0] {
		t.Fatalf("re-mined coin %v, was %v; want the same height in block %s", after[op], before[op], res.New[0])
	}
	// No scripthash notification announces this (same txid, same height): the watcher must find
	// it from the headers, report the old confirmation gone and the new one.
	r.Events.Wait(t, "the coin reported reorged out", isReorged(op))
	r.Events.Wait(t, "the coin confirmed in the re-mined block", isConfirmedIn(op, res.New[0]))
	// The watcher follows the new chain: its tip is the block on top of the re-mined one.
	if got := r.Tip(); got.Hash != res.New[len(res.New)-1] {
		t.Fatalf("watcher tip %s, want %s", got.Hash, res.New[len(res.New)-1])
	}
}

func testServerRestart(t *testing.T, e *Env) {
	r := StartWatcher(t, e.B, e.Store(t, "cw.db"), e.Wallet, WatcherOptions{})
	op1, _ := e.pay(t, 9, 1_100_000, false)
	r.Events.Wait(t, "FundingSeen", isSeen(op1))
	if err := e.B.StopServer(e.Ctx); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			_ = e.B.StartServer(context.Background())
		}
	}()
	// While the server is down: a block confirms op1, and a new payment arrives.
	if _, err := e.B.Generate(e.Ctx, 1); err != nil {
		t.Fatal(err)
	}
	op2, _ := e.pay(t, 10, 1_200_000, false)
	if err := e.B.StartServer(e.Ctx); err != nil {
		t.Fatal(err)
	}
	restarted = true
	r.Events.Wait(t, "FundingConfirmed of the payment made before the restart", isConfirmed(op1))
	r.Events.Wait(t, "FundingSeen of the payment made while the server was down", isSeen(op2))
	e.Check(t, r, window)
	e.mine(t, 1)
	r.Events.Wait(t, "FundingConfirmed after the restart", isConfirmed(op2))
	e.Check(t, r, window)
}

func testWatcherRestart(t *testing.T, e *Env) {
	db := e.Store(t, "cw.db")
	r := StartWatcher(t, e.B, db, e.Wallet, WatcherOptions{})
	op1, _ := e.pay(t, 11, 2_100_000, false)
	r.Events.Wait(t, "FundingSeen", isSeen(op1))
	// Stop it right after a new payment and a block, before it has necessarily seen them.
	op2, _ := e.pay(t, 30, 2_200_000, false) // beyond the first window until 11 is seen used
	e.mine(t, 1)
	r.Stop(t)
	// While it is down: op1 is spent, a payment to the change branch arrives, and blocks.
	prev := wire.NewTxOut(2_100_000, e.pk(t, e.Wallet, 0, 11))
	tx, err := e.Wallet.Spend([]wire.OutPoint{op1}, []*wire.TxOut{prev}, []ScriptRef{{0, 11}}, []*wire.TxOut{
		wire.NewTxOut(2_000_000, e.pk(t, e.Outside, 0, 3)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.B.Broadcast(e.Ctx, tx); err != nil {
		t.Fatal(err)
	}
	op3, err := e.B.Pay(e.Ctx, []*wire.TxOut{wire.NewTxOut(2_300_000, e.pk(t, e.Wallet, 1, 4))}, false)
	if err != nil {
		t.Fatal(err)
	}
	e.mine(t, 2)

	r2 := StartWatcher(t, e.B, db, e.Wallet, WatcherOptions{})
	tr := e.Check(t, r2, 60)
	if len(tr) != 2 {
		t.Fatalf("truth = %v, want the payments to 0/30 and 1/4", tr)
	}
	if _, ok := tr[op2]; !ok {
		t.Fatalf("truth lacks %v", op2)
	}
	if _, ok := tr[wire.OutPoint{Hash: op3.TxHash(), Index: 0}]; !ok {
		t.Fatalf("truth lacks the change-branch payment")
	}
}

func testGapLimit(t *testing.T, e *Env) {
	r := StartWatcher(t, e.B, e.Store(t, "cw.db"), e.Wallet, WatcherOptions{Lookahead: 20})
	// 0, 15, 30 and 45 in one block: 30 is reachable only once 15 is seen used (window 0..35),
	// 45 once 30 is (window 0..50).
	var outs []*wire.TxOut
	for _, i := range []uint32{0, 15, 30, 45} {
		outs = append(outs, wire.NewTxOut(int64(1_000_000+i), e.pk(t, e.Wallet, 0, i)))
	}
	tx, err := e.B.Pay(e.Ctx, outs, false)
	if err != nil {
		t.Fatal(err)
	}
	e.mine(t, 1)
	tr := e.Check(t, r, 66)
	if len(tr) != 4 {
		t.Fatalf("truth = %v, want 4 coins", tr)
	}
	for i := range 4 {
		r.Events.Wait(t, fmt.Sprintf("FundingSeen of output %d", i), isSeen(wire.OutPoint{Hash: tx.TxHash(), Index: uint32(i)}))
	}
	// Index 70 is 25 past the last used index 45: beyond the gap limit, never looked at.
	op70, _ := e.pay(t, 70, 1_000_070, false)
	e.mine(t, 1)
	// Give the watcher every chance to see it: a block on top, and the window it has is 0..65.
	e.mine(t, 1)
	tr = e.Check(t, r, 66)
	if len(tr) != 4 {
		t.Fatalf("truth within the window = %v, want 4 coins", tr)
	}
	full := e.Truth(t, 100)
	if _, ok := full[op70]; !ok || len(full) != 5 {
		t.Fatalf("node truth over 100 indexes = %v, want the 4 coins and index 70", full)
	}
	if _, ok := r.UTXO(op70); ok {
		t.Fatal("the watcher found the payment to index 70, beyond the gap limit")
	}
	if _, _, ok := r.Lookup(e.pk(t, e.Wallet, 0, 70)); ok {
		t.Fatal("index 70 is tracked")
	}
	if _, idx, ok := r.Lookup(e.pk(t, e.Wallet, 0, 65)); !ok || idx != 65 {
		t.Fatal("index 65 (45 + lookahead 20) is not tracked")
	}
}

// testManyScripts: n receive scripts used, one transaction each (outputs of a few big
// transactions), under the server's default limits.
func testManyScripts(t *testing.T, e *Env, n int) {
	scripts := make([][]byte, n)
	for i := range scripts {
		scripts[i] = e.pk(t, e.Wallet, 0, uint32(i))
	}
	if _, err := e.B.PayScripts(e.Ctx, scripts, 20_000); err != nil {
		t.Fatal(err)
	}
	e.mine(t, 1)
	began := time.Now()
	r := StartWatcher(t, e.B, e.Store(t, "cw.db"), e.Wallet, WatcherOptions{LogLevel: slog.LevelWarn})
	t.Logf("initial sync of %d used scripts: ready after %v, %+v", n, time.Since(began).Round(time.Millisecond), r.Health())
	tr := e.Check(t, r, uint32(n+20))
	if len(tr) != n {
		t.Fatalf("truth has %d coins, want %d", len(tr), n)
	}
	if h := r.Health(); h.ScriptsTracked != n+20+20 {
		t.Fatalf("tracking %d scripts, want %d (receive 0..%d, change 0..19)", h.ScriptsTracked, n+40, n+19)
	}
}

// testWatcherKilled runs the watcher in a child process (this test binary again, see ChildMain),
// kills it with SIGKILL while it is handling a burst of payments and a block, changes the chain
// while it is dead, and starts a new Watcher over the same SQLite file.
func testWatcherKilled(t *testing.T, e *Env) {
	dbPath := filepath.Join(e.Dir, "killed.db")
	cc := childConfig{ServerURL: e.B.ServerURL(), DBPath: dbPath, Seed: e.Seed, Network: e.B.Params().Name}
	if co, ok := e.B.(ClientOptions); ok {
		cc.Fingerprints = co.ElectrumOptions().TLS.Fingerprints
	}
	cfg, err := json.Marshal(cc)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWatcherChildProcess$")
	cmd.Env = append(os.Environ(), ChildEnv+"="+string(cfg))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	killed := false
	defer func() {
		if !killed {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	lines := make(chan string, 1024)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if l, ok := strings.CutPrefix(sc.Text(), childPrefix); ok {
				lines <- l
			}
		}
		close(lines)
	}()
	waitLine := func(what string, match func(string) bool) {
		t.Helper()
		timeout := time.After(readyTimeout)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("the watcher process ended before %s; stderr:\n%s", what, stderr.String())
				}
				if match(l) {
					return
				}
			case <-timeout:
				t.Fatalf("the watcher process did not report %s", what)
			}
		}
	}
	waitLine("ready", func(l string) bool { return l == "ready" })
	op1, _ := e.pay(t, 11, 2_100_000, false)
	waitLine("FundingSeen of 0/11", func(l string) bool { return l == "FundingSeen "+op1.String() })

	// A burst: 0/30 (beyond the first window until 11 is used), change 1/4, and a block; kill
	// the process as soon as it reports the first event of the burst.
	op2, _ := e.pay(t, 30, 2_200_000, false)
	tx3, err := e.B.Pay(e.Ctx, []*wire.TxOut{wire.NewTxOut(2_300_000, e.pk(t, e.Wallet, 1, 4))}, false)
	if err != nil {
		t.Fatal(err)
	}
	e.mine(t, 1)
	waitLine("an event of the burst", func(string) bool { return true })
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed = true
	cmd.Wait()

	// While it is dead: op1 is spent and two blocks are mined.
	prev := wire.NewTxOut(2_100_000, e.pk(t, e.Wallet, 0, 11))
	spend, err := e.Wallet.Spend([]wire.OutPoint{op1}, []*wire.TxOut{prev}, []ScriptRef{{0, 11}}, []*wire.TxOut{
		wire.NewTxOut(2_000_000, e.pk(t, e.Outside, 0, 3)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.B.Broadcast(e.Ctx, spend); err != nil {
		t.Fatal(err)
	}
	e.mine(t, 2)

	db, err := store.Open(e.Ctx, dbPath)
	if err != nil {
		t.Fatalf("opening the killed watcher's store: %v", err)
	}
	defer db.Close()
	r := StartWatcher(t, e.B, db, e.Wallet, WatcherOptions{})
	tr := e.Check(t, r, 60)
	op3 := wire.OutPoint{Hash: tx3.TxHash(), Index: 0}
	if _, ok := tr[op2]; !ok || len(tr) != 2 {
		t.Fatalf("truth = %v, want the payments to 0/30 and 1/4", tr)
	}
	if _, ok := tr[op3]; !ok {
		t.Fatalf("truth lacks the change-branch payment %v", op3)
	}
	r.Events.Wait(t, "Spent of 0/11 after the restart", isSpent(op1))
}

// testReorgWhileStopped: the watcher is stopped with two confirmed coins; while it is down a
// 3-deep reorg replaces one of them by a conflicting transaction and moves the other to
// another block; a new Watcher over the same store must find both changes (no scripthash
// notification is pending for it: it has to notice the fork from its stored headers).
func testReorgWhileStopped(t *testing.T, e *Env) {
	db := e.Store(t, "cw.db")
	r := StartWatcher(t, e.B, db, e.Wallet, WatcherOptions{})
	opA, txA := e.pay(t, 12, 3_100_000, true)
	e.mine(t, 1)
	e.mine(t, 1)
	opB, _ := e.pay(t, 13, 3_200_000, false)
	e.mine(t, 1)
	r.Events.Wait(t, "FundingConfirmed of A", isConfirmed(opA))
	r.Events.Wait(t, "FundingConfirmed of B", isConfirmed(opB))
	before := e.Check(t, r, window)
	r.Stop(t)

	res, err := e.B.Reorg(e.Ctx, 3, func(ctx context.Context) error {
		_, err := e.B.Replace(ctx, txA, []*wire.TxOut{wire.NewTxOut(3_000_000, e.pk(t, e.Outside, 0, 4))}, 40)
		return err
	})
	if err != nil {
		t.Fatalf("reorg: %v", err)
	}
	r2 := StartWatcher(t, e.B, db, e.Wallet, WatcherOptions{})
	after := e.Check(t, r2, window)
	if _, ok := after[opA]; ok || len(after) != 1 {
		t.Fatalf("truth after the reorg = %v, want B only", after)
	}
	if after[opB].BlockHash == before[opB].BlockHash || after[opB].Height != int32(res.ForkHeight+1) {
		t.Fatalf("B after the reorg %v, before %v; want it in the new chain's first block", after[opB], before[opB])
	}
}
