package devnet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/rpcclient"
)

// Config says where and how to run the network. The zero value is usable
// apart from Dir.
type Config struct {
	// Dir holds every process's data and log (btcd.log, electrumx.log,
	// relay-0.log, …). It is created if missing. Required.
	Dir string

	// ToolsDir is where scripts/install-tools.sh installed the tools
	// (bin/btcd, venv/bin/electrumx_server). Default: ToolsDir() — $TOOLS_DIR,
	// else <repo>/.tools, where <repo> is the first folder above the working
	// directory holding go.mod.
	// The relay's node packages are always taken from
	// <repo>/internal/devnet/node.
	ToolsDir string

	// Ports on 127.0.0.1. Zero picks a free port; a given port that is taken
	// is an error wrapping ErrPortInUse that names the port and the service.
	BtcdRPCPort  int
	BtcdP2PPort  int
	ProxyPort    int // the RPC compatibility proxy ElectrumX talks to
	ElectrumPort int // ElectrumX's TCP (plain text) Electrum port

	// RelayPorts has one entry per relay (zero = free port). Nil means three
	// relays on free ports; an empty, non-nil slice means no relays.
	RelayPorts []int

	// RelaySoftware picks the program serving each relay, by index (see
	// RelaySoftware). Missing or empty entries: relay 0 is nostr-rs-relay
	// (RelayNostrRs, <ToolsDir>/bin/nostr-rs-relay), the others the Node relay.
	RelaySoftware []RelaySoftware

	// InitialBlocks is how many blocks Start mines. Default 450, which
	// activates segwit on btcd's regtest (BIP9 signalling, about 432 blocks)
	// and leaves 350 mature coinbases for Fund. Negative means none.
	InitialBlocks int

	// ElectrumPaddingWait is how long ElectrumX may hold a small Electrum TCP
	// response back to pad it together with later ones (its
	// PaddedRSTransport, a countermeasure against traffic analysis; stock
	// value 1 s, which delays most round trips by up to a second). Default 0:
	// send at once, still padded. Set time.Second for stock behaviour, e.g. in
	// benchmarks that should show what a deployed server does.
	ElectrumPaddingWait time.Duration

	// ElectrumNoCostLimits lifts ElectrumX's cost-based throttling
	// (COST_SOFT_LIMIT=0, COST_HARD_LIMIT=0), for benchmarks that sync
	// wallets of many thousands of scripts on one session. Default false:
	// ElectrumX's own defaults (soft 1,000, hard 10,000: requests are delayed
	// above the soft limit and the session is dropped at the hard one), as on
	// a deployed server, so that tests show whether a client copes with them.
	ElectrumNoCostLimits bool

	// MinRelayFeeRate is btcd's minimum relay feerate in sat/vB (--minrelaytxfee), which btcd's
	// block template also uses as the feerate below which it leaves a transaction out. When set,
	// btcd also runs with --norelaypriority, so that a transaction paying less is still accepted
	// into the mempool (as a low-fee transaction) but never mined: a stuck transaction, for
	// fee-bump (BIP-125) tests. A replacement must then pay at least MinRelayFeeRate × its vsize
	// more than what it replaces. Fund pays 5 sat/vB: fund with FundOutputs at a higher feerate
	// on such a network. 0: btcd's default (1 sat/vB, free transactions need priority).
	MinRelayFeeRate int64

	// Electrs also starts electrs 0.12 ($TOOLS_DIR/bin/electrs) beside
	// ElectrumX, on its own port (ElectrsURL), indexing btcd through the
	// proxy; Mine then waits for both servers. A missing electrs is an error
	// wrapping ErrToolMissing. Default false.
	Electrs bool

	// Logger gets the harness's own log lines (not the processes' output,
	// which goes to files in Dir). Default slog.Default().
	Logger *slog.Logger
}

// Network is a running local test network: btcd (regtest), the RPC
// compatibility proxy, ElectrumX and the Nostr relays, all on 127.0.0.1.
// Its methods are safe for concurrent use. Close it when done.
type Network struct {
	dir   string
	tools tools
	log   *slog.Logger

	btcdRPCPort, btcdP2PPort, proxyPort, electrumPort int
	electrumPaddingWait                               time.Duration
	electrumNoCostLimits                              bool
	minRelayFeeRate                                   int64

	key harnessKey
	rpc *rpcclient.Client

	btcd      *process
	proxy     *rpcProxy
	electrumx *process
	electrs   electrsState

	relayMu sync.Mutex
	relays  []relayState

	ecState

	mineMu       sync.Mutex
	fundMu       sync.Mutex
	nextCoinbase int64 // lowest block height whose coinbase Fund may still use

	life     context.Context // cancelled by Close
	stopLife context.CancelFunc

	closeOnce sync.Once
	closed    chan struct{}
	closeErr  error
}

