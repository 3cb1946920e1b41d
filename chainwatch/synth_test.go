package chainwatch

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/internal/synthchain"
	"github.com/custodyagents/cosigner/store"
)

// The synthetic mainnet-length chain: 930,000 blocks; the wallet received one payment at
// 500,000 and one at 500,100 (one period, below the checkpoints) and one 1,000 blocks below the
// tip (above them); the checkpoints stop at the last whole period ending at least 2,016 blocks
// below the tip, like a release a few weeks old.
const (
	synthHeight = 930_000
	synthOld1   = 500_000
	synthOld2   = 500_100
	synthNew    = synthHeight - 1_000
	synthOther  = 600_000 // a transaction of another script, watched with RegisterConfirmationsNtfn
)

// synthOtherScript is the script paid at synthOther (not the wallet's).
var synthOtherScript = []byte{0x00, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}

type synthFixture struct {
	chain   *synthchain.Chain
	cpsJSON []byte
	wallet  p2wpkhWallet
	pays    map[wire.OutPoint]int32 // wallet outputs → block height
	other   *wire.MsgTx             // paying synthOtherScript at synthOther
}

var (
	synthOnce sync.Once
	synthFix  *synthFixture
	synthErr  error
)

// newSynthFixture builds the chain once per process (~2 s, ~12 s under -race).
func newSynthFixture(t testing.TB) *synthFixture {
	t.Helper()
	synthOnce.Do(func() {
		// The wallet's scripts go into the chain's blocks; the params (genesis) do not depend on
		// them, so derive the wallet from a one-block chain's params first.
		probe, err := synthchain.New(0, nil)
		if err != nil {
			synthErr = err
			return
		}
		w := p2wpkhWalletFor(probe.Params)
		pays := map[wire.OutPoint]int32{}
		txs := map[int32][]*wire.MsgTx{}
		for i, h := range []int32{synthOld1, synthOld2, synthNew} {
			pk, err := w.PkScript(0, uint32(i))
			if err != nil {
				synthErr = err
				return
			}
			tx := wire.NewMsgTx(2)
			tx.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: [32]byte{byte(i + 1), 0xee}, Index: 0}, Sequence: 0xffffffff})
			tx.AddTxOut(&wire.TxOut{Value: int64(100_000 * (i + 1)), PkScript: pk})
			txs[h] = []*wire.MsgTx{tx}
			pays[wire.OutPoint{Hash: tx.TxHash(), Index: 0}] = h
		}
		other := wire.NewMsgTx(2)
		other.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: [32]byte{9, 0xee}}, Sequence: 0xffffffff})
		other.AddTxOut(&wire.TxOut{Value: 5_000, PkScript: synthOtherScript})
		txs[synthOther] = []*wire.MsgTx{other}
		c, err := synthchain.New(synthHeight, txs)
		if err != nil {
			synthErr = err
			return
		}
		cps, err := json.Marshal(c.Checkpoints(synthHeight - RetargetInterval))
		if err != nil {
			synthErr = err
			return
		}
		synthFix = &synthFixture{chain: c, cpsJSON: cps, wallet: p2wpkhWalletFor(c.Params), pays: pays, other: other}
	})
	if synthErr != nil {
		t.Fatal(synthErr)
	}
	return synthFix
}

// p2wpkhWalletFor is newP2WPKHWallet without a *testing.T (seed 42).
func p2wpkhWalletFor(params *chaincfg.Params) p2wpkhWallet {
	m, err := newMaster(params, 42)
	if err != nil {
		panic(err)
	}
	return p2wpkhWallet{master: m, params: params}
}

func startSynthWatcher(t testing.TB, url string, db string, f *synthFixture, cps *Checkpoints, logLevel slog.Level) (*Watcher, func()) {
	t.Helper()
	ctx := context.Background()
	st := openStoreAt(ctx, t, db)
	w, err := New(Config{
		ServerURL: url, Scripts: f.wallet, DB: st, Params: f.chain.Params, Lookahead: 20, Checkpoints: cps,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: logLevel})),
		Electrum: electrum.Options{RequestTimeout: 60 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(rctx) }()
	go func() {
		for range w.Events() {
		}
	}()
	select {
	case <-w.Ready():
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(5 * time.Minute):
		t.Fatalf("not ready after 5 min: %+v", w.Health())
	}
	return w, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		st.Close()
	}
}

