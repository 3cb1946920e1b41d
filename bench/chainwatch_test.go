package bench

// chainwatch_test.go — chainwatch's figures (docs/benchmarks.md; issue 3 "Numbers"), side by
// side in one run on the local test network:
//
//   - initial sync of a wallet with 10,000 used receive scripts (one transaction in each
//     script's history) by a fresh chainwatch.Watcher, against bdkpython's Electrum full_scan of
//     the same descriptor on the same ElectrumX (cost limits lifted), each run twice, best run
//     reported, and their ratio;
//   - restart-to-ready: a new Watcher over the synced SQLite store (statuses unchanged, so no
//     history is fetched again), from Run to Ready: loading the store, connecting, the header
//     check and re-subscribing every scripthash (ElectrumX computes each status). Measured with
//     the outbox acknowledged, as a consumer that Acks what it handled leaves it (the bench's
//     sync consumer does not Ack, so the outbox is emptied in one statement before); and, as a
//     second figure, with the 20,000 events of the initial sync still unacknowledged (decoded
//     and delivered again while the watcher syncs);
//   - notification-to-event latency: from the moment the Electrum notification line leaves
//     ElectrumX (timestamped by a byte-forwarding TCP relay between ElectrumX and the watcher)
//     to the moment the consumer receives the Watcher's event — FundingSeen for a payment
//     (blockchain.scripthash.subscribe notification; includes the history and transaction
//     fetch) and NewTip for a block (blockchain.headers.subscribe notification);
//   - idle RSS of the process holding the synced 10,000-script Watcher (this benchmark process:
//     the harness's own memory is included, so it is an upper bound);
//   - a 2,000-script sync under ElectrumX's default cost limits (as deployed servers run).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/store"
)

// bigWallet is the number of used receive scripts of the sync benchmark: 10,000, or
// $BENCH_CHAINWATCH_SCRIPTS for a quicker look.
var bigWallet = func() int {
	if v, err := strconv.Atoi(os.Getenv("BENCH_CHAINWATCH_SCRIPTS")); err == nil && v > 0 {
		return v
	}
	return 10_000
}()

const (
	defaultLimits = 2_000  // used receive scripts of the default-cost-limits sync
	latencyN      = 40     // samples per latency figure
	restartN      = 3      // restart-to-ready samples
	perScript     = 10_000 // sat paid to each script
)

// benchDescriptor is a public 2-of-3 wsh(sortedmulti) multipath descriptor of three keys
// derived from seeds seed, seed+1, seed+2 (the shape cosigner watches).
func benchDescriptor(b *testing.B, params *chaincfg.Params, seed byte) *descriptor.Descriptor {
	b.Helper()
	var keys []string
	for i := range 3 {
		m, err := hdkeychain.NewMaster(bytes.Repeat([]byte{seed + byte(i)}, 32), params)
		if err != nil {
			b.Fatal(err)
		}
		pub, err := m.Neuter()
		if err != nil {
			b.Fatal(err)
		}
		keys = append(keys, pub.String()+"/<0;1>/*")
	}
	d, err := descriptor.Parse("wsh(sortedmulti(2,"+strings.Join(keys, ",")+"))", params)
	if err != nil {
		b.Fatal(err)
	}
	return d
}

func fundWallet(b *testing.B, ctx context.Context, n *devnet.Network, d *descriptor.Descriptor, count int) {
	b.Helper()
	began := time.Now()
	scripts := make([][]byte, count)
	for i := range scripts {
		pk, err := d.PkScript(0, uint32(i))
		if err != nil {
			b.Fatal(err)
		}
		scripts[i] = pk
	}
	txids, err := n.FundScripts(ctx, scripts, perScript, 0)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := n.Mine(ctx, 1); err != nil {
		b.Fatal(err)
	}
	b.Logf("funded %d scripts in %d transactions, mined, indexed: %v", count, len(txids), time.Since(began).Round(time.Millisecond))
}

