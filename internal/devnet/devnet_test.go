package devnet

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
)

// startNetwork starts a network for t and closes it at the end. Missing
// tools fail the test with the install hint; they never skip it.
func startNetwork(t *testing.T, cfg Config) *Network {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	began := time.Now()
	n, err := Start(ctx, cfg)
	if err != nil {
		if errors.Is(err, ErrToolMissing) {
			t.Fatalf("%v (the local test network needs its tools: run scripts/install-tools.sh)", err)
		}
		t.Fatalf("Start: %v", err)
	}
	t.Logf("Start took %v (dir %s)", time.Since(began).Round(time.Millisecond), cfg.Dir)
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

// utxo is one entry of blockchain.scripthash.listunspent.
type utxo struct {
	TxHash string `json:"tx_hash"`
	TxPos  int    `json:"tx_pos"`
	Height int64  `json:"height"`
	Value  int64  `json:"value"`
}

func listUnspent(t *testing.T, ctx context.Context, addr string, pkScript []byte) []utxo {
	t.Helper()
	c, err := dialElectrum(ctx, addr)
	if err != nil {
		t.Fatalf("dial ElectrumX: %v", err)
	}
	defer c.close()
	var us []utxo
	if err := c.call(ctx, "blockchain.scripthash.listunspent", []any{ScriptHash(pkScript)}, &us); err != nil {
		t.Fatalf("listunspent: %v", err)
	}
	return us
}

// waitUnspent polls ElectrumX until the output txid:0 appears with the wanted
// confirmation state (height 0 = mempool, > 0 = confirmed) and returns it.
func waitUnspent(t *testing.T, ctx context.Context, n *Network, pkScript []byte, txid chainhash.Hash, confirmed bool) utxo {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var last []utxo
	for {
		last = listUnspent(t, ctx, n.ElectrumAddr(), pkScript)
		for _, u := range last {
			if u.TxHash == txid.String() && (u.Height > 0) == confirmed {
				return u
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("ElectrumX never showed %s (confirmed=%v); last listunspent: %+v", txid, confirmed, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func TestNetwork(t *testing.T) {
	n := startNetwork(t, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	if got := len(n.RelayURLs()); got != 3 {
		t.Fatalf("RelayURLs: %d relays, want 3", got)
	}
	_, height, err := n.RPC().GetBestBlock()
	if err != nil {
		t.Fatalf("getbestblock: %v", err)
	}
	if height != 450 {
		t.Fatalf("height after Start = %d, want 450", height)
	}

	// A fresh P2WPKH address (segwit must be active).
	priv, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(priv.PubKey().SerializeCompressed()), n.Params())
	if err != nil {
		t.Fatal(err)
	}
	pkScript, err := txscript.PayToAddrScript(addr)
	if err != nil {
		t.Fatal(err)
	}
	const amount = btcutil.Amount(1_2345_6789)
	txid, err := n.Fund(ctx, addr, amount)
	if err != nil {
		t.Fatalf("Fund: %v", err)
	}

	u := waitUnspent(t, ctx, n, pkScript, txid, false)
	if u.Value != int64(amount) || u.TxPos != 0 {
		t.Fatalf("mempool utxo = %+v, want value %d at output 0", u, int64(amount))
	}

	began := time.Now()
	hashes, err := n.Mine(ctx, 1)
	if err != nil {
		t.Fatalf("Mine: %v", err)
	}
	t.Logf("Mine(1) including ElectrumX indexing took %v", time.Since(began).Round(time.Millisecond))
	if len(hashes) != 1 {
		t.Fatalf("Mine(1) returned %d hashes", len(hashes))
	}
	// Mine waits for ElectrumX's tip; the confirmed UTXO must then be visible.
	u = waitUnspent(t, ctx, n, pkScript, txid, true)
	if u.Height != 451 {
		t.Fatalf("confirmed utxo height = %d, want 451", u.Height)
	}
	out, err := n.RPC().GetTxOut(&txid, 0, false)
	if err != nil || out == nil || out.Confirmations != 1 {
		t.Fatalf("btcd gettxout %s:0 = %+v, %v; want 1 confirmation", txid, out, err)
	}

	// A second Fund uses another coinbase.
	if _, err := n.Fund(ctx, addr, 5000); err != nil {
		t.Fatalf("second Fund: %v", err)
	}

	// Relay 1 goes away and comes back on the same URL.
	url := n.RelayURLs()[1]
	if err := n.StopRelay(1); err != nil {
		t.Fatalf("StopRelay: %v", err)
	}
	if err := relayRoundTrip(ctx, url); err == nil {
		t.Fatalf("relay 1 still answers at %s after StopRelay", url)
	}
	if err := relayRoundTrip(ctx, n.RelayURLs()[0]); err != nil {
		t.Fatalf("relay 0 stopped answering when relay 1 was stopped: %v", err)
	}
	if err := n.StartRelay(1); err != nil {
		t.Fatalf("StartRelay: %v", err)
	}
	if err := relayRoundTrip(ctx, url); err != nil {
		t.Fatalf("relay 1 does not answer at %s after StartRelay: %v", url, err)
	}

	for _, name := range []string{"btcd.log", "electrumx.log", "relay-0.log", "relay-1.log", "relay-2.log"} {
		if _, err := os.Stat(filepath.Join(n.Dir(), name)); err != nil {
			t.Errorf("log %s: %v", name, err)
		}
	}

	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := n.Mine(ctx, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Mine after Close: %v, want ErrClosed", err)
	}
}
