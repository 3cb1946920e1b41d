package chainwatch

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/store"
)

// mineCoinbaseTo builds a block on btcd's tip whose coinbase pays the block subsidy to pkScript
// (btcd's `generate` always pays its --miningaddr), solves it (regtest difficulty) and submits
// it with submitblock. It returns the coinbase outpoint, its value and the block's height.
func mineCoinbaseTo(t *testing.T, net *devnet.Network, pkScript []byte) (wire.OutPoint, btcutil.Amount, int32) {
	t.Helper()
	rpc := net.RPC()
	tipHash, tipHeight, err := rpc.GetBestBlock()
	if err != nil {
		t.Fatal(err)
	}
	tip, err := rpc.GetBlockHeader(tipHash)
	if err != nil {
		t.Fatal(err)
	}
	height := tipHeight + 1
	sigScript, err := txscript.NewScriptBuilder().AddInt64(int64(height)).AddInt64(0x636f7369).Script() // BIP-34 height, extra nonce
	if err != nil {
		t.Fatal(err)
	}
	value := blockchain.CalcBlockSubsidy(height, net.Params())
	cb := wire.NewMsgTx(2)
	cb.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: wire.MaxPrevOutIndex}, SignatureScript: sigScript, Sequence: wire.MaxTxInSequenceNum})
	cb.AddTxOut(wire.NewTxOut(value, pkScript))
	ts := time.Now().Truncate(time.Second)
	if !ts.After(tip.Timestamp) {
		ts = tip.Timestamp.Add(time.Second)
	}
	blk := wire.NewMsgBlock(&wire.BlockHeader{Version: 0x20000000, PrevBlock: *tipHash, MerkleRoot: cb.TxHash(), Timestamp: ts, Bits: tip.Bits})
	if err := blk.AddTransaction(cb); err != nil {
		t.Fatal(err)
	}
	target := blockchain.CompactToBig(blk.Header.Bits)
	for {
		h := blk.Header.BlockHash()
		if blockchain.HashToBig(&h).Cmp(target) <= 0 {
			break
		}
		blk.Header.Nonce++
	}
	if err := rpc.SubmitBlock(btcutil.NewBlock(blk), nil); err != nil {
		t.Fatalf("submitblock: %v", err)
	}
	if best, _, err := rpc.GetBestBlock(); err != nil || *best != blk.Header.BlockHash() {
		t.Fatalf("btcd did not take the submitted block: best %v, %v", best, err)
	}
	return wire.OutPoint{Hash: cb.TxHash(), Index: 0}, btcutil.Amount(value), height
}

// spendAccepted asks btcd (testmempoolaccept: the mempool checks a transaction for the next
// block) whether a transaction spending the P2WPKH output op of wallet script 0/index may enter
// its mempool now; reason is btcd's reject reason.
func spendAccepted(t *testing.T, net *devnet.Network, wallet p2wpkhWallet, index uint32, op wire.OutPoint, value btcutil.Amount) (ok bool, reason string) {
	t.Helper()
	pk, _ := wallet.PkScript(0, index)
	key, err := wallet.key(0, index)
	if err != nil {
		t.Fatal(err)
	}
	to, _ := wallet.PkScript(1, 0)
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&op, nil, nil))
	tx.AddTxOut(wire.NewTxOut(int64(value)-10_000, to))
	fetcher := txscript.NewCannedPrevOutputFetcher(pk, int64(value))
	wit, err := txscript.WitnessSignature(tx, txscript.NewTxSigHashes(tx, fetcher), 0, int64(value), pk, txscript.SigHashAll, key, true)
	if err != nil {
		t.Fatal(err)
	}
	tx.TxIn[0].Witness = wit
	res, err := net.RPC().TestMempoolAccept([]*wire.MsgTx{tx}, 0)
	if err != nil {
		t.Fatalf("testmempoolaccept: %v", err)
	}
	if len(res) != 1 {
		t.Fatalf("testmempoolaccept: %d results", len(res))
	}
	return res[0].Allowed, res[0].RejectReason
}