// TestWatcherOnSyntheticMainnetLengthChain runs the watcher against a test Electrum server
// (internal/synthchain) serving a 930,000-block chain shaped like mainnet (2016-block periods,
// Core's retarget rule, checkpoints of the Electrum format) with an easy proof of work.
//
// It proves: the watcher starts from the last checkpointed period and downloads only the
// headers from there to the tip (one whole base period plus the ~2,000 after it), never the
// chain from genesis; it holds at most those headers plus the one header of each block with a
// wallet transaction below the checkpoints, which it gets by fetching and checking that block's
// whole period once (two payments in one period: one fetch); the payments are SPV-proven against
// those headers; a restart needs no header below the base again (the proven hashes are
// pinned from the store). It does not prove anything about mainnet's real difficulty values,
// nor the checkpoint files themselves (see TestBuiltinCheckpointsFacts).
func TestWatcherOnSyntheticMainnetLengthChain(t *testing.T) {
	f := newSynthFixture(t)
	srv, err := synthchain.Serve(f.chain)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cps, err := ParseCheckpoints(f.cpsJSON)
	if err != nil {
		t.Fatal(err)
	}
	db := t.TempDir() + "/synth.db"
	w, stop := startSynthWatcher(t, srv.URL(), db, f, cps, slog.LevelWarn)
	anchor := int32(len(cps.List)-1) * RetargetInterval
	// Held in memory: from the first block of the period holding tip-100 (the reorg limit).
	base := int32(synthHeight-DefaultReorgSafetyLimit) / RetargetInterval * RetargetInterval
	h := w.Health()
	if h.Tip.Height != synthHeight || h.Unproven != 0 || h.SPVFailures != 0 {
		t.Fatalf("health %+v", h)
	}
	for op, height := range f.pays {
		u, ok := w.UTXO(op)
		if !ok || u.Height != height {
			t.Fatalf("payment %v at %d: %+v %v", op, height, u, ok)
		}
	}
	w.mu.RLock()
	ch := w.tr.Chain()
	held, below := len(ch.headers), len(ch.below)
	w.mu.RUnlock()
	if ch.Base() != base || held != int(synthHeight-base+1) || below != 3 {
		t.Fatalf("base %d (want %d), %d headers held, %d below the base", ch.Base(), base, held, below)
	}
	// Downloaded: the anchored period and everything after it once, then the periods of the
	// payments that are below the base by now, each once.
	froms := srv.HeaderRequests()
	want := map[int32]int{synthOld1 / RetargetInterval * RetargetInterval: 1, synthNew / RetargetInterval * RetargetInterval: 1}
	for from := anchor; from <= synthHeight; from += RetargetInterval {
		want[from]++
	}
	got := map[int32]int{}
	for _, from := range froms {
		got[from]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("header requests from %v, want %v", got, want)
	}
	t.Logf("base %d, %d headers held, %d below it; header requests from %v", base, held, below, froms)

	// Another script's transaction far below the base (RegisterConfirmationsNtfn): its period is
	// fetched and checked too, and the transaction is proven.
	ev, err := w.RegisterConfirmationsNtfn(f.other.TxHash(), synthOtherScript, 1, synthOther)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case conf := <-ev.Confirmed:
		if conf.BlockHeight != synthOther {
			t.Fatalf("confirmation %+v", conf)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("other script's transaction not confirmed: %+v", w.Health())
	}
	ev.Cancel()
	stop()

	// Restart: nothing below the base is fetched again; the payments stay confirmed.
	n := len(srv.HeaderRequests())
	w, stop = startSynthWatcher(t, srv.URL(), db, f, cps, slog.LevelWarn)
	defer stop()
	for _, from := range srv.HeaderRequests()[n:] {
		if from < base {
			t.Fatalf("restart fetched headers from %d", from)
		}
	}
	for op, height := range f.pays {
		if u, ok := w.UTXO(op); !ok || u.Height != height {
			t.Fatalf("after restart, payment %v: %+v %v", op, u, ok)
		}
	}
}