// Start starts btcd, the RPC proxy, ElectrumX and the relays, mines
// cfg.InitialBlocks, and returns once ElectrumX has indexed the tip and every
// relay answers a REQ. ctx bounds the start-up only: the network runs until
// Close. On error everything started so far is stopped; errors name the
// service and include the tail of its log. A tool that is not installed gives
// an error wrapping ErrToolMissing ("btcd not found in .tools/bin: run
// scripts/install-tools.sh").
func Start(ctx context.Context, cfg Config) (*Network, error) {
	began := time.Now()
	if cfg.Dir == "" {
		return nil, errors.New("devnet: Config.Dir is required")
	}
	if cfg.MinRelayFeeRate < 0 {
		return nil, fmt.Errorf("devnet: Config.MinRelayFeeRate %d sat/vB is negative", cfg.MinRelayFeeRate)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("devnet: %w", err)
	}
	if err := mkdirAll(dir); err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "devnet")

	repo, repoErr := RepoRoot()
	toolsDir := cfg.ToolsDir
	if toolsDir == "" {
		var err error
		if toolsDir, err = ToolsDir(); err != nil {
			return nil, err
		}
	}
	if repoErr != nil {
		return nil, fmt.Errorf("devnet: the relay's node packages are found from the repository root: %w", repoErr)
	}
	t, err := findTools(repo, toolsDir)
	if err != nil {
		return nil, err
	}

	n := &Network{dir: dir, tools: t, log: log, closed: make(chan struct{}), nextCoinbase: 1, electrumPaddingWait: max(cfg.ElectrumPaddingWait, 0), electrumNoCostLimits: cfg.ElectrumNoCostLimits, minRelayFeeRate: cfg.MinRelayFeeRate}
	n.life, n.stopLife = context.WithCancel(context.Background())
	if n.key, err = newHarnessKey(n); err != nil {
		return nil, err
	}

	// Choose every port before starting anything, so that a taken port fails fast.
	if n.btcdRPCPort, err = pickPort("btcd RPC", cfg.BtcdRPCPort); err != nil {
		return nil, err
	}
	if n.btcdP2PPort, err = pickPort("btcd P2P", cfg.BtcdP2PPort); err != nil {
		return nil, err
	}
	proxyLn, err := reservePort("rpc proxy", cfg.ProxyPort)
	if err != nil {
		return nil, err
	}
	n.proxyPort = proxyLn.Addr().(*net.TCPAddr).Port
	if n.electrumPort, err = pickPort("electrumx", cfg.ElectrumPort); err != nil {
		proxyLn.Close()
		return nil, err
	}
	if cfg.Electrs {
		n.electrs.enabled = true
		if n.electrs.bin, err = findElectrs(toolsDir); err != nil {
			proxyLn.Close()
			return nil, err
		}
		for _, p := range []*int{&n.electrs.port, &n.electrs.monitorPort} {
			if *p, err = pickPort("electrs", 0); err != nil {
				proxyLn.Close()
				return nil, err
			}
		}
	}
	relayPorts := cfg.RelayPorts
	if relayPorts == nil {
		relayPorts = []int{0, 0, 0}
	}
	for i, p := range relayPorts {
		sw, err := relaySoftware(cfg.RelaySoftware, i)
		if err == nil && sw == RelayNostrRs && n.tools.nostrRsRelay == "" {
			n.tools.nostrRsRelay, err = findNostrRsRelay(toolsDir)
		}
		var port int
		if err == nil {
			port, err = pickPort(fmt.Sprintf("relay-%d", i), p)
		}
		if err != nil {
			proxyLn.Close()
			return nil, err
		}
		n.relays = append(n.relays, relayState{port: port, software: sw})
	}

	fail := func(err error) (*Network, error) {
		_ = n.Close()
		return nil, err
	}
	n.proxy = startRPCProxy(proxyLn, fmt.Sprintf("http://127.0.0.1:%d/", n.btcdRPCPort), btcdRPCUser, btcdRPCPass, log.With("part", "rpcproxy"))

	step := time.Now()
	if err := n.startBtcd(ctx); err != nil {
		return fail(err)
	}
	blocks := cfg.InitialBlocks
	if blocks == 0 {
		blocks = 450
	}
	if blocks > 0 {
		if _, err := n.generate(ctx, blocks); err != nil {
			return fail(fmt.Errorf("devnet: mining %d initial blocks: %w", blocks, err))
		}
	}
	log.Info("btcd ready", "rpc", fmt.Sprintf("127.0.0.1:%d", n.btcdRPCPort), "blocks", max(blocks, 0), "took", time.Since(step).Round(time.Millisecond))

	// ElectrumX and the relays are independent: start them side by side.
	step = time.Now()
	errs := make(chan error, 2+len(n.relays))
	go func() { errs <- n.startElectrumX(ctx) }()
	for i := range n.relays {
		go func() { errs <- n.startRelay(ctx, i) }()
	}
	servers := 1
	if cfg.Electrs {
		servers++
		go func() {
			n.electrs.mu.Lock()
			defer n.electrs.mu.Unlock()
			errs <- n.startElectrs(ctx)
		}()
	}
	var firstErr error
	for range servers + len(n.relays) {
		if err := <-errs; err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if firstErr != nil {
		return fail(firstErr)
	}
	log.Info("devnet ready", "electrum", n.ElectrumURL(), "relays", n.RelayURLs(), "services_took", time.Since(step).Round(time.Millisecond), "total", time.Since(began).Round(time.Millisecond), "dir", dir)
	return n, nil
}

