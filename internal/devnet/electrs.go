package devnet

// electrs.go — electrs 0.12 as a second Electrum server beside ElectrumX
// (Config.Electrs), indexing btcd through the compatibility proxy: its JSON-RPC
// calls and the Bitcoin Core REST paths it reads blocks with (see
// rpcproxy.go and rpcproxy_rest.go). electrs speaks Electrum protocol 1.4 only.
//
// Flags used (electrs 0.12, internal/config_specification.toml):
// --skip-default-conf-files, --network regtest, --daemon-rpc-addr (the proxy,
// for both JSON-RPC and REST), --cookie-file (user:password; --auth is
// config-file only), --electrum-rpc-addr, --monitoring-addr (its Prometheus
// port, picked free so that two networks never collide), --db-dir,
// --wait-duration-secs 1 (how often it polls for blocks and the mempool when no
// client talks to it; the default is 10 s), --log-filters INFO.

import (
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// electrsWaitDuration is electrs's --wait-duration-secs.
const electrsWaitDuration = 1

// electrsState is electrs's part of a Network; the zero value means "not
// configured".
type electrsState struct {
	enabled     bool
	port        int // Electrum TCP port
	monitorPort int // Prometheus port
	bin         string

	mu   sync.Mutex // guards proc and ec; held across stop/start
	proc *process
	ec   *electrum.Client // the harness's connection for tip checks
}

// findElectrs locates $TOOLS_DIR/bin/electrs; missing, it is an error wrapping
// ErrToolMissing (a test that asked for electrs fails, never skips).
func findElectrs(toolsDir string) (string, error) {
	bin := filepath.Join(toolsDir, "bin", "electrs")
	if !isFile(bin) {
		return "", fmt.Errorf("electrs not found in %s (Config.Electrs needs electrs 0.12.0): %s: %w", filepath.Dir(bin), installHint, ErrToolMissing)
	}
	return bin, nil
}

// ElectrsURL is electrs's address as "tcp://127.0.0.1:PORT" (plain TCP,
// Electrum protocol 1.4). Empty when the network runs without electrs.
func (n *Network) ElectrsURL() string {
	if !n.electrs.enabled {
		return ""
	}
	return fmt.Sprintf("tcp://127.0.0.1:%d", n.electrs.port)
}

// startElectrs starts electrs against the proxy and waits until it serves
// btcd's tip. The caller holds n.electrs.mu or runs before anyone else can.
func (n *Network) startElectrs(ctx context.Context) error {
	s := &n.electrs
	dir := filepath.Join(n.dir, "electrs")
	dbDir := filepath.Join(dir, "db")
	if err := mkdirAll(dbDir); err != nil {
		return err
	}
	cookie := filepath.Join(dir, "cookie")
	if err := os.WriteFile(cookie, []byte(btcdRPCUser+":"+btcdRPCPass), 0o600); err != nil {
		return fmt.Errorf("devnet: electrs cookie: %w", err)
	}
	args := []string{
		"--skip-default-conf-files",
		"--network", "regtest",
		"--daemon-rpc-addr", fmt.Sprintf("127.0.0.1:%d", n.proxyPort),
		"--cookie-file", cookie,
		"--electrum-rpc-addr", fmt.Sprintf("127.0.0.1:%d", s.port),
		"--monitoring-addr", fmt.Sprintf("127.0.0.1:%d", s.monitorPort),
		"--db-dir", dbDir,
		"--wait-duration-secs", strconv.Itoa(electrsWaitDuration),
		"--log-filters", "INFO",
	}
	p, err := startProcess("electrs", s.bin, args, nil, dir, filepath.Join(n.dir, "electrs.log"), n.log)
	if err != nil {
		return err
	}
	s.proc = p
	if err := n.waitElectrsSyncedLocked(ctx); err != nil {
		if p.exited() {
			return fmt.Errorf("%w; last lines of %s:\n%s", p.exitError(), p.logPath, TailFile(p.logPath, 20))
		}
		return fmt.Errorf("electrs on 127.0.0.1:%d: %w; last lines of %s:\n%s", s.port, err, p.logPath, TailFile(p.logPath, 20))
	}
	return nil
}

// waitElectrsSynced waits until electrs serves btcd's best block; a no-op
// when the network has no electrs or it is stopped.
func (n *Network) waitElectrsSynced(ctx context.Context) error {
	if !n.electrs.enabled {
		return nil
	}
	n.electrs.mu.Lock()
	defer n.electrs.mu.Unlock()
	if n.electrs.proc == nil || n.electrs.proc.exited() {
		return nil
	}
	return n.waitElectrsSyncedLocked(ctx)
}

func (n *Network) waitElectrsSyncedLocked(ctx context.Context) error {
	s := &n.electrs
	return poll(ctx, 20*time.Millisecond, func() (bool, error) {
		if s.proc.exited() {
			return false, s.proc.exitError()
		}
		best, height, err := n.rpc.GetBestBlock()
		if err != nil {
			return false, fmt.Errorf("btcd getbestblock: %w", err)
		}
		h, eh, err := n.electrsTipLocked(ctx)
		if err != nil {
			n.log.Debug("electrs not ready", "err", err)
			return false, nil
		}
		return eh == int64(height) && h == *best, nil
	})
}

// electrsTipLocked asks electrs for its tip (blockchain.headers.subscribe).
// Each call also makes electrs sync: it polls btcd after handling requests.
func (n *Network) electrsTipLocked(ctx context.Context) (chainhash.Hash, int64, error) {
	s := &n.electrs
	if s.ec == nil {
		c, err := electrum.Dial(ctx, n.ElectrsURL(), electrum.Options{ClientName: "cosigner-devnet", PingInterval: -1})
		if err != nil {
			return chainhash.Hash{}, 0, err
		}
		s.ec = c
	}
	var tip struct {
		Height int64  `json:"height"`
		Hex    string `json:"hex"`
	}
	if err := s.ec.Call(ctx, "blockchain.headers.subscribe", nil, &tip); err != nil {
		s.ec.Close()
		s.ec = nil
		return chainhash.Hash{}, 0, err
	}
	raw, err := hex.DecodeString(tip.Hex)
	if err != nil || len(raw) != 80 {
		return chainhash.Hash{}, 0, fmt.Errorf("electrs: bad header %q", tip.Hex)
	}
	return chainhash.DoubleHashH(raw), tip.Height, nil
}

// StopElectrs stops electrs (SIGTERM, then SIGKILL after 10 s), keeping its
// index, so that its clients lose their connection; StartElectrs brings it
// back on the same port. A no-op when it is already stopped. Errors with
// ErrClosed after Close, or when the network runs without electrs.
func (n *Network) StopElectrs(ctx context.Context) error {
	if err := n.checkOpen(); err != nil {
		return err
	}
	if !n.electrs.enabled {
		return fmt.Errorf("devnet: StopElectrs: the network runs without electrs (Config.Electrs)")
	}
	s := &n.electrs
	s.mu.Lock()
	defer s.mu.Unlock()
	return n.stopElectrsLocked()
}

func (n *Network) stopElectrsLocked() error {
	s := &n.electrs
	if s.ec != nil {
		s.ec.Close()
		s.ec = nil
	}
	if s.proc == nil || s.proc.exited() {
		return nil
	}
	if err := s.proc.stop(10 * time.Second); err != nil {
		return fmt.Errorf("devnet: stopping electrs: %w", err)
	}
	n.log.Info("electrs stopped", "port", s.port)
	return nil
}

// StartElectrs starts electrs again after StopElectrs, on the same port and
// index, and returns once it serves btcd's tip. Starting a running electrs is
// an error.
func (n *Network) StartElectrs(ctx context.Context) error {
	if err := n.checkOpen(); err != nil {
		return err
	}
	if !n.electrs.enabled {
		return fmt.Errorf("devnet: StartElectrs: the network runs without electrs (Config.Electrs)")
	}
	s := &n.electrs
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.exited() {
		return fmt.Errorf("devnet: StartElectrs: electrs is running (pid %d)", s.proc.cmd.Process.Pid)
	}
	if _, err := pickPort("electrs", s.port); err != nil {
		return err
	}
	began := time.Now()
	if err := n.startElectrs(ctx); err != nil {
		return err
	}
	n.log.Info("electrs restarted", "port", s.port, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// closeElectrs stops electrs for Close.
func (n *Network) closeElectrs() error {
	if !n.electrs.enabled {
		return nil
	}
	n.electrs.mu.Lock()
	defer n.electrs.mu.Unlock()
	return n.stopElectrsLocked()
}
