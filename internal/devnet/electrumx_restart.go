package devnet

// electrumx_restart.go — stopping and starting ElectrumX while the rest of
// the network runs (clients see the server go away mid-stream), and its cost
// limits.

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// electrumCostEnv is the cost-limit part of ElectrumX's environment: empty
// (ElectrumX's defaults) unless Config.ElectrumNoCostLimits.
func (n *Network) electrumCostEnv() []string {
	if n.electrumNoCostLimits {
		return []string{"COST_SOFT_LIMIT=0", "COST_HARD_LIMIT=0"}
	}
	return nil
}

// exRestartMu serialises StopElectrumX and StartElectrumX of all networks
// (they are rare; one lock keeps Network's layout untouched).
var exRestartMu sync.Mutex

// StopElectrumX stops ElectrumX (SIGTERM, then SIGKILL after 10 s), keeping
// its database, so that every Electrum client loses its connection. The port
// stays reserved for StartElectrumX. It is a no-op when ElectrumX is already
// stopped. It must not run concurrently with Mine, Reorg or Close.
func (n *Network) StopElectrumX(ctx context.Context) error {
	if err := n.checkOpen(); err != nil {
		return err
	}
	exRestartMu.Lock()
	defer exRestartMu.Unlock()
	n.ecMu.Lock()
	if n.ec != nil {
		n.ec.Close()
		n.ec = nil
	}
	n.ecMu.Unlock()
	if n.electrumx == nil || n.electrumx.exited() {
		return nil
	}
	if err := n.electrumx.stop(10 * time.Second); err != nil {
		return fmt.Errorf("devnet: stopping electrumx: %w", err)
	}
	n.log.Info("electrumx stopped", "port", n.electrumPort)
	return nil
}

// StartElectrumX starts ElectrumX again on the same port and database after
// StopElectrumX, and returns once it serves btcd's tip (it catches up on
// blocks mined while it was down). It must not run concurrently with Mine,
// Reorg or Close. Starting a running ElectrumX is an error.
func (n *Network) StartElectrumX(ctx context.Context) error {
	if err := n.checkOpen(); err != nil {
		return err
	}
	exRestartMu.Lock()
	defer exRestartMu.Unlock()
	if n.electrumx != nil && !n.electrumx.exited() {
		return fmt.Errorf("devnet: StartElectrumX: electrumx is running (pid %d)", n.electrumx.cmd.Process.Pid)
	}
	// The port was just released; a listener in TIME_WAIT does not stop
	// ElectrumX (asyncio sets SO_REUSEADDR), but another process may have
	// taken it meanwhile, which pickPort reports.
	if _, err := pickPort("electrumx", n.electrumPort); err != nil {
		return err
	}
	began := time.Now()
	if err := n.startElectrumX(ctx); err != nil {
		return err
	}
	n.log.Info("electrumx restarted", "port", n.electrumPort, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// RestartElectrumX is StopElectrumX then StartElectrumX: clients are cut off
// mid-stream and the server comes back on the same port with the same index.
func (n *Network) RestartElectrumX(ctx context.Context) error {
	if err := n.StopElectrumX(ctx); err != nil {
		return err
	}
	return n.StartElectrumX(ctx)
}