func startNet(b *testing.B, cfg devnet.Config) *devnet.Network {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg.Dir = b.TempDir()
	cfg.RelayPorts = []int{}
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := devnet.Start(ctx, cfg)
	if err != nil {
		b.Fatalf("devnet.Start: %v", err)
	}
	b.Cleanup(func() { n.Close() })
	return n
}

// timedEvent is a watcher event and when the consumer received it.
type timedEvent struct {
	at time.Time
	ev chainwatch.Event
}

type benchWatcher struct {
	*chainwatch.Watcher
	cancel context.CancelFunc
	done   chan error

	mu     sync.Mutex
	events []timedEvent
}

// runWatcher starts a Watcher and returns it with the time from Run to Ready. It is stopped
// when b ends, unless stopped earlier.
func runWatcher(b *testing.B, url string, db *store.DB, src chainwatch.ScriptSource, params *chaincfg.Params, readyWithin time.Duration) (*benchWatcher, time.Duration, error) {
	b.Helper()
	logTo := io.Discard // BENCH_CHAINWATCH_LOG=1: the watchers' logs on stderr, to see where the time goes
	if os.Getenv("BENCH_CHAINWATCH_LOG") != "" {
		logTo = os.Stderr
	}
	w, err := chainwatch.New(chainwatch.Config{
		ServerURL: url, Scripts: src, DB: db, Params: params,
		Logger:       slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug})),
		ClientName:   "cosigner-bench",
		ReconnectMin: 100 * time.Millisecond,
		Electrum:     electrum.Options{RequestTimeout: 2 * time.Minute},
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	bw := &benchWatcher{Watcher: w, cancel: cancel, done: make(chan error, 1)}
	collected := make(chan struct{})
	go func() {
		for ev := range w.Events() {
			at := time.Now()
			bw.mu.Lock()
			bw.events = append(bw.events, timedEvent{at, ev})
			bw.mu.Unlock()
		}
		close(collected)
	}()
	began := time.Now()
	go func() { err := w.Run(ctx); <-collected; bw.done <- err }()
	b.Cleanup(bw.stop)
	select {
	case <-w.Ready():
		return bw, time.Since(began), nil
	case err := <-bw.done:
		bw.done = nil
		return bw, 0, fmt.Errorf("Run returned before Ready: %v", err)
	case <-time.After(readyWithin):
		return bw, 0, fmt.Errorf("not Ready after %v: %+v", readyWithin, w.Health())
	}
}

func (bw *benchWatcher) stop() {
	if bw.done == nil {
		return
	}
	bw.cancel()
	select {
	case <-bw.done:
	case <-time.After(30 * time.Second):
	}
	bw.done = nil
}

// waitEvent returns the first event since index from on that matches.
func (bw *benchWatcher) waitEvent(b *testing.B, from int, what string, match func(chainwatch.Event) bool) timedEvent {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		bw.mu.Lock()
		for _, te := range bw.events[min(from, len(bw.events)):] {
			if match(te.ev) {
				bw.mu.Unlock()
				return te
			}
		}
		bw.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	b.Fatalf("no %s within 60 s", what)
	return timedEvent{}
}

func (bw *benchWatcher) eventCount() int {
	bw.mu.Lock()
	defer bw.mu.Unlock()
	return len(bw.events)
}

// notifyTap forwards TCP connections to ElectrumX byte for byte and timestamps every
// notification line (a JSON-RPC message with a "method") it passes to the client, keyed by
// method and first parameter (the scripthash, or the header height).
type notifyTap struct {
	ln       net.Listener
	upstream string
	mu       sync.Mutex
	seen     map[string]time.Time
	wg       sync.WaitGroup
}

func newNotifyTap(b *testing.B, upstream string) *notifyTap {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	t := &notifyTap{ln: ln, upstream: upstream, seen: map[string]time.Time{}}
	t.wg.Add(1)
	go t.accept()
	b.Cleanup(func() { ln.Close(); t.wg.Wait() })
	return t
}

