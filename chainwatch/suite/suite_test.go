package suite

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/internal/devnet"
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
