package chainwatch

import (
	"context"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/internal/devnet"
)

// TestFetchAheadKeepsTheGapLimit: a dense wallet (receive indexes 0–44 used) is synced with
// histories fetched ahead of the window, and a payment to index 70 — past the gap after 44, but
// within reach of the histories fetched ahead (up to 500 scripts past the window) — is still
// not taken: the window ends at 64, as a gap-limit wallet's does. The UTXO set equals btcd's;
// the histories fetched ahead were asked (Health.HistoryFetches counts them) and a fresh
// restart's re-subscription finds everything unchanged.
func TestFetchAheadKeepsTheGapLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dn := startDevnet(ctx, t)
	wallet := newP2WPKHWallet(t, dn.Params(), 21)
	var outs []*wire.TxOut
	for i := uint32(0); i < 45; i++ {
		pk, err := wallet.PkScript(0, i)
		if err != nil {
			t.Fatal(err)
		}
		outs = append(outs, wire.NewTxOut(10_000+int64(i), pk))
	}
	far, err := wallet.PkScript(0, 70)
	if err != nil {
		t.Fatal(err)
	}
	outs = append(outs, wire.NewTxOut(70_000, far))
	tx, err := dn.FundOutputs(ctx, outs, devnet.FundOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dn.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	want := map[wire.OutPoint]btcutil.Amount{}
	for i := range 45 {
		want[wire.OutPoint{Hash: tx.TxHash(), Index: uint32(i)}] = btcutil.Amount(10_000 + i)
	}

	db := openStore(ctx, t, "chainwatch.db")
	defer db.Close()
	w := startWatcher(t, dn.ElectrumURL(), db, wallet, dn.Params())
	deadline := time.Now().Add(time.Minute)
	for len(w.UTXOs()) < len(want) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	checkAgainstNode(t, dn, w.UTXOs(), want)
	if _, _, ok := w.Lookup(far); ok {
		t.Fatal("index 70 is tracked: the window went past the gap")
	}
	if b, i, ok := w.Lookup(mustPk(t, wallet, 0, 64)); !ok || b != 0 || i != 64 {
		t.Fatal("index 64 (44 + lookahead 20) is not tracked")
	}
	h := w.Health()
	if h.ScriptsTracked != 65+20 {
		t.Fatalf("tracking %d scripts, want 65 receive + 20 change", h.ScriptsTracked)
	}
	// 45 used scripts, none fetched twice; the ones asked ahead of the window come on top.
	if h.HistoryFetches <= 45 {
		t.Fatalf("%d histories fetched: nothing was fetched ahead of the window", h.HistoryFetches)
	}
	w.stop(t)

	w2 := startWatcher(t, dn.ElectrumURL(), db, wallet, dn.Params())
	defer w2.stop(t)
	checkAgainstNode(t, dn, w2.UTXOs(), want)
	if h := w2.Health(); h.HistoryFetches != 0 {
		t.Fatalf("restart fetched %d histories, want 0", h.HistoryFetches)
	}
}

func mustPk(t *testing.T, w p2wpkhWallet, branch, index uint32) []byte {
	t.Helper()
	pk, err := w.PkScript(branch, index)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}