func (t *notifyTap) url() string { return "tcp://" + t.ln.Addr().String() }

func (t *notifyTap) accept() {
	defer t.wg.Done()
	for {
		down, err := t.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", t.upstream)
		if err != nil {
			down.Close()
			continue
		}
		t.wg.Add(2)
		go func() { defer t.wg.Done(); io.Copy(up, down); up.Close() }()
		go func() { defer t.wg.Done(); t.pipe(down, up); down.Close() }()
	}
}

func (t *notifyTap) pipe(down, up net.Conn) {
	r := bufio.NewReaderSize(up, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(line) > 0 {
			if bytes.Contains(line, []byte(`"method"`)) {
				now := time.Now()
				var msg struct {
					Method string            `json:"method"`
					Params []json.RawMessage `json:"params"`
				}
				if json.Unmarshal(line, &msg) == nil && msg.Method != "" && len(msg.Params) > 0 {
					key := msg.Method + " " + notifyKey(msg.Params[0])
					t.mu.Lock()
					if _, ok := t.seen[key]; !ok {
						t.seen[key] = now
					}
					t.mu.Unlock()
				}
			}
			if _, werr := down.Write(line); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func notifyKey(p json.RawMessage) string {
	var s string
	if json.Unmarshal(p, &s) == nil {
		return s
	}
	var h struct {
		Height int64 `json:"height"`
	}
	if json.Unmarshal(p, &h) == nil {
		return strconv.FormatInt(h.Height, 10)
	}
	return string(p)
}

func (t *notifyTap) when(key string) (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	at, ok := t.seen[key]
	return at, ok
}

// bdkScan runs e2e/clients/bdkscan.py against url and returns its report.
func bdkScan(b *testing.B, ctx context.Context, url string, d *descriptor.Descriptor) (scan, apply time.Duration, utxos int) {
	b.Helper()
	root, err := devnet.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	tools, err := devnet.ToolsDir()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(tools, "venv", "bin", "python"), filepath.Join(root, "e2e", "clients", "bdkscan.py"),
		"--descriptor", d.String(), "--electrum", url, "--network", "regtest", "--stop-gap", "20")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("bdkscan.py: %v\n%s", err, stderr.String())
	}
	var rep struct {
		Scan  float64 `json:"scan_seconds"`
		Apply float64 `json:"apply_seconds"`
		UTXOs int     `json:"utxos"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		b.Fatalf("bdkscan.py output %q: %v", out, err)
	}
	return time.Duration(rep.Scan * float64(time.Second)), time.Duration(rep.Apply * float64(time.Second)), rep.UTXOs
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1)*p + 0.5)
	return s[i]
}

// ms is d in milliseconds, for b.ReportMetric figures named *_ms.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// rssBytes is this process's resident set size (VmRSS of /proc/self/status), 0 where unknown.
func rssBytes() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}

// BenchmarkChainwatch measures chainwatch against ElectrumX and BDK; see the file comment.
func BenchmarkChainwatch(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local test network (make bench)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	n := startNet(b, devnet.Config{ElectrumNoCostLimits: true})
	params := n.Params()
	d := benchDescriptor(b, params, 1)
	fundWallet(b, ctx, n, d, bigWallet)
	dir := b.TempDir()
	openDB := func(name string) *store.DB {
		db, err := store.Open(ctx, filepath.Join(dir, name))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		return db
	}

	var syncedDB, unackedDB *store.DB
	b.Run("InitialSync", func(b *testing.B) {
		var ours, bdk []time.Duration
		for run := range 2 {
			db := openDB(fmt.Sprintf("sync-%d.db", run))
			w, took, err := runWatcher(b, n.ElectrumURL(), db, d, params, 10*time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if got := len(w.UTXOs()); got != bigWallet {
				b.Fatalf("cosigner found %d UTXOs, want %d", got, bigWallet)
			}
			ours = append(ours, took)
			w.stop()
			if run == 0 {
				syncedDB = db
			} else {
				unackedDB = db
			}
			scan, apply, utxos := bdkScan(b, ctx, n.ElectrumURL(), d)
			if utxos != bigWallet {
				b.Fatalf("BDK found %d UTXOs, want %d", utxos, bigWallet)
			}
			bdk = append(bdk, scan+apply)
			b.Logf("run %d: cosigner %v; BDK full_scan %v + apply_update %v", run+1, took.Round(time.Millisecond), scan.Round(time.Millisecond), apply.Round(time.Millisecond))
		}
		best, bdkBest := slices.Min(ours), slices.Min(bdk)
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(best.Seconds(), "cosigner_s")
		b.ReportMetric(bdkBest.Seconds(), "bdk_s")
		b.ReportMetric(bdkBest.Seconds()/best.Seconds(), "bdk/cosigner")
		b.ReportMetric(float64(bigWallet)/best.Seconds(), "scripts/s")
	})
	if syncedDB == nil {
		return
	}

	// The consumer has handled (acknowledged) every event of the initial sync.
	if _, err := syncedDB.SQL.ExecContext(ctx, `DELETE FROM chainwatch_events`); err != nil {
		b.Fatal(err)
	}
	restarts := func(b *testing.B, db *store.DB, wantEvents int) []time.Duration {
		var samples []time.Duration
		for i := range restartN {
			w, took, err := runWatcher(b, n.ElectrumURL(), db, d, params, 5*time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if got, h := len(w.UTXOs()), w.Health(); got != bigWallet || h.HistoryFetches != 0 {
				b.Fatalf("restart %d: %d UTXOs, %d histories fetched; want %d and 0", i, got, h.HistoryFetches, bigWallet)
			}
			samples = append(samples, took)
			// The stored events are delivered again while the watcher syncs; all of them come.
			for deadline := time.Now().Add(time.Minute); w.eventCount() < wantEvents; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					b.Fatalf("restart %d: %d events delivered again within a minute, want at least %d", i, w.eventCount(), wantEvents)
				}
			}
			w.stop()
		}
		return samples
	}
	b.Run("RestartToReady", func(b *testing.B) {
		samples := restarts(b, syncedDB, 0)
		var unacked []time.Duration
		if unackedDB != nil {
			unacked = restarts(b, unackedDB, 2*bigWallet)
		}
		b.Logf("restart-to-ready samples: %v; with the initial sync's events unacknowledged: %v", samples, unacked)
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(percentile(samples, 0.5).Seconds(), "p50_s")
		b.ReportMetric(slices.Max(samples).Seconds(), "max_s")
		if len(unacked) > 0 {
			b.ReportMetric(percentile(unacked, 0.5).Seconds(), "unacked_p50_s")
		}
	})

	// The watcher for the idle and latency figures: restarted on the synced store, connected
	// through the tap that timestamps notifications.
	tap := newNotifyTap(b, n.ElectrumAddr())
	synced, _, err := runWatcher(b, tap.url(), syncedDB, d, params, 5*time.Minute)
	if err != nil {
		b.Fatal(err)
	}

	b.Run("IdleRSS", func(b *testing.B) {
		runtime.GC()
		debug.FreeOSMemory()
		time.Sleep(2 * time.Second)
		var mem runtime.MemStats
		runtime.ReadMemStats(&mem)
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(float64(rssBytes())/(1<<20), "rss_MiB")
		b.ReportMetric(float64(mem.HeapInuse)/(1<<20), "heap_inuse_MiB")
	})

	b.Run("NotifyToEvent", func(b *testing.B) {
		var funding, tip, fundingFromSubmit, tipFromMine []time.Duration
		for i := range latencyN {
			idx := uint32(bigWallet + i)
			pk, err := d.PkScript(0, idx)
			if err != nil {
				b.Fatal(err)
			}
			from := synced.eventCount()
			submitted := time.Now()
			tx, err := n.FundOutputs(ctx, []*wire.TxOut{wire.NewTxOut(perScript, pk)}, devnet.FundOptions{})
			if err != nil {
				b.Fatal(err)
			}
			op := wire.OutPoint{Hash: tx.TxHash(), Index: 0}
			te := synced.waitEvent(b, from, "FundingSeen", func(ev chainwatch.Event) bool {
				f, ok := ev.(chainwatch.FundingSeen)
				return ok && f.UTXO.OutPoint == op
			})
			at, ok := tap.when("blockchain.scripthash.subscribe " + chainwatch.ScriptHash(pk))
			if !ok {
				b.Fatalf("sample %d: FundingSeen without a scripthash notification through the tap", i)
			}
			funding = append(funding, te.at.Sub(at))
			fundingFromSubmit = append(fundingFromSubmit, te.at.Sub(submitted))

			from = synced.eventCount()
			mined := time.Now()
			hs, err := n.Generate(ctx, 1)
			if err != nil {
				b.Fatal(err)
			}
			te = synced.waitEvent(b, from, "NewTip", func(ev chainwatch.Event) bool {
				t, ok := ev.(chainwatch.NewTip)
				return ok && t.Tip.Hash == hs[0]
			})
			_, height, err := n.RPC().GetBestBlock()
			if err != nil {
				b.Fatal(err)
			}
			at, ok = tap.when("blockchain.headers.subscribe " + strconv.Itoa(int(height)))
			if !ok {
				b.Fatalf("sample %d: NewTip without a header notification through the tap", i)
			}
			tip = append(tip, te.at.Sub(at))
			tipFromMine = append(tipFromMine, te.at.Sub(mined))
		}
		b.Logf("notification → FundingSeen p90 %v, max %v", percentile(funding, 0.9), slices.Max(funding))
		b.Logf("from submission (includes ElectrumX's 100 ms polling): funding p50 %v p99 %v; tip p50 %v p99 %v",
			percentile(fundingFromSubmit, 0.5), percentile(fundingFromSubmit, 0.99), percentile(tipFromMine, 0.5), percentile(tipFromMine, 0.99))
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(ms(percentile(funding, 0.5)), "funding_p50_ms")
		b.ReportMetric(ms(percentile(funding, 0.99)), "funding_p99_ms")
		b.ReportMetric(ms(percentile(tip, 0.5)), "tip_p50_ms")
		b.ReportMetric(ms(percentile(tip, 0.99)), "tip_p99_ms")
		b.ReportMetric(ms(percentile(fundingFromSubmit, 0.5)), "funding_from_submit_p50_ms")
	})
	synced.stop()

	// Under ElectrumX's default cost limits: a separate server (limits are per server).
	b.Run("DefaultLimitsSync2k", func(b *testing.B) {
		dn := startNet(b, devnet.Config{})
		dd := benchDescriptor(b, dn.Params(), 11)
		fundWallet(b, ctx, dn, dd, defaultLimits)
		db, err := store.Open(ctx, filepath.Join(b.TempDir(), "default.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		w, took, err := runWatcher(b, dn.ElectrumURL(), db, dd, dn.Params(), 15*time.Minute)
		if err != nil {
			b.Fatalf("%d scripts under default cost limits: %v", defaultLimits, err)
		}
		if got := len(w.UTXOs()); got != defaultLimits {
			b.Fatalf("found %d UTXOs, want %d", got, defaultLimits)
		}
		w.stop()
		scan, apply, utxos := bdkScan(b, ctx, dn.ElectrumURL(), dd)
		if utxos != defaultLimits {
			b.Fatalf("BDK found %d UTXOs, want %d", utxos, defaultLimits)
		}
		b.Logf("%d scripts under ElectrumX default cost limits: cosigner %v, BDK %v", defaultLimits, took.Round(time.Millisecond), (scan + apply).Round(time.Millisecond))
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(took.Seconds(), "cosigner_s")
		b.ReportMetric((scan + apply).Seconds(), "bdk_s")
	})
}
