package devnet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// startNetwork starts a network for t and closes it at the end. Missing
// tools fail the test with the install hint; they never skip it.
func startNetwork(t *testing.T, cfg Config) *Network {
	if testing.Short() {
		t.Skip("needs the local test network (make test)")
	}
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
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
	c, err := electrum.Dial(ctx, "tcp://"+addr, electrum.Options{ClientName: "devnet-test"})
	if err != nil {
		t.Fatalf("dial ElectrumX: %v", err)
	}
	defer c.Close()
	var us []utxo
	if err := c.Call(ctx, "blockchain.scripthash.listunspent", []any{chainwatch.ScriptHash(pkScript)}, &us); err != nil {
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
	addr, pkScript := newP2WPKHAddress(t, n)
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

func TestStartMissingTools(t *testing.T) {
	empty := t.TempDir()
	_, err := Start(context.Background(), Config{Dir: t.TempDir(), ToolsDir: empty})
	if !errors.Is(err, ErrToolMissing) {
		t.Fatalf("Start with empty ToolsDir: %v, want ErrToolMissing", err)
	}
	if !strings.Contains(err.Error(), "btcd not found in") || !strings.Contains(err.Error(), "run scripts/install-tools.sh") {
		t.Errorf("error %q does not name btcd and the install script", err)
	}
}

func TestStartPortInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the installed tools (make test)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	_, err = Start(context.Background(), Config{Dir: t.TempDir(), ElectrumPort: port})
	if errors.Is(err, ErrToolMissing) {
		t.Fatalf("%v", err)
	}
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("Start with a taken ElectrumPort: %v, want ErrPortInUse", err)
	}
	if want := fmt.Sprintf("electrumx: 127.0.0.1:%d", port); !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not name %q", err, want)
	}
}

