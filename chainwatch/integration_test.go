package chainwatch

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/store"
)

// p2wpkhWallet is a ScriptSource of P2WPKH scripts at m/branch/index of a test seed; it keeps
// the private keys so the test can spend.
type p2wpkhWallet struct {
	master *hdkeychain.ExtendedKey
	params *chaincfg.Params
}

func newP2WPKHWallet(t *testing.T, params *chaincfg.Params, seedByte byte) p2wpkhWallet {
	t.Helper()
	m, err := hdkeychain.NewMaster(bytes.Repeat([]byte{seedByte}, 32), params)
	if err != nil {
		t.Fatal(err)
	}
	return p2wpkhWallet{master: m, params: params}
}

func (w p2wpkhWallet) Branches() int { return 2 }

func (w p2wpkhWallet) key(branch, index uint32) (*btcec.PrivateKey, error) {
	b, err := w.master.Derive(branch)
	if err != nil {
		return nil, err
	}
	k, err := b.Derive(index)
	if err != nil {
		return nil, err
	}
	return k.ECPrivKey()
}

func (w p2wpkhWallet) address(branch, index uint32) (btcutil.Address, error) {
	k, err := w.key(branch, index)
	if err != nil {
		return nil, err
	}
	return btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(k.PubKey().SerializeCompressed()), w.params)
}

func (w p2wpkhWallet) PkScript(branch, index uint32) ([]byte, error) {
	a, err := w.address(branch, index)
	if err != nil {
		return nil, err
	}
	return txscript.PayToAddrScript(a)
}

// eventLog collects a watcher's events for the test to wait on.
type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func (l *eventLog) collect(ch <-chan Event) {
	for ev := range ch {
		l.mu.Lock()
		l.evs = append(l.evs, ev)
		l.mu.Unlock()
	}
}

func (l *eventLog) snapshot() []Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Event(nil), l.evs...)
}

