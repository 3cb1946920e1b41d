package devnet

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// TestStartElectrsMissing: asking for electrs without the binary is a loud
// ErrToolMissing naming electrs, before anything starts.
func TestStartElectrsMissing(t *testing.T) {
	tools := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tools, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, err := findElectrs(tools)
	if !errors.Is(err, ErrToolMissing) || !strings.Contains(err.Error(), "electrs not found in") || !strings.Contains(err.Error(), "install-tools.sh") {
		t.Fatalf("findElectrs in an empty tools dir: %v", err)
	}
}

// TestElectrs runs electrs 0.12 beside ElectrumX on btcd through the proxy's
// REST and JSON-RPC bridges: it indexes the chain, shows an unconfirmed payment
// (getmempoolentry bridge), then its confirmation, serves transaction.get and
// get_merkle, follows a reorg, and comes back after a restart.
func TestElectrs(t *testing.T) {
	n := startNetwork(t, Config{Electrs: true, RelayPorts: []int{}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	addr := strings.TrimPrefix(n.ElectrsURL(), "tcp://")

	c, err := electrum.Dial(ctx, n.ElectrsURL(), electrum.Options{ClientName: "devnet-test"})
	if err != nil {
		t.Fatalf("dial electrs: %v", err)
	}
	defer c.Close()
	if !strings.HasPrefix(c.ServerSoftware, "electrs/0.12") || c.Protocol != "1.4" {
		t.Errorf("server.version = %q %q, want electrs/0.12.x speaking 1.4", c.ServerSoftware, c.Protocol)
	}

	priv, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	a, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(priv.PubKey().SerializeCompressed()), n.Params())
	if err != nil {
		t.Fatal(err)
	}
	pkScript, _ := txscript.PayToAddrScript(a)
	txid, err := n.Fund(ctx, a, 50_000)
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, ok func([]utxo) bool) {
		t.Helper()
		var last []utxo
		for ctx.Err() == nil {
			if last = listUnspent(t, ctx, addr, pkScript); ok(last) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("electrs never showed %s; last listunspent %+v", what, last)
	}
	waitFor("the unconfirmed payment", func(us []utxo) bool {
		return len(us) == 1 && us[0].TxHash == txid.String() && us[0].Height == 0 && us[0].Value == 50_000
	})
	hashes, err := n.Mine(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, height, _ := n.RPC().GetBestBlock()
	waitFor("the confirmed payment", func(us []utxo) bool { return len(us) == 1 && us[0].Height == int64(height) })

	var hist []struct {
		TxHash string `json:"tx_hash"`
		Height int64  `json:"height"`
	}
	if err := c.Call(ctx, "blockchain.scripthash.get_history", []any{chainwatch.ScriptHash(pkScript)}, &hist); err != nil || len(hist) != 1 {
		t.Fatalf("get_history = %+v, %v", hist, err)
	}

	// A spend through electrs: broadcast, .get and .get_merkle (blockpart).
	spendThroughElectrum(t, ctx, n, c)

	// Reorg: the block that confirmed the payment goes away; electrs finds its
	// tip off the main chain (empty /rest/headers), undoes it, and follows.
	if err := n.RPC().InvalidateBlock(&hashes[0]); err != nil {
		t.Fatalf("invalidateblock: %v", err)
	}
	newHashes, err := n.Mine(ctx, 4)
	if err != nil {
		t.Fatalf("Mine after invalidateblock: %v", err)
	}
	n.electrs.mu.Lock()
	tip, tipHeight, err := n.electrsTipLocked(ctx)
	n.electrs.mu.Unlock()
	if err != nil || tip != newHashes[3] {
		t.Fatalf("electrs tip after the reorg = %s at %d (%v), want %s", tip, tipHeight, err, newHashes[3])
	}

	// Restart: clients are cut off; the index is kept.
	if err := n.StopElectrs(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Done():
	case <-ctx.Done():
		t.Fatal("the client's connection outlived StopElectrs")
	}
	if _, err := n.Generate(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := n.StartElectrs(ctx); err != nil {
		t.Fatal(err)
	}
	if us := listUnspent(t, ctx, addr, pkScript); len(us) != 1 {
		t.Errorf("after restart listunspent = %+v, want the payment (re-mined from the mempool)", us)
	}
}