// TestNetworkChain covers what the end-to-end tests lean on: a multi-input
// Fund, ElectrumX's header notifications, a reorg through invalidateblock,
// and the fee calls the RPC proxy bridges.
func TestNetworkChain(t *testing.T) {
	n := startNetwork(t, Config{RelayPorts: []int{0}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	c, err := electrum.Dial(ctx, n.ElectrumURL(), electrum.Options{ClientName: "devnet-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var relayFee float64
	if err := c.Call(ctx, "blockchain.relayfee", nil, &relayFee); err != nil || relayFee != 0.00001 {
		t.Errorf("blockchain.relayfee = %v, %v; want btcd's 0.00001 (bridged getnetworkinfo)", relayFee, err)
	}
	var fee float64
	if err := c.Call(ctx, "blockchain.estimatefee", []any{2}, &fee); err != nil || fee != -1 {
		t.Errorf("blockchain.estimatefee = %v, %v; want -1 on a fresh chain (bridged estimatesmartfee)", fee, err)
	}

	// 60 BTC needs two 50 BTC coinbases.
	addr, err := btcutil.NewAddressWitnessScriptHash(make([]byte, 32), n.Params())
	if err != nil {
		t.Fatal(err)
	}
	txid, err := n.Fund(ctx, addr, 60*btcutil.SatoshiPerBitcoin)
	if err != nil {
		t.Fatalf("Fund 60 BTC: %v", err)
	}
	tx, err := n.RPC().GetRawTransaction(&txid)
	if err != nil {
		t.Fatalf("getrawtransaction: %v", err)
	}
	if got := len(tx.MsgTx().TxIn); got != 2 {
		t.Errorf("Fund 60 BTC spent %d coinbases, want 2", got)
	}

	// Header notifications arrive after Mine.
	var tip struct {
		Height int64 `json:"height"`
	}
	if err := c.Call(ctx, "blockchain.headers.subscribe", nil, &tip); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		var note electrum.Notification
		select {
		case note = <-c.Notifications():
		case <-timeout:
			t.Fatal("no blockchain.headers.subscribe notification within 10s")
		}
		var params []struct {
			Height int64 `json:"height"`
		}
		if note.Method == "blockchain.headers.subscribe" && json.Unmarshal(note.Params, &params) == nil && len(params) == 1 {
			if params[0].Height != tip.Height+1 {
				t.Fatalf("notified height %d, want %d", params[0].Height, tip.Height+1)
			}
			break
		}
	}

	// A wallet spends its coin through ElectrumX (blockchain.transaction.broadcast,
	// .get and .get_merkle), as BDK does.
	spendThroughElectrum(t, ctx, n, c)

	// Reorg: invalidate the tip (which confirmed the Fund transaction), mine
	// two blocks on the parent; Mine returns once ElectrumX follows.
	best, height, err := n.RPC().GetBestBlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.RPC().InvalidateBlock(best); err != nil {
		t.Fatalf("invalidateblock: %v", err)
	}
	hashes, err := n.Mine(ctx, 2)
	if err != nil {
		t.Fatalf("Mine after invalidateblock: %v", err)
	}
	ehash, eheight, err := n.electrumTip(ctx)
	if err != nil || eheight != int64(height)+1 || ehash != hashes[1] {
		t.Fatalf("ElectrumX tip after reorg = %s at %d (%v), want %s at %d", ehash, eheight, err, hashes[1], height+1)
	}
}

// TestRelayEphemeral checks that a kind 24133 (NIP-46) event published on the
// Node relay reaches a live subscriber on that relay, and that a forged one is
// refused (nostr-rs-relay: TestNostrRsRelay).
func TestRelayEphemeral(t *testing.T) {
	n := startNetwork(t, Config{RelayPorts: []int{0}, RelaySoftware: []RelaySoftware{RelayNode}, InitialBlocks: -1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := n.RelayURLs()[0]

	priv, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	pubkey := hex.EncodeToString(schnorr.SerializePubKey(priv.PubKey()))

	sub := dialRelay(t, ctx, url)
	send(t, sub, []any{"REQ", "s", map[string]any{"kinds": []int{24133}, "#p": []string{pubkey}}})
	waitFrame(t, sub, "EOSE")

	pub := dialRelay(t, ctx, url)
	ev := signEvent(t, priv, 24133, [][]string{{"p", pubkey}}, "ciphertext")
	send(t, pub, []any{"EVENT", ev})
	ok := waitFrame(t, pub, "OK")
	if string(ok[2]) != "true" {
		t.Fatalf("relay refused a valid event: %s", ok)
	}
	got := waitFrame(t, sub, "EVENT")
	var gotEv map[string]any
	if err := json.Unmarshal(got[2], &gotEv); err != nil || gotEv["id"] != ev["id"] {
		t.Fatalf("subscriber got %s, want event %v", got, ev["id"])
	}

	forged := signEvent(t, priv, 24133, [][]string{{"p", pubkey}}, "other")
	forged["content"] = "tampered"
	send(t, pub, []any{"EVENT", forged})
	ok = waitFrame(t, pub, "OK")
	if string(ok[2]) != "false" {
		t.Fatalf("relay accepted a forged event: %s", ok)
	}
}

type wsConn struct {
	net.Conn
	rw io.ReadWriter
}

func dialRelay(t *testing.T, ctx context.Context, url string) *wsConn {
	t.Helper()
	conn, br, _, err := ws.Dial(ctx, url)
	if err != nil {
		t.Fatalf("dial %s: %v", url, err)
	}
	t.Cleanup(func() { conn.Close() })
	var rd io.Reader = conn
	if br != nil {
		rd = br
	}
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	return &wsConn{Conn: conn, rw: struct {
		io.Reader
		io.Writer
	}{rd, conn}}
}

func send(t *testing.T, c *wsConn, msg []any) {
	t.Helper()
	b, _ := json.Marshal(msg)
	if err := wsutil.WriteClientText(c.Conn, b); err != nil {
		t.Fatal(err)
	}
}

// waitFrame reads relay frames until one of type typ and returns its parts.
func waitFrame(t *testing.T, c *wsConn, typ string) []json.RawMessage {
	t.Helper()
	for {
		msg, err := wsutil.ReadServerText(c.rw)
		if err != nil {
			t.Fatalf("waiting for %s: %v", typ, err)
		}
		var frame []json.RawMessage
		if err := json.Unmarshal(msg, &frame); err != nil || len(frame) == 0 {
			t.Fatalf("bad frame %s", msg)
		}
		var got string
		_ = json.Unmarshal(frame[0], &got)
		if got == typ {
			return frame
		}
	}
}

// signEvent builds a NIP-01 event signed with BIP-340.
func signEvent(t *testing.T, priv *btcec.PrivateKey, kind int, tags [][]string, content string) map[string]any {
	t.Helper()
	pubkey := hex.EncodeToString(schnorr.SerializePubKey(priv.PubKey()))
	created := time.Now().Unix()
	ser, err := json.Marshal([]any{0, pubkey, created, kind, tags, content})
	if err != nil {
		t.Fatal(err)
	}
	id := sha256.Sum256(ser)
	sig, err := schnorr.Sign(priv, id[:])
	if err != nil {
		t.Fatal(err)
	}
	return map[string]any{"id": hex.EncodeToString(id[:]), "pubkey": pubkey, "created_at": created, "kind": kind,
		"tags": tags, "content": content, "sig": hex.EncodeToString(sig.Serialize())}
}

// spendThroughElectrum funds a fresh P2WPKH key, confirms it, spends it with a
// transaction broadcast through ElectrumX, confirms that, and reads it back
// with its merkle proof.
func spendThroughElectrum(t *testing.T, ctx context.Context, n *Network, c *electrum.Client) {
	t.Helper()
	priv, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(priv.PubKey().SerializeCompressed()), n.Params())
	if err != nil {
		t.Fatal(err)
	}
	pkScript, _ := txscript.PayToAddrScript(addr)
	const value = 100_000
	fundTxid, err := n.Fund(ctx, addr, value)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}

	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(wire.NewOutPoint(&fundTxid, 0), nil, nil))
	tx.AddTxOut(wire.NewTxOut(value-1_000, pkScript))
	fetcher := txscript.NewCannedPrevOutputFetcher(pkScript, value)
	wit, err := txscript.WitnessSignature(tx, txscript.NewTxSigHashes(tx, fetcher), 0, value, pkScript, txscript.SigHashAll, priv, true)
	if err != nil {
		t.Fatal(err)
	}
	tx.TxIn[0].Witness = wit
	var buf strings.Builder
	if err := tx.Serialize(hexWriter{&buf}); err != nil {
		t.Fatal(err)
	}
	var txid string
	if err := c.Call(ctx, "blockchain.transaction.broadcast", []any{buf.String()}, &txid); err != nil {
		t.Fatalf("blockchain.transaction.broadcast: %v", err)
	}
	if txid != tx.TxHash().String() {
		t.Fatalf("broadcast returned %s, want %s", txid, tx.TxHash())
	}
	if _, err := n.RPC().GetRawTransaction(ptr(tx.TxHash())); err != nil {
		t.Fatalf("btcd does not know the broadcast tx: %v", err)
	}
	if _, err := n.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	_, height, _ := n.RPC().GetBestBlock()
	var raw string
	if err := c.Call(ctx, "blockchain.transaction.get", []any{txid}, &raw); err != nil || raw != buf.String() {
		t.Fatalf("blockchain.transaction.get = %.20s…, %v", raw, err)
	}
	var merkle struct {
		BlockHeight int64 `json:"block_height"`
		Pos         int   `json:"pos"`
	}
	if err := c.Call(ctx, "blockchain.transaction.get_merkle", []any{txid, height}, &merkle); err != nil {
		t.Fatalf("blockchain.transaction.get_merkle: %v", err)
	}
	if merkle.BlockHeight != int64(height) || merkle.Pos != 1 {
		t.Fatalf("get_merkle = %+v, want height %d pos 1", merkle, height)
	}
}

type hexWriter struct{ w *strings.Builder }

func (h hexWriter) Write(p []byte) (int, error) {
	h.w.WriteString(hex.EncodeToString(p))
	return len(p), nil
}

func ptr[T any](v T) *T { return &v }
