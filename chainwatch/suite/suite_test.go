package suite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/store"
)

func startDevnet(t *testing.T, cfg devnet.Config) *devnet.Network {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cfg.Dir = t.TempDir()
	cfg.RelayPorts = []int{}
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	net, err := devnet.Start(ctx, cfg)
	if errors.Is(err, devnet.ErrToolMissing) {
		t.Fatalf("devnet.Start: %v (the local test network needs its tools: run scripts/install-tools.sh)", err)
	}
	if err != nil {
		t.Fatalf("devnet.Start: %v", err)
	}
	t.Cleanup(func() { net.Close() })
	return net
}

// TestInterfaces runs the suite against every backend: ElectrumX on the local test network over
// plain TCP and over TLS (its certificate pinned). Its cost limits are lifted so that the 2,000-script case takes seconds; every other
// case stays far below ElectrumX's default soft limit anyway (see TestDefaultCostLimits for a
// sync under the defaults).
func TestInterfaces(t *testing.T) {
	net := startDevnet(t, devnet.Config{ElectrumNoCostLimits: true})
	Run(t, ElectrumX{Net: net})
	Run(t, ElectrumXTLS{ElectrumX{Net: net}})
}

// TestInterfacesElectrs runs the suite against electrs 0.12 (beside ElectrumX on a network of
// its own, so that an electrs failure never hides the ElectrumX results). A missing electrs
// fails the test.
func TestInterfacesElectrs(t *testing.T) {
	net := startDevnet(t, devnet.Config{ElectrumNoCostLimits: true, Electrs: true})
	Run(t, Electrs{ElectrumX{Net: net}})
}

// TestDefaultCostLimits: a wallet of 1,000 used scripts syncs from ElectrumX with its default
// cost limits (soft 1,000, hard 10,000), as a deployed server has them: ElectrumX delays each
// request once the session's cost passes the soft limit, and the watcher must still finish
// with the node's truth.
func TestDefaultCostLimits(t *testing.T) {
	net := startDevnet(t, devnet.Config{})
	RunCase(t, ElectrumX{Net: net}, ManyScripts(1000))
}

// TestWatcherChildProcess is the watcher process of the case "watcher killed (SIGKILL) and
// restarted mid-stream" (see ChildMain); without CHAINWATCH_SUITE_CHILD it does nothing.
func TestWatcherChildProcess(t *testing.T) {
	if ChildMain() {
		t.Fatal("ChildMain returned")
	}
}

// recordingTB runs harness code as a test would, recording what it reports: Fatalf ends the
// goroutine (as testing.T's does) and Cleanup functions run when the caller says.
type recordingTB struct {
	testing.TB
	mu       sync.Mutex
	reports  []string
	cleanups []func()
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, fmt.Sprintf(format, args...))
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}
func (r *recordingTB) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }

// offlineBackend is enough of a Backend for a watcher that stops before it connects.
type offlineBackend struct{ Backend }

func (offlineBackend) ServerURL() string        { return "tcp://127.0.0.1:1" }
func (offlineBackend) Params() *chaincfg.Params { return &chaincfg.RegressionNetParams }

// TestStartWatcherReportsAnEarlyEndOnce: a watcher whose Run returns before Ready (here: its
// store belongs to another wallet) fails the test once, with Run's error, and the cleanup's Stop
// neither waits for a second result that never comes nor reports the error again.
func TestStartWatcherReportsAnEarlyEndOnce(t *testing.T) {
	ctx := context.Background()
	db := OpenStore(t, t.TempDir(), "cw.db")
	other, err := NewWallet(&chaincfg.RegressionNetParams, 1)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := other.PkScript(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyChainwatchUpdate(ctx, store.ChainwatchUpdate{PutScripts: []store.ChainwatchScript{{ScriptHash: chainwatch.ScriptHash(pk), PkScript: pk}}}); err != nil {
		t.Fatal(err)
	}
	wallet, err := NewWallet(&chaincfg.RegressionNetParams, 2)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		StartWatcher(rec, offlineBackend{}, db, wallet, WatcherOptions{})
	}()
	<-done
	for i := len(rec.cleanups) - 1; i >= 0; i-- {
		rec.cleanups[i]()
	}
	if len(rec.reports) != 1 || !strings.Contains(rec.reports[0], "Run returned before Ready") || !strings.Contains(rec.reports[0], "different wallet") {
		t.Fatalf("reported %q, want Run's ErrWalletMismatch once", rec.reports)
	}
}
