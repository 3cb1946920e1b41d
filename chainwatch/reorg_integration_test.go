package chainwatch

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/internal/devnet"
)

func invalidateBlock(t *testing.T, net *devnet.Network, h chainhash.Hash) {
	t.Helper()
	p, _ := json.Marshal(h.String())
	if _, err := net.RPC().RawRequest("invalidateblock", []json.RawMessage{p}); err != nil {
		t.Fatalf("invalidateblock %s: %v", h, err)
	}
}

// remine invalidates the block invalid and mines blocks new ones; the first must hold the
// transaction txid again (btcd re-mines it at the same height), or the test cannot go on.
func remine(ctx context.Context, t *testing.T, net *devnet.Network, invalid chainhash.Hash, blocks int, txid chainhash.Hash) []chainhash.Hash {
	t.Helper()
	invalidateBlock(t, net, invalid)
	remined, err := net.Mine(ctx, blocks)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := net.RPC().GetBlock(&remined[0])
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, tx := range blk.Transactions {
		found = found || tx.TxHash() == txid
	}
	if !found {
		t.Fatalf("btcd did not re-mine %s in %s; the case cannot be tested", txid, remined[0])
	}
	return remined
}

// TestWatcherReorgs runs reorgs on the local test network (btcd invalidateblock + mining):
//   - re-mine at the same height: the block that confirmed a wallet funding is invalidated and
//     the same transaction is mined again at the same height in another block. ElectrumX sends
//     no scripthash notification for that (the status is unchanged); the watcher finds it
//     because the header at that height changed: FundingReorged, then FundingConfirmed in the
//     new block after a new merkle proof;
//   - a 1-deep reorg of a block without wallet transactions: NewTip reports the fork, the
//     wallet's UTXOs keep their block;
//   - a restart after all this finds the stored headers valid and nothing to refetch.
//
// After each case the UTXO set equals btcd's and every confirmed UTXO's block hash is btcd's
// block at that height.
func TestWatcherReorgs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	net := startDevnet(ctx, t)
	params := net.Params()
	wallet := newP2WPKHWallet(t, params, 9)
	db := openStore(ctx, t, "reorg.db")
	defer db.Close()
	w := startWatcher(t, net.ElectrumURL(), db, wallet, params)

	addr, _ := wallet.address(0, 3)
	pk, _ := wallet.PkScript(0, 3)
	fund, err := net.Fund(ctx, addr, 20_000_000)
	if err != nil {
		t.Fatal(err)
	}
	op, value := findOut(t, net, fund, pk)
	conf, err := w.RegisterConf(fund, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer conf.Cancel()
	mined, err := net.Mine(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	first := w.log.wait(t, "FundingConfirmed", func(e Event) bool {
		f, ok := e.(FundingConfirmed)
		return ok && f.UTXO.OutPoint == op
	}).(FundingConfirmed)
	if first.UTXO.BlockHash != mined[0] {
		t.Fatalf("confirmed in %s, btcd mined %s", first.UTXO.BlockHash, mined[0])
	}
	height := first.UTXO.Height
	checkConfirmedBlocks(t, net, w.UTXOs())

	// Re-mine at the same height in a different block.
	remined := remine(ctx, t, net, mined[0], 2, fund)
	reorged := w.log.wait(t, "FundingReorged", func(e Event) bool {
		f, ok := e.(FundingReorged)
		return ok && f.UTXO.OutPoint == op
	}).(FundingReorged)
	if reorged.UTXO.BlockHash != mined[0] || reorged.UTXO.Height != height {
		t.Fatalf("FundingReorged %+v", reorged.UTXO)
	}
	again := w.log.wait(t, "FundingConfirmed in the new block", func(e Event) bool {
		f, ok := e.(FundingConfirmed)
		return ok && f.UTXO.OutPoint == op && f.UTXO.BlockHash == remined[0]
	}).(FundingConfirmed)
	if again.UTXO.Height != height || again.EventID() <= reorged.EventID() {
		t.Fatalf("re-confirmed %+v (id %d after reorg id %d)", again.UTXO, again.EventID(), reorged.EventID())
	}
	w.log.wait(t, "NewTip with the fork", func(e Event) bool {
		n, ok := e.(NewTip)
		return ok && n.Reorged && n.Fork == height-1
	})
	waitTip(t, w.Watcher, remined[1])
	// RegisterConf(fund, 2): one confirmation (an update), lost in the reorg (NegativeConf),
	// then two in the new chain (Confirmed, in the new block).
	if n := <-conf.Updates; n != 1 {
		t.Fatalf("update %d, want 1", n)
	}
	if d := <-conf.NegativeConf; d != 1 {
		t.Fatalf("NegativeConf %d, want 1", d)
	}
	if c := <-conf.Confirmed; c.BlockHash != remined[0] || c.BlockHeight != height || c.NumConfs != 2 {
		t.Fatalf("Confirmed %+v", c)
	}
	checkAgainstNode(t, net, w.UTXOs(), map[wire.OutPoint]btcutil.Amount{op: value})
	checkConfirmedBlocks(t, net, w.UTXOs())

	// A 1-deep reorg above the wallet's block: the UTXO keeps its block.
	// The replacement block carries a payment to someone else, so that it differs from the
	// invalidated one (btcd would otherwise build the very same block again within a second).
	before := len(w.log.snapshot())
	invalidateBlock(t, net, remined[1])
	other, _ := newP2WPKHWallet(t, params, 10).address(0, 0)
	if _, err := net.Fund(ctx, other, 1_000_000); err != nil {
		t.Fatal(err)
	}
	// ElectrumX notices a new chain only when the node's height grows, so the fork gets two
	// blocks (452', 453') against the invalidated 452.
	newBlocks, err := net.Mine(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	tipAgain := newBlocks[1:]
	w.log.wait(t, "NewTip of the 1-deep reorg", func(e Event) bool {
		n, ok := e.(NewTip)
		return ok && n.Reorged && n.Tip.Hash == tipAgain[0] && n.Fork == height
	})
	for _, ev := range w.log.snapshot()[before:] {
		if _, ok := ev.(NewTip); !ok {
			t.Fatalf("reorg above the wallet's blocks emitted %#v", ev)
		}
	}
	checkConfirmedBlocks(t, net, w.UTXOs())
	if h := w.Health(); h.Unproven != 0 || h.SPVFailures != 0 {
		t.Fatalf("health %+v", h)
	}
	w.stop(t)

	w2 := startWatcher(t, net.ElectrumURL(), db, wallet, params)
	if h := w2.Health(); h.HistoryFetches != 0 || h.Tip.Hash != tipAgain[0] {
		t.Fatalf("restart: %+v", h)
	}
	checkConfirmedBlocks(t, net, w2.UTXOs())
	w2.stop(t)

	// A reorg while the watcher is stopped: the wallet's block is replaced (the funding is
	// re-mined at the same height once more). On restart the server's tip does not connect to
	// the stored chain; the watcher fetches back to the fork point, finds the stored block of
	// the funding gone and proves the funding in the new one.
	invalidateBlock(t, net, remined[0])
	if _, err := net.Fund(ctx, other, 1_000_000); err != nil {
		t.Fatal(err)
	}
	offline, err := net.Mine(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	w3 := startWatcher(t, net.ElectrumURL(), db, wallet, params)
	w3.log.wait(t, "FundingReorged after the offline reorg", func(e Event) bool {
		f, ok := e.(FundingReorged)
		return ok && f.UTXO.OutPoint == op && f.UTXO.BlockHash == remined[0]
	})
	w3.log.wait(t, "FundingConfirmed in the block mined while stopped", func(e Event) bool {
		f, ok := e.(FundingConfirmed)
		return ok && f.UTXO.OutPoint == op && f.UTXO.BlockHash == offline[0]
	})
	if w3.Tip().Hash != offline[3] {
		t.Fatalf("tip %v, want %s", w3.Tip(), offline[3])
	}
	checkAgainstNode(t, net, w3.UTXOs(), map[wire.OutPoint]btcutil.Amount{op: value})
	checkConfirmedBlocks(t, net, w3.UTXOs())
	w3.stop(t)
}

// checkConfirmedBlocks asserts that every confirmed UTXO's block is btcd's block at its height.
func checkConfirmedBlocks(t *testing.T, net *devnet.Network, us []UTXO) {
	t.Helper()
	for _, u := range us {
		if u.Height == 0 {
			continue
		}
		h, err := net.RPC().GetBlockHash(int64(u.Height))
		if err != nil {
			t.Fatal(err)
		}
		if *h != u.BlockHash {
			t.Fatalf("UTXO %v: block %s at %d, btcd has %s", u.OutPoint, u.BlockHash, u.Height, h)
		}
	}
}

// waitTip waits until the watcher's header chain has tip hash.
func waitTip(t *testing.T, w *Watcher, hash chainhash.Hash) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for w.Tip().Hash != hash {
		if time.Now().After(deadline) {
			t.Fatalf("tip %v, want %s", w.Tip(), hash)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