// TestWatcherCoinbaseMaturity: a block whose coinbase pays a wallet script (submitted to btcd)
// gives FundingSeen/FundingConfirmed with Coinbase set; the output stays out of SpendableUTXOs
// and FundingMatured does not come while btcd itself refuses to spend it in the next block (99
// confirmations); at 100 confirmations btcd accepts the spend and FundingMatured comes with that
// tip. A 1-deep reorg above it changes nothing about its maturity. The UTXO set equals btcd's,
// and the events keep their ids over a restart (the tracker test covers FundingImmature).
func TestWatcherCoinbaseMaturity(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	net := startDevnet(ctx, t)
	params := net.Params()
	wallet := newP2WPKHWallet(t, params, 13)
	dbPath := filepath.Join(t.TempDir(), "coinbase.db")
	db, err := store.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w := startWatcher(t, net.ElectrumURL(), db, wallet, params)

	pk, _ := wallet.PkScript(0, 2)
	op, value, cbHeight := mineCoinbaseTo(t, net, pk)
	if _, err := net.Mine(ctx, 1); err != nil { // also waits until ElectrumX has both blocks
		t.Fatal(err)
	}
	conf := w.log.wait(t, "FundingConfirmed of the coinbase", func(e Event) bool {
		f, ok := e.(FundingConfirmed)
		return ok && f.UTXO.OutPoint == op
	}).(FundingConfirmed)
	if !conf.UTXO.Coinbase || conf.UTXO.Height != cbHeight || conf.UTXO.Value != value {
		t.Fatalf("FundingConfirmed %+v, want a coinbase of %v at %d", conf.UTXO, value, cbHeight)
	}
	checkAgainstNode(t, net, w.UTXOs(), map[wire.OutPoint]btcutil.Amount{op: value})

	// 99 confirmations: btcd refuses the spend in the next block, and so do we.
	mined, err := net.Mine(ctx, 97)
	if err != nil {
		t.Fatal(err)
	}
	waitTip(t, w.Watcher, mined[len(mined)-1])
	if ok, reason := spendAccepted(t, net, wallet, 2, op, value); ok {
		t.Fatal("btcd accepts spending a coinbase with 99 confirmations; the test's premise is wrong")
	} else {
		t.Logf("btcd at 99 confirmations: %s", reason)
	}
	if len(w.SpendableUTXOs()) != 0 {
		t.Fatalf("SpendableUTXOs offers the coinbase at 99 confirmations: %+v", w.SpendableUTXOs())
	}

	// 100 confirmations: spendable in the next block for btcd and for us.
	mined, err = net.Mine(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	matured := w.log.wait(t, "FundingMatured", func(e Event) bool {
		f, ok := e.(FundingMatured)
		return ok && f.UTXO.OutPoint == op
	}).(FundingMatured)
	if matured.Tip.Height != cbHeight+CoinbaseMaturity-1 || matured.Tip.Hash != mined[0] || matured.UTXO.Height != cbHeight {
		t.Fatalf("FundingMatured at tip %+v for %+v; want the tip at %d (%s)", matured.Tip, matured.UTXO, cbHeight+CoinbaseMaturity-1, mined[0])
	}
	if ok, reason := spendAccepted(t, net, wallet, 2, op, value); !ok {
		t.Fatalf("btcd refuses the spend at 100 confirmations: %s", reason)
	}
	waitTip(t, w.Watcher, mined[0])
	if sp := w.SpendableUTXOs(); len(sp) != 1 || sp[0].OutPoint != op {
		t.Fatalf("SpendableUTXOs at 100 confirmations: %+v", sp)
	}

	// A 1-deep reorg of the block that matured it: the coinbase keeps its block and stays
	// mature; no FundingImmature, no second FundingMatured. (A best chain that gets shorter,
	// which would make it immature again, is not something ElectrumX serves: it only moves on
	// when the daemon's height grows. The tracker test covers that case.)
	invalidateBlock(t, net, mined[0])
	old := mined[0]
	mined, err = net.Mine(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	w.log.wait(t, "NewTip with the fork", func(e Event) bool {
		n, ok := e.(NewTip)
		return ok && n.Reorged && n.Fork == cbHeight+CoinbaseMaturity-2
	})
	waitTip(t, w.Watcher, mined[1])
	if mined[0] == old {
		t.Fatal("btcd mined the invalidated block again")
	}
	for _, ev := range w.log.snapshot() {
		switch e := ev.(type) {
		case FundingImmature:
			t.Fatalf("FundingImmature after a reorg above the coinbase: %+v", e)
		case FundingMatured:
			if e.EventID() != matured.EventID() {
				t.Fatalf("a second FundingMatured: %+v", e)
			}
		}
	}
	if ok, reason := spendAccepted(t, net, wallet, 2, op, value); !ok {
		t.Fatalf("btcd refuses the spend after the reorg: %s", reason)
	}
	checkAgainstNode(t, net, w.UTXOs(), map[wire.OutPoint]btcutil.Amount{op: value})
	w.stop(t)

	// Unacknowledged events come back with the same ids after a restart, and nothing new about
	// the coinbase is invented.
	w2 := startWatcher(t, net.ElectrumURL(), db, wallet, params)
	defer w2.stop(t)
	got := w2.log.wait(t, "the FundingMatured, redelivered", func(e Event) bool {
		_, ok := e.(FundingMatured)
		return ok && e.EventID() == matured.EventID()
	}).(FundingMatured)
	if got.UTXO.OutPoint != matured.UTXO.OutPoint || got.UTXO.Height != matured.UTXO.Height || got.Tip != matured.Tip {
		t.Fatalf("redelivered %+v, first %+v", got, matured)
	}
	for _, ev := range w2.log.snapshot() {
		if m, ok := ev.(FundingMatured); ok && m.EventID() != matured.EventID() {
			t.Fatalf("a new FundingMatured after the restart: %+v", m)
		}
	}
	if sp := w2.SpendableUTXOs(); len(sp) != 1 || sp[0].OutPoint != op || !sp[0].Coinbase {
		t.Fatalf("after restart SpendableUTXOs = %+v", sp)
	}
}