// ElectrumURL is ElectrumX's address as "tcp://127.0.0.1:PORT" (plain TCP,
// newline-delimited JSON-RPC, Electrum protocol 1.4).
func (n *Network) ElectrumURL() string { return "tcp://" + n.ElectrumAddr() }

// ElectrumAddr is ElectrumX's address as "127.0.0.1:PORT".
func (n *Network) ElectrumAddr() string { return fmt.Sprintf("127.0.0.1:%d", n.electrumPort) }

// RelayURLs are the relays' addresses, "ws://127.0.0.1:PORT", in relay
// order (the index StopRelay and StartRelay take). A new slice each call.
func (n *Network) RelayURLs() []string {
	out := make([]string, len(n.relays))
	for i, r := range n.relays {
		out[i] = relayURL(r.port)
	}
	return out
}

// RPC is the btcd JSON-RPC client (HTTP POST mode) for tests: gettxout,
// getrawtransaction, invalidateblock, … It is closed by Close.
func (n *Network) RPC() *rpcclient.Client { return n.rpc }

// BtcdRPCAddr is btcd's RPC address as "127.0.0.1:PORT" (HTTP, no TLS, user
// and password "devnet"), for clients other than RPC().
func (n *Network) BtcdRPCAddr() string { return fmt.Sprintf("127.0.0.1:%d", n.btcdRPCPort) }

// Params are the chain parameters of the network: regtest.
func (n *Network) Params() *chaincfg.Params { return &chaincfg.RegressionNetParams }

// Dir is the folder holding the processes' data and logs.
func (n *Network) Dir() string { return n.dir }

// Close stops the relays, ElectrumX, the proxy and btcd, each with SIGTERM and
// up to 10 s to exit before SIGKILL, and waits for them. It is idempotent:
// later calls return the first call's result.
func (n *Network) Close() error {
	n.closeOnce.Do(func() {
		close(n.closed)
		n.stopLife()
		var errs []error
		n.relayMu.Lock()
		var wg sync.WaitGroup
		relayErrs := make([]error, len(n.relays))
		for i := range n.relays {
			if p := n.relays[i].proc; p != nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					relayErrs[i] = p.stop(10 * time.Second)
				}()
				n.relays[i].proc = nil
			}
		}
		wg.Wait()
		n.relayMu.Unlock()
		errs = append(errs, relayErrs...)

		n.ecMu.Lock()
		if n.ec != nil {
			n.ec.Close()
			n.ec = nil
		}
		n.ecMu.Unlock()
		if n.electrumx != nil {
			errs = append(errs, n.electrumx.stop(10*time.Second))
		}
		errs = append(errs, n.closeElectrs())
		if n.proxy != nil {
			errs = append(errs, n.proxy.close())
		}
		if n.rpc != nil {
			n.rpc.Shutdown()
		}
		if n.btcd != nil {
			errs = append(errs, n.btcd.stop(10*time.Second))
		}
		n.closeErr = errors.Join(errs...)
		n.log.Info("devnet stopped", "dir", n.dir)
	})
	return n.closeErr
}

func (n *Network) checkOpen() error {
	select {
	case <-n.closed:
		return ErrClosed
	default:
		return nil
	}
}

func mkdirAll(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("devnet: %w", err)
	}
	return nil
}