// TestSynthServerHelper is not a test: BenchmarkStartToReady runs it in a child process (so that
// the server's memory is not counted in the watcher's RSS). It builds the fixture, serves it and
// prints one JSON line {"url", "checkpoints"}, then serves until stdin closes.
func TestSynthServerHelper(t *testing.T) {
	if os.Getenv("COSIGNER_SYNTH_SERVER") != "1" {
		t.Skip("helper process for BenchmarkStartToReady")
	}
	f := newSynthFixture(t)
	srv, err := synthchain.Serve(f.chain)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	line, _ := json.Marshal(map[string]any{"url": srv.URL(), "checkpoints": json.RawMessage(f.cpsJSON)})
	fmt.Println(string(line))
	bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes stdin
}

// BenchmarkStartToReady measures a first start of the watcher on the synthetic mainnet-length
// chain (see TestWatcherOnSyntheticMainnetLengthChain), served by a child process: from New to
// Ready on an empty database, then the process's resident memory. Metrics: s/ready (seconds per
// start), MB-RSS (VmRSS after the last start), MB-HWM (peak VmRSS of the process). Goal: < 5 s
// and < 80 MB. Run: go test -run '^$' -bench StartToReady -benchtime 3x ./chainwatch/ (the
// "from-genesis" case, the watcher without checkpoints, runs with COSIGNER_BENCH_GENESIS=1).
func BenchmarkStartToReady(b *testing.B) {
	cmd := exec.Command(os.Args[0], "-test.run", "^TestSynthServerHelper$", "-test.v")
	cmd.Env = append(os.Environ(), "COSIGNER_SYNTH_SERVER=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	var info struct {
		URL         string          `json:"url"`
		Checkpoints json.RawMessage `json:"checkpoints"`
	}
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if json.Unmarshal(sc.Bytes(), &info) == nil && info.URL != "" {
			break
		}
	}
	if info.URL == "" {
		b.Fatal("the server process printed no URL")
	}
	cps, err := ParseCheckpoints(info.Checkpoints)
	if err != nil {
		b.Fatal(err)
	}
	probe, err := synthchain.New(0, nil) // the params (genesis) only
	if err != nil {
		b.Fatal(err)
	}
	f := &synthFixture{chain: probe, wallet: p2wpkhWalletFor(probe.Params)}
	for _, bc := range []struct {
		name string
		cps  *Checkpoints
	}{{"checkpoints", cps}, {"from-genesis", nil}} {
		b.Run(bc.name, func(b *testing.B) {
			if bc.cps == nil && os.Getenv("COSIGNER_BENCH_GENESIS") != "1" {
				b.Skip("the whole chain from genesis (the watcher before checkpoints) only with COSIGNER_BENCH_GENESIS=1")
			}
			var total time.Duration
			for i := 0; i < b.N; i++ {
				start := time.Now()
				_, stop := startSynthWatcher(b, info.URL, fmt.Sprintf("%s/bench%d.db", b.TempDir(), i), f, bc.cps, slog.LevelError)
				total += time.Since(start)
				b.StopTimer()
				if i == b.N-1 {
					b.ReportMetric(procStatusMB(b, "VmRSS"), "MB-RSS")
					b.ReportMetric(procStatusMB(b, "VmHWM"), "MB-HWM")
				}
				stop()
				b.StartTimer()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/ready")
		})
	}
}

// procStatusMB reads a "kB" field of /proc/self/status (Linux) in MB.
func procStatusMB(b *testing.B, field string) float64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb / 1024
		}
	}
	b.Fatalf("no %s in /proc/self/status", field)
	return 0
}

func newMaster(params *chaincfg.Params, seedByte byte) (*hdkeychain.ExtendedKey, error) {
	return hdkeychain.NewMaster(bytes.Repeat([]byte{seedByte}, 32), params)
}

func openStoreAt(ctx context.Context, t testing.TB, path string) *store.DB {
	t.Helper()
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}
