package chainwatch

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// recv waits up to 60 s for a value on ch.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(60 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// TestWatcherForeignNotifications: RegisterConfirmationsNtfn and RegisterSpendNtfn for a script
// that is not the wallet's, on the local test network. A payment to it confirms (an update at 1,
// Confirmed at 2 with btcd's block), is reorged (invalidateblock; btcd re-mines it at the same
// height in another block: NegativeConf, then Confirmed again in the new block), and its output
// is spent by a transaction signed here (Spend names it).
func TestWatcherForeignNotifications(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	net := startDevnet(ctx, t)
	params := net.Params()
	wallet := newP2WPKHWallet(t, params, 21)
	other := newP2WPKHWallet(t, params, 22) // not watched as a wallet
	db := openStore(ctx, t, "foreign.db")
	defer db.Close()
	w := startWatcher(t, net.ElectrumURL(), db, wallet, params)
	defer w.stop(t)

	addr, _ := other.address(0, 0)
	pk, _ := other.PkScript(0, 0)
	if _, _, ours := w.Lookup(pk); ours {
		t.Fatal("the other wallet's script is the watcher's")
	}
	if _, err := w.RegisterSpendNtfn(wire.OutPoint{Index: 1}, nil, 0); !errors.Is(err, ErrConfig) {
		t.Fatalf("RegisterSpendNtfn without a script: %v", err)
	}
	fund, err := net.Fund(ctx, addr, 30_000_000)
	if err != nil {
		t.Fatal(err)
	}
	op, value := findOut(t, net, fund, pk)
	conf, err := w.RegisterConfirmationsNtfn(fund, pk, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conf.Cancel()
	spend, err := w.RegisterSpendNtfn(op, pk, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer spend.Cancel()

	mined, err := net.Mine(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if n := recv(t, conf.Updates, "1 confirmation"); n != 1 {
		t.Fatalf("update %d, want 1", n)
	}
	more, err := net.Mine(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	c := recv(t, conf.Confirmed, "Confirmed at 2")
	hdr, err := net.RPC().GetBlockVerbose(&mined[0])
	if err != nil {
		t.Fatal(err)
	}
	if c.TxID != fund || c.BlockHash != mined[0] || int64(c.BlockHeight) != hdr.Height || c.NumConfs != 2 {
		t.Fatalf("Confirmed %+v, want block %s at %d", c, mined[0], hdr.Height)
	}
	waitTip(t, w.Watcher, more[0])

	// Reorg: the block is invalidated (with its child) and btcd re-mines the transaction at the
	// same height; three blocks, because ElectrumX moves only when the daemon's height grows.
	remined := remine(ctx, t, net, mined[0], 3, fund)
	if depth := recv(t, conf.NegativeConf, "NegativeConf"); depth != 2 {
		t.Fatalf("NegativeConf %d, want 2", depth)
	}
	c = recv(t, conf.Confirmed, "Confirmed again in the new block")
	if c.BlockHash != remined[0] || int64(c.BlockHeight) != hdr.Height {
		t.Fatalf("Confirmed again %+v, want block %s at %d", c, remined[0], hdr.Height)
	}
	select {
	case d := <-spend.Spend:
		t.Fatalf("Spend before any spend: %+v", d)
	default:
	}

	// Spend the output with the other wallet's key.
	key, err := other.key(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	to, _ := wallet.PkScript(0, 0)
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&op, nil, nil))
	tx.AddTxOut(wire.NewTxOut(int64(value)-5_000, to))
	fetcher := txscript.NewCannedPrevOutputFetcher(pk, int64(value))
	wit, err := txscript.WitnessSignature(tx, txscript.NewTxSigHashes(tx, fetcher), 0, int64(value), pk, txscript.SigHashAll, key, true)
	if err != nil {
		t.Fatal(err)
	}
	tx.TxIn[0].Witness = wit
	spentBy, err := w.Broadcast(ctx, tx)
	if err != nil {
		t.Fatal(err)
	}
	d := recv(t, spend.Spend, "Spend")
	if d.OutPoint != op || d.SpentBy == nil || *d.SpentBy != spentBy {
		t.Fatalf("Spend %+v, want %v spent by %s", d, op, spentBy)
	}
	// The spend pays the wallet: the wallet path sees it too.
	w.log.wait(t, "FundingSeen of the spend's output", func(e Event) bool {
		f, ok := e.(FundingSeen)
		return ok && f.UTXO.OutPoint.Hash == spentBy && f.UTXO.Value == btcutil.Amount(value)-5_000
	})
}
