package bench

// chainwatch_test.go — chainwatch's figures (docs/benchmarks.md; issues 3 and 15), side by
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
//   - a 2,000-script sync under ElectrumX's default cost limits (as deployed servers run);
//   - a 50,000-script wallet ($BENCH_CHAINWATCH_LARGE; 0 skips it): one sync against one BDK
//     scan, then the memory a restarted watcher holds per script, the RSS of a process holding
//     only that watcher (TestWatcherProcessHelper) and the SQLite bytes per script.
//
// The sync and restart figures log each process's CPU (this process, ElectrumX, bdkscan.py),
// read from /proc. Rows of docs/benchmarks.md's table: sync-10k, sync-50k, restart-10k,
// watcher-memory; BenchmarkChainwatchHeaders (at the end of this file) writes
// headers-mainnet-restart.

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
	"github.com/custodyagents/cosigner/internal/synthchain"
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

// watcherSource parses d again for a watcher, as a daemon does at start: the funding step's
// derivations, cached in d, must not make the watcher's sync look cheaper than it is.
func watcherSource(b *testing.B, d *descriptor.Descriptor) *descriptor.Descriptor {
	b.Helper()
	fresh, err := descriptor.Parse(d.String(), d.Network())
	if err != nil {
		b.Fatal(err)
	}
	return fresh
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
	scan, apply, utxos, err := bdkScanErr(b, ctx, url, d)
	if err != nil {
		b.Fatal(err)
	}
	return scan, apply, utxos
}

