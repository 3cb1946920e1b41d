package devnet

// electrumx.go — the Electrum server (ElectrumX) and the few lines of Electrum
// protocol the harness speaks to wait for it.

import (
	"context"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// electrumPollInterval is ElectrumX's DAEMON_POLL_INTERVAL_BLOCKS and
// DAEMON_POLL_INTERVAL_MEMPOOL: how often it asks the node for new blocks and
// mempool transactions, which bounds notification latency on this network.
const electrumPollInterval = 100 * time.Millisecond

// startElectrumX starts ElectrumX (through electrumx_launch.py, which sets
// its padding wait) against the RPC proxy and waits until it serves the same
// tip as btcd.
func (n *Network) startElectrumX(ctx context.Context) error {
	dbDir := filepath.Join(n.dir, "electrumx-db")
	if err := mkdirAll(dbDir); err != nil {
		return err
	}
	ms := strconv.Itoa(int(electrumPollInterval / time.Millisecond))
	env := []string{
		"COIN=Bitcoin",
		"NET=regtest",
		fmt.Sprintf("DAEMON_URL=http://%s:%s@127.0.0.1:%d/", btcdRPCUser, btcdRPCPass, n.proxyPort),
		"DB_DIRECTORY=" + dbDir,
		"DB_ENGINE=leveldb",
		fmt.Sprintf("SERVICES=tcp://127.0.0.1:%d", n.electrumPort),
		"ALLOW_ROOT=1",
		"PEER_DISCOVERY=off",
		"DAEMON_POLL_INTERVAL_BLOCKS=" + ms,
		"DAEMON_POLL_INTERVAL_MEMPOOL=" + ms,
		"LOG_LEVEL=info",
		"PYTHONUNBUFFERED=1",
		"DEVNET_ELECTRUMX_PADDING_WAIT=" + strconv.FormatFloat(n.electrumPaddingWait.Seconds(), 'f', -1, 64),
	}
	env = append(env, n.electrumCostEnv()...)
	p, err := startProcess("electrumx", n.tools.python, []string{n.tools.launcher}, env, n.dir, filepath.Join(n.dir, "electrumx.log"), n.log)
	if err != nil {
		return err
	}
	n.electrumx = p
	if err := n.waitElectrumSynced(ctx); err != nil {
		if p.exited() {
			return p.exitError()
		}
		return fmt.Errorf("electrumx on 127.0.0.1:%d: %w; last lines of %s:\n%s", n.electrumPort, err, p.logPath, TailFile(p.logPath, 20))
	}
	return nil
}

// waitElectrumSynced waits until ElectrumX's tip (blockchain.headers.subscribe)
// is btcd's best block, by hash.
func (n *Network) waitElectrumSynced(ctx context.Context) error {
	return poll(ctx, 20*time.Millisecond, func() (bool, error) {
		if n.electrumx != nil && n.electrumx.exited() {
			return false, n.electrumx.exitError()
		}
		best, height, err := n.rpc.GetBestBlock()
		if err != nil {
			return false, fmt.Errorf("btcd getbestblock: %w", err)
		}
		eh, eheight, err := n.electrumTip(ctx)
		if err != nil {
			n.log.Debug("electrumx not ready", "err", err)
			return false, nil
		}
		return eheight == int64(height) && eh == *best, nil
	})
}

// electrumTip asks ElectrumX for its tip over the harness's Electrum
// connection (the project's own client, chainwatch/electrum), dialling it when
// needed.
func (n *Network) electrumTip(ctx context.Context) (chainhash.Hash, int64, error) {
	n.ecMu.Lock()
	defer n.ecMu.Unlock()
	if n.ec == nil {
		c, err := electrum.Dial(ctx, n.ElectrumURL(), electrum.Options{ClientName: "cosigner-devnet", PingInterval: -1})
		if err != nil {
			return chainhash.Hash{}, 0, err
		}
		n.ec = c
	}
	var tip struct {
		Height int64  `json:"height"`
		Hex    string `json:"hex"`
	}
	if err := n.ec.Call(ctx, "blockchain.headers.subscribe", nil, &tip); err != nil {
		n.ec.Close()
		n.ec = nil
		return chainhash.Hash{}, 0, err
	}
	raw, err := hex.DecodeString(tip.Hex)
	if err != nil || len(raw) != 80 {
		return chainhash.Hash{}, 0, fmt.Errorf("electrumx: bad header %q", tip.Hex)
	}
	return chainhash.DoubleHashH(raw), tip.Height, nil
}

// ecState holds the harness's Electrum connection (see electrumTip).
type ecState struct {
	ecMu sync.Mutex
	ec   *electrum.Client
}