// wait returns the first event (oldest first) for which match is true, waiting up to 60 s.
func (l *eventLog) wait(t *testing.T, what string, match func(Event) bool) Event {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range l.snapshot() {
			if match(ev) {
				return ev
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s; events so far: %s", what, eventKinds(l.snapshot()))
	return nil
}

type runningWatcher struct {
	*Watcher
	log    *eventLog
	cancel context.CancelFunc
	done   chan error
}

func startWatcher(t *testing.T, url string, db *store.DB, src ScriptSource, params *chaincfg.Params, more ...string) *runningWatcher {
	t.Helper()
	var servers []string
	if len(more) > 0 {
		servers = append([]string{url}, more...)
	}
	w, err := New(Config{
		ServerURL: url, Servers: servers, Scripts: src, DB: db, Params: params, Lookahead: 20,
		Logger:       slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
		ClientName:   "cosigner-test",
		ReconnectMin: 100 * time.Millisecond,
		Electrum:     electrum.Options{RequestTimeout: 20 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runningWatcher{Watcher: w, log: &eventLog{}, cancel: cancel, done: make(chan error, 1)}
	collected := make(chan struct{})
	go func() { rw.log.collect(w.Events()); close(collected) }()
	go func() { rw.done <- w.Run(ctx); <-collected }()
	select {
	case <-w.Ready():
	case err := <-rw.done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatalf("watcher not ready after 90 s: %+v", w.Health())
	}
	return rw
}

func (rw *runningWatcher) stop(t *testing.T) {
	t.Helper()
	rw.cancel()
	select {
	case err := <-rw.done:
		if err != nil {
			t.Fatalf("Run returned %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// checkAgainstNode asserts that the watcher's UTXO set is exactly want and that btcd
// (gettxout, mempool included) agrees on every coin's value and script.
func checkAgainstNode(t *testing.T, net *devnet.Network, got []UTXO, want map[wire.OutPoint]btcutil.Amount) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("watcher has %d UTXOs, want %d: %+v", len(got), len(want), got)
	}
	for _, u := range got {
		v, ok := want[u.OutPoint]
		if !ok || v != u.Value {
			t.Fatalf("watcher UTXO %v = %v, want %v (listed: %v)", u.OutPoint, u.Value, v, ok)
		}
		res, err := net.RPC().GetTxOut(&u.OutPoint.Hash, u.OutPoint.Index, true)
		if err != nil || res == nil {
			t.Fatalf("btcd gettxout %v: %v, %v (watcher says unspent)", u.OutPoint, res, err)
		}
		nodeValue, err := btcutil.NewAmount(res.Value)
		if err != nil || nodeValue != u.Value {
			t.Fatalf("btcd says %v is worth %v, watcher %v", u.OutPoint, nodeValue, u.Value)
		}
		if res.ScriptPubKey.Hex != hex.EncodeToString(u.PkScript) {
			t.Fatalf("btcd script of %v = %s, watcher %x", u.OutPoint, res.ScriptPubKey.Hex, u.PkScript)
		}
	}
}

func findOut(t *testing.T, net *devnet.Network, txid chainhash.Hash, pkScript []byte) (wire.OutPoint, btcutil.Amount) {
	t.Helper()
	tx, err := net.RPC().GetRawTransaction(&txid)
	if err != nil {
		t.Fatal(err)
	}
	for i, out := range tx.MsgTx().TxOut {
		if bytes.Equal(out.PkScript, pkScript) {
			return wire.OutPoint{Hash: txid, Index: uint32(i)}, btcutil.Amount(out.Value)
		}
	}
	t.Fatalf("tx %s pays nothing to %x", txid, pkScript)
	return wire.OutPoint{}, 0
}

// TestWatcherAgainstElectrumX runs the watcher against the real ElectrumX of internal/devnet:
// funding seen and confirmed (also beyond the initial lookahead window), the UTXO set equal to
// btcd's, a spend broadcast through the watcher, a restart that skips refetching, and a fresh
// full sync that finds the same coins.
func TestWatcherAgainstElectrumX(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	net := startDevnet(ctx, t)
	params := net.Params()
	wallet := newP2WPKHWallet(t, params, 7)
	dbPath := filepath.Join(t.TempDir(), "chainwatch.db")
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	w := startWatcher(t, net.ElectrumURL(), db, wallet, params)
	if h := w.Health(); !h.Connected || !h.Ready || h.ScriptsTracked != 40 || h.ServerSoftware == "" {
		t.Fatalf("health after first sync = %+v, want connected, ready, 2×20 scripts", h)
	}

	// Fund receive 0, 19 (the last script of the initial window) and 25 (beyond it: tracked
	// only once 19 is seen used and the window grows to 39).
	pk25, _ := wallet.PkScript(0, 25)
	if _, _, ok := w.Lookup(pk25); ok {
		t.Fatal("index 25 tracked before the window grew")
	}
	amounts := map[uint32]btcutil.Amount{0: 100_000_000, 19: 30_000_000, 25: 50_000_000}
	want := map[wire.OutPoint]btcutil.Amount{}
	outs := map[uint32]wire.OutPoint{}
	for _, idx := range []uint32{0, 19, 25} {
		addr, _ := wallet.address(0, idx)
		txid, err := net.Fund(ctx, addr, amounts[idx])
		if err != nil {
			t.Fatal(err)
		}
		pk, _ := wallet.PkScript(0, idx)
		op, v := findOut(t, net, txid, pk)
		outs[idx], want[op] = op, v
	}
	for _, idx := range []uint32{0, 19, 25} {
		op := outs[idx]
		ev := w.log.wait(t, fmt.Sprintf("FundingSeen of index %d", idx), func(e Event) bool {
			f, ok := e.(FundingSeen)
			return ok && f.UTXO.OutPoint == op
		}).(FundingSeen)
		if ev.UTXO.Height != 0 || ev.UTXO.Branch != 0 || ev.UTXO.Index != idx || ev.UTXO.Value != amounts[idx] {
			t.Fatalf("FundingSeen = %+v, want mempool coin of %v at 0/%d", ev.UTXO, amounts[idx], idx)
		}
	}
	if b, i, ok := w.Lookup(pk25); !ok || b != 0 || i != 25 {
		t.Fatalf("Lookup(0/25) = %d/%d %v after the window grew", b, i, ok)
	}
	checkAgainstNode(t, net, w.UTXOs(), want)

	hashes, err := net.Mine(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	_, tipHeight, err := net.RPC().GetBestBlock()
	if err != nil {
		t.Fatal(err)
	}
	for _, idx := range []uint32{0, 19, 25} {
		op := outs[idx]
		ev := w.log.wait(t, fmt.Sprintf("FundingConfirmed of index %d", idx), func(e Event) bool {
			f, ok := e.(FundingConfirmed)
			return ok && f.UTXO.OutPoint == op
		}).(FundingConfirmed)
		if ev.Confs != 1 || ev.UTXO.Height != tipHeight {
			t.Fatalf("FundingConfirmed = %+v, want 1 conf at height %d", ev, tipHeight)
		}
	}
	w.log.wait(t, "NewTip of the mined block", func(e Event) bool {
		n, ok := e.(NewTip)
		return ok && n.Tip.Hash == hashes[0] && n.Tip.Height == tipHeight
	})
	if tip := w.Tip(); tip.Hash != hashes[0] {
		t.Fatalf("Tip = %+v, want %s", tip, hashes[0])
	}
	checkAgainstNode(t, net, w.UTXOs(), want)

	// Spend receive 0: 0.4 BTC to an outside key, change to change branch index 0.
	spend := outs[0]
	u, ok := w.UTXO(spend)
	if !ok {
		t.Fatal("UTXO(receive 0) missing")
	}
	outside := newP2WPKHWallet(t, params, 9)
	outsidePk, _ := outside.PkScript(0, 0)
	changePk, _ := wallet.PkScript(1, 0)
	const fee = btcutil.Amount(2_000)
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&spend, nil, nil))
	tx.AddTxOut(wire.NewTxOut(40_000_000, outsidePk))
	tx.AddTxOut(wire.NewTxOut(int64(u.Value-40_000_000-fee), changePk))
	priv, _ := wallet.key(0, 0)
	sigHashes := txscript.NewTxSigHashes(tx, txscript.NewCannedPrevOutputFetcher(u.PkScript, int64(u.Value)))
	wit, err := txscript.WitnessSignature(tx, sigHashes, 0, int64(u.Value), u.PkScript, txscript.SigHashAll, priv, true)
	if err != nil {
		t.Fatal(err)
	}
	tx.TxIn[0].Witness = wit

	// A transaction spending a coin that does not exist is refused with the node's reason.
	bogus := tx.Copy()
	bogus.TxIn[0].PreviousOutPoint.Hash[0] ^= 0xff
	_, err = w.Broadcast(ctx, bogus)
	var se *electrum.ServerError
	if !errors.Is(err, ErrBroadcastRejected) || !errors.As(err, &se) || se.Message == "" {
		t.Fatalf("Broadcast(bogus) err = %v, want ErrBroadcastRejected with the server's reason", err)
	}
	t.Logf("bogus broadcast refused as expected: %v", err)

	spendNtfn, err := w.RegisterSpend(spend)
	if err != nil {
		t.Fatal(err)
	}
	defer spendNtfn.Cancel()
	if _, err := w.RegisterSpend(wire.OutPoint{Index: 7}); !errors.Is(err, ErrUnknownOutPoint) {
		t.Fatalf("RegisterSpend of a foreign outpoint: %v", err)
	}
	txid, err := w.Broadcast(ctx, tx)
	if err != nil || txid != tx.TxHash() {
		t.Fatalf("Broadcast = %s, %v; want %s", txid, err, tx.TxHash())
	}
	confNtfn, err := w.RegisterConf(txid, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer confNtfn.Cancel()
	select {
	case d := <-spendNtfn.Spend:
		if d.OutPoint != spend || d.SpentBy == nil || *d.SpentBy != txid {
			t.Fatalf("SpendDetail %+v", d)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no spend notification")
	}
	sp := w.log.wait(t, "Spent of receive 0", func(e Event) bool {
		s, ok := e.(Spent)
		return ok && s.OutPoint == spend
	}).(Spent)
	if sp.SpentBy == nil || *sp.SpentBy != txid {
		t.Fatalf("Spent.SpentBy = %v, want %s", sp.SpentBy, txid)
	}
	changeOp := wire.OutPoint{Hash: txid, Index: 1}
	w.log.wait(t, "FundingSeen of the change", func(e Event) bool {
		f, ok := e.(FundingSeen)
		return ok && f.UTXO.OutPoint == changeOp && f.UTXO.Branch == 1 && f.UTXO.Index == 0 && f.UTXO.Height == 0
	})
	delete(want, spend)
	want[changeOp] = u.Value - 40_000_000 - fee
	checkAgainstNode(t, net, w.UTXOs(), want)

	if _, err := net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	w.log.wait(t, "FundingConfirmed of the change", func(e Event) bool {
		f, ok := e.(FundingConfirmed)
		return ok && f.UTXO.OutPoint == changeOp && f.Confs == 1
	})
	select {
	case c := <-confNtfn.Confirmed:
		if c.TxID != txid || c.NumConfs != 1 || c.BlockHash != w.Tip().Hash {
			t.Fatalf("TxConfirmation %+v, tip %v", c, w.Tip())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no confirmation notification")
	}
	if res, err := net.RPC().GetTxOut(&spend.Hash, spend.Index, true); err != nil || res != nil {
		t.Fatalf("btcd gettxout of the spent coin = %v, %v; want spent", res, err)
	}
	checkAgainstNode(t, net, w.UTXOs(), want)
	before := w.UTXOs()
	tipBefore := w.Tip()
	// Acknowledge every event seen except the change's confirmation: only that one (and any
	// event that arrived after this snapshot) is delivered again after the restart, same id.
	var keep Event
	acked := map[uint64]bool{}
	for _, ev := range w.log.snapshot() {
		if ev.EventID() == 0 {
			t.Fatalf("event without an id: %#v", ev)
		}
		if f, ok := ev.(FundingConfirmed); ok && f.UTXO.OutPoint == changeOp {
			keep = ev
			continue
		}
		if err := w.Ack(ctx, ev.EventID()); err != nil {
			t.Fatal(err)
		}
		acked[ev.EventID()] = true
	}
	if err := w.Ack(ctx, 1<<40); !errors.Is(err, ErrUnknownEvent) {
		t.Fatalf("Ack of an unknown id: %v", err)
	}
	w.stop(t)

	// The persisted view, without connecting.
	st, err := ReadStatus(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tip != tipBefore || st.Confirmed != 30_000_000+50_000_000+want[changeOp] || st.Unconfirmed != 0 || len(st.UTXOs) != 3 {
		t.Fatalf("ReadStatus = %+v", st)
	}

	// Restart on the same database: ready with the same UTXO set, and no history refetched
	// because every server status equals the stored one.
	w2 := startWatcher(t, net.ElectrumURL(), db, wallet, params)
	if got := w2.UTXOs(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("after restart UTXOs =\n%v\nwant\n%v", got, before)
	}
	if h := w2.Health(); h.HistoryFetches != 0 || h.HistorySkipped != uint64(st.ScriptsUsed) || h.HistorySkipped == 0 {
		t.Fatalf("restart fetched %d histories and skipped %d; want 0 fetched, %d skipped (statuses unchanged)", h.HistoryFetches, h.HistorySkipped, st.ScriptsUsed)
	}
	redelivered := false
	for _, ev := range w2.log.snapshot() {
		if acked[ev.EventID()] {
			t.Fatalf("acknowledged event %d delivered again: %#v", ev.EventID(), ev)
		}
		if ev.EventID() == keep.EventID() {
			if fmt.Sprint(ev) != fmt.Sprint(keep) {
				t.Fatalf("redelivered %#v, want %#v", ev, keep)
			}
			redelivered = true
			continue
		}
		if _, ok := ev.(NewTip); !ok {
			t.Fatalf("restart with nothing new emitted %T", ev)
		}
	}
	if !redelivered {
		t.Fatalf("unacknowledged event %d not delivered again", keep.EventID())
	}
	checkAgainstNode(t, net, w2.UTXOs(), want)
	w2.stop(t)

	// A fresh database: a full sync finds the same coins, index 25 through the cascade.
	db2 := openStore(ctx, t, "fresh.db")
	defer db2.Close()
	w3 := startWatcher(t, net.ElectrumURL(), db2, wallet, params)
	if got := w3.UTXOs(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("fresh sync UTXOs =\n%v\nwant\n%v", got, before)
	}
	if h := w3.Health(); h.ScriptsTracked != 46+21 { // receive 0..45 (25+20), change 0..20
		t.Fatalf("fresh sync tracks %d scripts, want %d", h.ScriptsTracked, 46+21)
	}
	w3.stop(t)
}

// TestWatcherReconnects severs the connection to the real ElectrumX twice; the watcher must
// reconnect, resubscribe, and still report what happened while it was away.
func TestWatcherReconnects(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dn := startDevnet(ctx, t)
	cut := newProxy(t, dn.ElectrumAddr(), nil)
	wallet := newP2WPKHWallet(t, dn.Params(), 11)
	db := openStore(ctx, t, "chainwatch.db")
	defer db.Close()
	w := startWatcher(t, cut.URL(), db, wallet, dn.Params())
	defer w.stop(t)

	cut.Cut()
	addr, _ := wallet.address(0, 3)
	txid, err := dn.Fund(ctx, addr, 20_000_000)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := wallet.PkScript(0, 3)
	op, _ := findOut(t, dn, txid, pk)
	w.log.wait(t, "FundingSeen after a reconnect", func(e Event) bool {
		f, ok := e.(FundingSeen)
		return ok && f.UTXO.OutPoint == op
	})
	if n := cut.Accepted(); n < 2 {
		t.Fatalf("%d connections to the server, want a reconnect", n)
	}
	if h := w.Health(); h.LastError == "" {
		t.Fatalf("Health after a severed connection has no LastError: %+v", h)
	}

	cut.Cut()
	if _, err := dn.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	w.log.wait(t, "FundingConfirmed after a second reconnect", func(e Event) bool {
		f, ok := e.(FundingConfirmed)
		return ok && f.UTXO.OutPoint == op && f.Confs == 1
	})
	checkAgainstNode(t, dn, w.UTXOs(), map[wire.OutPoint]btcutil.Amount{op: 20_000_000})
	deadline := time.Now().Add(30 * time.Second)
	for !w.Health().Connected && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if h := w.Health(); !h.Connected || h.Tip != w.Tip() {
		t.Fatalf("health after reconnects = %+v", h)
	}
}