// bdkScanErr is bdkScan returning bdkscan.py's failure.
func bdkScanErr(b *testing.B, ctx context.Context, url string, d *descriptor.Descriptor) (scan, apply time.Duration, utxos int, err error) {
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
		return 0, 0, 0, fmt.Errorf("bdkscan.py: %v\n%s", err, stderr.String())
	}
	b.Logf("bdkscan.py process CPU %v", (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Round(time.Millisecond))
	var rep struct {
		Scan  float64 `json:"scan_seconds"`
		Apply float64 `json:"apply_seconds"`
		UTXOs int     `json:"utxos"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		return 0, 0, 0, fmt.Errorf("bdkscan.py output %q: %v", out, err)
	}
	return time.Duration(rep.Scan * float64(time.Second)), time.Duration(rep.Apply * float64(time.Second)), rep.UTXOs, nil
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
	exPID := electrumXPID(n)
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
			cpu0, ex0 := selfCPU(), cpuOf(exPID)
			w, took, err := runWatcher(b, n.ElectrumURL(), db, watcherSource(b, d), params, 10*time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			b.Logf("run %d: cosigner process CPU %v, ElectrumX CPU %v during the sync", run+1, (selfCPU() - cpu0).Round(time.Millisecond), (cpuOf(exPID) - ex0).Round(time.Millisecond))
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
			ex0 = cpuOf(exPID)
			scan, apply, utxos := bdkScan(b, ctx, n.ElectrumURL(), d)
			if utxos != bigWallet {
				b.Fatalf("BDK found %d UTXOs, want %d", utxos, bigWallet)
			}
			b.Logf("run %d: ElectrumX CPU %v during BDK's scan", run+1, (cpuOf(exPID) - ex0).Round(time.Millisecond))
			bdk = append(bdk, scan+apply)
			b.Logf("run %d: cosigner %v; BDK full_scan %v + apply_update %v", run+1, took.Round(time.Millisecond), scan.Round(time.Millisecond), apply.Round(time.Millisecond))
		}
		best, bdkBest := slices.Min(ours), slices.Min(bdk)
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(best.Seconds(), "cosigner_s")
		b.ReportMetric(bdkBest.Seconds(), "bdk_s")
		b.ReportMetric(bdkBest.Seconds()/best.Seconds(), "bdk/cosigner")
		b.ReportMetric(float64(bigWallet)/best.Seconds(), "scripts/s")
		recordSync(fmt.Sprintf("sync-%dk", bigWallet/1000), bigWallet, "best of 2", best, bdkBest)
	})
	if syncedDB == nil {
		return
	}

	// The consumer has handled (acknowledged) every event of the initial sync.
	if _, err := syncedDB.SQL.ExecContext(ctx, `DELETE FROM chainwatch_events`); err != nil {
		b.Fatal(err)
	}
	var exRestart, selfRestart []time.Duration // CPU per restart: ElectrumX, this process
	restarts := func(b *testing.B, db *store.DB, wantEvents int) []time.Duration {
		var samples []time.Duration
		for i := range restartN {
			cpu0, ex0 := selfCPU(), cpuOf(exPID)
			w, took, err := runWatcher(b, n.ElectrumURL(), db, watcherSource(b, d), params, 5*time.Minute)
			if wantEvents == 0 {
				selfRestart, exRestart = append(selfRestart, selfCPU()-cpu0), append(exRestart, cpuOf(exPID)-ex0)
			}
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
		p50 := percentile(samples, 0.5)
		b.Logf("CPU per restart: ElectrumX %v, this process %v", exRestart, selfRestart)
		Record(Row{
			Key:      "restart-10k",
			Figure:   fmt.Sprintf("restart to ready, %s scripts, nothing new (p50 of %d)", thousands(bigWallet), len(samples)),
			Value:    fmt.Sprintf("%.2f s p50 (max %.2f s)", p50.Seconds(), slices.Max(samples).Seconds()),
			Baseline: fmt.Sprintf("ElectrumX CPU %.2f s, cosigner process CPU %.2f s per restart (p50)", percentile(exRestart, 0.5).Seconds(), percentile(selfRestart, 0.5).Seconds()),
			Ratio:    "—",
			Goal:     "< 3 s",
			Met:      MetIf(p50 < 3*time.Second),
		})
	})

	// The watcher for the idle and latency figures: restarted on the synced store, connected
	// through the tap that timestamps notifications.
	tap := newNotifyTap(b, n.ElectrumAddr())
	synced, _, err := runWatcher(b, tap.url(), syncedDB, watcherSource(b, d), params, 5*time.Minute)
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

	b.Run("LargeWallet", func(b *testing.B) {
		if largeWallet == 0 {
			b.Skip("BENCH_CHAINWATCH_LARGE=0")
		}
		largeSync(b, ctx, n, exPID, openDB)
	})
}

// largeWallet is the number of used receive scripts of the large-wallet sync and of the memory
// figure: 50,000, or $BENCH_CHAINWATCH_LARGE (0 skips it).
var largeWallet = func() int {
	if v, err := strconv.Atoi(os.Getenv("BENCH_CHAINWATCH_LARGE")); err == nil && v >= 0 {
		return v
	}
	return 50_000
}()

// largeSync syncs a wallet of largeWallet used scripts once with chainwatch and once with BDK
// (row sync-50k), then measures the memory a restarted watcher holds (row watcher-memory): the
// heap still allocated after a GC with the watcher ready, minus the same before it was created,
// per script; this process's RSS then (an upper bound: the harness is included); and the SQLite
// database's size per script.
func largeSync(b *testing.B, ctx context.Context, n *devnet.Network, exPID int, openDB func(string) *store.DB) {
	d := benchDescriptor(b, n.Params(), 31)
	fundWallet(b, ctx, n, d, largeWallet)
	db := openDB("large.db")
	cpu0, ex0 := selfCPU(), cpuOf(exPID)
	w, took, err := runWatcher(b, n.ElectrumURL(), db, watcherSource(b, d), n.Params(), 20*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	if got := len(w.UTXOs()); got != largeWallet {
		b.Fatalf("cosigner found %d UTXOs, want %d", got, largeWallet)
	}
	w.stop()
	b.Logf("cosigner %v (process CPU %v, ElectrumX CPU %v)", took.Round(time.Millisecond), (selfCPU() - cpu0).Round(time.Millisecond), (cpuOf(exPID) - ex0).Round(time.Millisecond))

	// The events of the sync are handled (acknowledged) by now in a daemon.
	if _, err := db.SQL.ExecContext(ctx, `DELETE FROM chainwatch_events`); err != nil {
		b.Fatal(err)
	}
	if _, err := db.SQL.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		b.Fatal(err)
	}
	before := heapAfterGC()
	w, _, err = runWatcher(b, n.ElectrumURL(), db, watcherSource(b, d), n.Params(), 5*time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	held := heapAfterGC() - before
	debug.FreeOSMemory()
	rss := rssBytes()
	if got := len(w.UTXOs()); got != largeWallet {
		b.Fatalf("restarted: %d UTXOs, want %d", got, largeWallet)
	}
	scripts := w.Health().ScriptsTracked
	w.stop()
	var dbBytes int64
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(filepath.Join(filepath.Dir(dbPath(b, db)), "large.db"+suffix)); err == nil {
			dbBytes += fi.Size()
		}
	}
	perScript := float64(held) / float64(scripts)
	sqlPerScript := float64(dbBytes) / float64(scripts)
	b.Logf("restarted watcher of %d scripts holds %.1f MiB (%.0f B/script); RSS of this process %.1f MiB; SQLite %.1f MiB (%.0f B/script)",
		scripts, float64(held)/(1<<20), perScript, float64(rss)/(1<<20), float64(dbBytes)/(1<<20), sqlPerScript)
	// The same restart in a process of its own: its RSS is the watcher's (and the Go runtime's).
	if child, err := watcherProcess(ctx, dbPath(b, db), n.ElectrumURL(), d.String()); err != nil {
		b.Logf("watcher process: %v (the row keeps this process's RSS)", err)
	} else {
		b.Logf("a process holding only the restarted watcher: RSS %.1f MiB, heap %.1f MiB, ready in %.2f s", float64(child.RSS)/(1<<20), float64(child.Heap)/(1<<20), child.Ready)
		rss = child.RSS
	}
	b.ReportMetric(perScript, "heap_B/script")
	b.ReportMetric(float64(rss)/(1<<20), "rss_MiB")
	Record(Row{
		Key:      "watcher-memory",
		Figure:   fmt.Sprintf("memory held by the watcher, %s scripts (restarted; RSS of a process holding only it)", thousands(scripts)),
		Value:    fmt.Sprintf("%.0f B/script (%.1f MiB); RSS %.0f MiB", perScript, float64(held)/(1<<20), float64(rss)/(1<<20)),
		Baseline: fmt.Sprintf("SQLite %.0f B/script", sqlPerScript),
		Ratio:    fmt.Sprintf("%.2f× SQLite", perScript/sqlPerScript),
		Goal:     "≤ 1 KB/script; RSS < 80 MB",
		Met:      MetIf(perScript <= 1024 && rss < 80_000_000),
	})

	// BDK on the same wallet and server (a second try when it fails: its Electrum client gives
	// up on a server slowed by a loaded machine).
	var scan, apply time.Duration
	var utxos int
	for try := range 2 {
		ex0 = cpuOf(exPID)
		if scan, apply, utxos, err = bdkScanErr(b, ctx, n.ElectrumURL(), d); err == nil {
			break
		}
		b.Logf("BDK try %d: %v", try+1, err)
	}
	if err != nil {
		b.Fatal(err)
	}
	if utxos != largeWallet {
		b.Fatalf("BDK found %d UTXOs, want %d", utxos, largeWallet)
	}
	b.Logf("BDK full_scan %v + apply_update %v (ElectrumX CPU %v)", scan.Round(time.Millisecond), apply.Round(time.Millisecond), (cpuOf(exPID) - ex0).Round(time.Millisecond))
	recordSync(fmt.Sprintf("sync-%dk", largeWallet/1000), largeWallet, "one run", took, scan+apply)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(took.Seconds(), "cosigner_s")
	b.ReportMetric((scan + apply).Seconds(), "bdk_s")
}

// watcherReport is what TestWatcherProcessHelper prints.
type watcherReport struct {
	RSS   int64   `json:"rss"`
	Heap  int64   `json:"heap"`
	Ready float64 `json:"ready_s"`
}

// watcherProcess runs TestWatcherProcessHelper in a child process (this test binary) on the
// synced database file dbFile and returns its report.
func watcherProcess(ctx context.Context, dbFile, url, desc string) (watcherReport, error) {
	var rep watcherReport
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run", "^TestWatcherProcessHelper$")
	cmd.Env = append(os.Environ(), "BENCH_TABLE=0", "COSIGNER_BENCH_WATCHER_DB="+dbFile, "COSIGNER_BENCH_WATCHER_URL="+url, "COSIGNER_BENCH_WATCHER_DESCRIPTOR="+desc)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return rep, fmt.Errorf("%v: %s%s", err, out, stderr.String())
	}
	for _, line := range strings.Split(string(out), "\n") {
		if json.Unmarshal([]byte(line), &rep) == nil && rep.RSS > 0 {
			return rep, nil
		}
	}
	return rep, fmt.Errorf("no report in %q", out)
}

// TestWatcherProcessHelper is not a test: largeSync runs it in a child process so that the RSS
// of a process holding only a restarted watcher can be read. It restarts a watcher on
// $COSIGNER_BENCH_WATCHER_DB against $COSIGNER_BENCH_WATCHER_URL, waits for Ready, and prints
// one JSON line (watcherReport).
func TestWatcherProcessHelper(t *testing.T) {
	file := os.Getenv("COSIGNER_BENCH_WATCHER_DB")
	if file == "" {
		t.Skip("helper process for BenchmarkChainwatch")
	}
	ctx := context.Background()
	params := &chaincfg.RegressionNetParams
	d, err := descriptor.Parse(os.Getenv("COSIGNER_BENCH_WATCHER_DESCRIPTOR"), params)
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(ctx, file)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w, err := chainwatch.New(chainwatch.Config{ServerURL: os.Getenv("COSIGNER_BENCH_WATCHER_URL"), Scripts: d, DB: db, Params: params,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Electrum: electrum.Options{RequestTimeout: 2 * time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		for range w.Events() {
		}
	}()
	began := time.Now()
	go func() { done <- w.Run(rctx) }()
	select {
	case <-w.Ready():
	case err := <-done:
		t.Fatalf("Run returned before Ready: %v", err)
	case <-time.After(5 * time.Minute):
		t.Fatal("not ready after 5 minutes")
	}
	ready := time.Since(began)
	heap := heapAfterGC()
	debug.FreeOSMemory()
	time.Sleep(time.Second)
	line, _ := json.Marshal(watcherReport{RSS: rssBytes(), Heap: heap, Ready: ready.Seconds()})
	fmt.Println(string(line))
	cancel()
	<-done
}

// dbPath is the file a store was opened on.
func dbPath(b *testing.B, db *store.DB) string {
	b.Helper()
	var seq int
	var name, file string
	if err := db.SQL.QueryRow(`PRAGMA database_list`).Scan(&seq, &name, &file); err != nil {
		b.Fatal(err)
	}
	return file
}

// recordSync records a sync row: cosigner's time against BDK's in the same run.
func recordSync(key string, scripts int, how string, ours, bdk time.Duration) {
	ratio := bdk.Seconds() / ours.Seconds()
	Record(Row{
		Key:      key,
		Figure:   fmt.Sprintf("initial sync, %s used scripts (%s)", thousands(scripts), how),
		Value:    fmt.Sprintf("%.1f s", ours.Seconds()),
		Baseline: fmt.Sprintf("bdkpython full_scan+apply_update %.1f s", bdk.Seconds()),
		Ratio:    fmt.Sprintf("%.1f× faster", ratio),
		Goal:     "≥ 3×",
		Met:      MetIf(ratio >= 3),
	})
}

// thousands formats n with commas (10000 → "10,000").
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// heapAfterGC is the live heap after two collections.
func heapAfterGC() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// cpuOf is the user+system CPU time process pid has used (procCPU), 0 when unknown (pid ≤ 0,
// the process gone).
func cpuOf(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	d, err := procCPU(pid)
	if err != nil {
		return 0
	}
	return d
}

// selfCPU is this process's CPU time.
func selfCPU() time.Duration { return cpuOf(os.Getpid()) }

// electrumXPID finds the ElectrumX process of n (its environment names n's database
// directory); 0 when it cannot (the CPU figures then read 0).
func electrumXPID(n *devnet.Network) int {
	want := []byte("DB_DIRECTORY=" + filepath.Join(n.Dir(), "electrumx-db") + "\x00")
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, want) {
			return pid
		}
	}
	return 0
}

// BenchmarkChainwatchHeaders measures what a mainnet-length header chain adds to a restart
// (row headers-mainnet-restart): a wallet synced on a synthetic chain of 930,000 blocks shaped
// like mainnet (internal/synthchain: 2016-block periods, Core's retarget rule, checkpoints up
// to the last whole period at least 2,016 blocks below the tip; payments below and above them)
// is restarted, and so is the same wallet on a 450-block chain (regtest's length, no
// checkpoints); from Run to Ready, and the heap the restarted watcher holds (after a GC, minus
// the heap before it was created). Both servers run in this process.
func BenchmarkChainwatchHeaders(b *testing.B) {
	const mainnetLength, regtestLength = 930_000, 450
	probe, err := synthchain.New(0, nil) // the params (genesis) do not depend on the length
	if err != nil {
		b.Fatal(err)
	}
	d := benchDescriptor(b, probe.Params, 41)
	measure := func(b *testing.B, height int32, pays []int32) (ready time.Duration, held int64) {
		txs := map[int32][]*wire.MsgTx{}
		for i, h := range pays {
			pk, err := d.PkScript(0, uint32(i))
			if err != nil {
				b.Fatal(err)
			}
			tx := wire.NewMsgTx(2)
			tx.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: [32]byte{byte(i + 1), 0xee}}, Sequence: 0xffffffff})
			tx.AddTxOut(wire.NewTxOut(int64(100_000*(i+1)), pk))
			txs[h] = append(txs[h], tx)
		}
		c, err := synthchain.New(height, txs)
		if err != nil {
			b.Fatal(err)
		}
		var cps *chainwatch.Checkpoints
		if list := c.Checkpoints(height - synthchain.Interval); len(list) > 0 {
			raw, _ := json.Marshal(list)
			if cps, err = chainwatch.ParseCheckpoints(raw); err != nil {
				b.Fatal(err)
			}
		}
		srv, err := synthchain.Serve(c)
		if err != nil {
			b.Fatal(err)
		}
		defer srv.Close()
		db, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "headers.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		start := func() (*synthWatcher, time.Duration) {
			w, err := chainwatch.New(chainwatch.Config{
				ServerURL: srv.URL(), Scripts: watcherSource(b, d), DB: db, Params: c.Params, Checkpoints: cps,
				Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
				Electrum: electrum.Options{RequestTimeout: time.Minute},
			})
			if err != nil {
				b.Fatal(err)
			}
			sw := &synthWatcher{w: w, done: make(chan error, 1)}
			ctx, cancel := context.WithCancel(context.Background())
			sw.cancel = cancel
			go func() {
				for range w.Events() {
				}
			}()
			began := time.Now()
			go func() { sw.done <- w.Run(ctx) }()
			select {
			case <-w.Ready():
			case err := <-sw.done:
				b.Fatalf("Run returned before Ready: %v", err)
			case <-time.After(5 * time.Minute):
				b.Fatalf("not ready after 5 minutes: %+v", w.Health())
			}
			return sw, time.Since(began)
		}
		first, _ := start() // the initial sync
		if got := len(first.w.UTXOs()); got != len(pays) {
			b.Fatalf("chain of %d: %d UTXOs, want %d", height, got, len(pays))
		}
		first.stop(b)
		var samples []time.Duration
		var helds []int64
		for range restartN {
			before := heapAfterGC()
			w, took := start()
			helds = append(helds, heapAfterGC()-before)
			samples = append(samples, took)
			if h := w.w.Health(); h.Tip.Height != height || h.Unproven != 0 {
				b.Fatalf("restarted on the chain of %d: %+v", height, h)
			}
			w.stop(b)
		}
		slices.Sort(helds)
		return percentile(samples, 0.5), helds[len(helds)/2]
	}
	b.ReportMetric(0, "ns/op")
	mainReady, mainHeld := measure(b, mainnetLength, []int32{500_000, 500_100, mainnetLength - 1_000})
	regReady, regHeld := measure(b, regtestLength, []int32{100, 200, regtestLength - 10})
	dt, dm := mainReady-regReady, float64(mainHeld-regHeld)/(1<<20)
	b.Logf("restart to ready p50: mainnet length %v (holds %.1f MiB), regtest length %v (holds %.1f MiB)",
		mainReady.Round(time.Millisecond), float64(mainHeld)/(1<<20), regReady.Round(time.Millisecond), float64(regHeld)/(1<<20))
	b.ReportMetric(dt.Seconds(), "added_s")
	b.ReportMetric(dm, "added_heap_MiB")
	Record(Row{
		Key:      "headers-mainnet-restart",
		Figure:   "restart to ready on a mainnet-length chain (930,000 synthetic headers, checkpoints) minus the same on a regtest-length chain (450)",
		Value:    fmt.Sprintf("%+.2f s, %+.1f MiB heap held", dt.Seconds(), dm),
		Baseline: fmt.Sprintf("regtest length: %.2f s, %.1f MiB", regReady.Seconds(), float64(regHeld)/(1<<20)),
		Ratio:    fmt.Sprintf("%.2f× the time", mainReady.Seconds()/regReady.Seconds()),
		Goal:     "≤ 0.2 s and ≤ 35 MiB added",
		Met:      MetIf(dt <= 200*time.Millisecond && dm <= 35),
	})
}

// synthWatcher is a running watcher of BenchmarkChainwatchHeaders.
type synthWatcher struct {
	w      *chainwatch.Watcher
	cancel context.CancelFunc
	done   chan error
}

func (s *synthWatcher) stop(b *testing.B) {
	s.cancel()
	if err := <-s.done; err != nil {
		b.Fatalf("Run: %v", err)
	}
}
