package devnet

import (
	"context"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// newP2WPKH returns the output script of a fresh P2WPKH address.
func newP2WPKH(t *testing.T, n *Network) []byte {
	t.Helper()
	_, pk := newP2WPKHAddress(t, n)
	return pk
}

// newP2WPKHAddress returns a fresh P2WPKH address (key thrown away) and its output script.
func newP2WPKHAddress(t *testing.T, n *Network) (btcutil.Address, []byte) {
	t.Helper()
	priv, err := btcec.NewPrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	addr, err := btcutil.NewAddressWitnessPubKeyHash(btcutil.Hash160(priv.PubKey().SerializeCompressed()), n.Params())
	if err != nil {
		t.Fatal(err)
	}
	pk, err := txscript.PayToAddrScript(addr)
	if err != nil {
		t.Fatal(err)
	}
	return addr, pk
}

// txHeight is the height btcd confirmed txid at, 0 in the mempool, -1 when btcd has no such
// unspent output 0.
func txHeight(t *testing.T, n *Network, txid chainhash.Hash) int64 {
	t.Helper()
	res, err := n.RPC().GetTxOut(&txid, 0, true)
	if err != nil {
		t.Fatalf("gettxout %s:0: %v", txid, err)
	}
	if res == nil {
		return -1
	}
	if res.Confirmations == 0 {
		return 0
	}
	_, tip, err := n.RPC().GetBestBlock()
	if err != nil {
		t.Fatal(err)
	}
	return int64(tip) - res.Confirmations + 1
}

// TestNetworkChainOps covers the helpers for chain-watching tests: many scripts funded at once,
// an RBF replacement, a reorg that drops a payment, a re-mine at the same height, and ElectrumX
// stopped and started on the same port and index.
func TestNetworkChainOps(t *testing.T) {
	n := startNetwork(t, Config{RelayPorts: []int{}})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// 250 scripts in 3 transactions of ≤ 100 outputs, one output each.
	scripts := make([][]byte, 250)
	for i := range scripts {
		scripts[i] = newP2WPKH(t, n)
	}
	txids, err := n.FundScripts(ctx, scripts, 10_000, 100)
	if err != nil {
		t.Fatalf("FundScripts: %v", err)
	}
	if len(txids) != 3 {
		t.Fatalf("FundScripts made %d transactions, want 3", len(txids))
	}
	if _, err := n.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 99, 100, 249} {
		op := wire.OutPoint{Hash: txids[i/100], Index: uint32(i % 100)}
		res, err := n.RPC().GetTxOut(&op.Hash, op.Index, false)
		if err != nil || res == nil || res.Confirmations != 1 || res.Value != 0.0001 {
			t.Fatalf("gettxout %v (script %d) = %+v, %v", op, i, res, err)
		}
		if u := listUnspent(t, ctx, n.ElectrumAddr(), scripts[i]); len(u) != 1 || u[0].TxHash != op.Hash.String() || u[0].TxPos != int(op.Index) {
			t.Fatalf("ElectrumX listunspent of script %d = %+v, want %v", i, u, op)
		}
	}

	// A replaceable payment, replaced by fee: the first payment is gone, the second is there.
	a, b := newP2WPKH(t, n), newP2WPKH(t, n)
	orig, err := n.FundOutputs(ctx, []*wire.TxOut{wire.NewTxOut(1_000_000, a)}, FundOptions{RBF: true})
	if err != nil {
		t.Fatalf("FundOutputs(RBF): %v", err)
	}
	repl, err := n.ReplaceFunding(ctx, orig, []*wire.TxOut{wire.NewTxOut(900_000, b)}, 20)
	if err != nil {
		t.Fatalf("ReplaceFunding: %v", err)
	}
	if h := txHeight(t, n, orig.TxHash()); h != -1 {
		t.Fatalf("replaced tx still has output 0 (height %d)", h)
	}
	if h := txHeight(t, n, repl.TxHash()); h != 0 {
		t.Fatalf("replacement height %d, want mempool", h)
	}
	if _, err := n.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}

	// A 3-deep reorg in which a conflicting transaction takes the place of a confirmed payment.
	pay, err := n.FundOutputs(ctx, []*wire.TxOut{wire.NewTxOut(2_000_000, a)}, FundOptions{RBF: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Mine(ctx, 3); err != nil {
		t.Fatal(err)
	}
	_, tipBefore, _ := n.RPC().GetBestBlock()
	var conflict *wire.MsgTx
	res, err := n.Reorg(ctx, 3, func(ctx context.Context) error {
		if h := txHeight(t, n, pay.TxHash()); h != 0 {
			t.Errorf("after invalidateblock the payment is at height %d, want back in the mempool", h)
		}
		var err error
		conflict, err = n.ReplaceFunding(ctx, pay, []*wire.TxOut{wire.NewTxOut(1_500_000, b)}, 30)
		return err
	})
	if err != nil {
		t.Fatalf("Reorg: %v", err)
	}
	if len(res.Old) != 3 || len(res.New) != 4 || res.ForkHeight != int64(tipBefore)-3 {
		t.Fatalf("Reorg = %+v, want 3 old and 4 new blocks from height %d", res, tipBefore-3)
	}
	if h := txHeight(t, n, pay.TxHash()); h != -1 {
		t.Fatalf("the conflicted payment is still unspent at height %d", h)
	}
	if h := txHeight(t, n, conflict.TxHash()); h != res.ForkHeight+1 {
		t.Fatalf("the conflicting tx is at height %d, want %d", h, res.ForkHeight+1)
	}
	if u := listUnspent(t, ctx, n.ElectrumAddr(), b); len(u) != 2 {
		t.Fatalf("ElectrumX listunspent of b after the reorg = %+v, want the replacement and the conflict", u)
	}

	// Re-mine at the same height: same txid, same height, another block.
	p2, err := n.Fund(ctx, mustAddr(t, n, b), 3_000_000)
	if err != nil {
		t.Fatal(err)
	}
	mined, err := n.Mine(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	h := txHeight(t, n, p2)
	rm, err := n.RemineTip(ctx)
	if err != nil {
		t.Fatalf("RemineTip: %v", err)
	}
	if rm.Old[0] != mined[0] || rm.New[0] == mined[0] || len(rm.New) != 2 {
		t.Fatalf("RemineTip = %+v, old tip %s", rm, mined[0])
	}
	if h2 := txHeight(t, n, p2); h2 != h {
		t.Fatalf("re-mined payment at height %d, was %d", h2, h)
	}
	if got, err := n.RPC().GetBlockHash(h); err != nil || *got != rm.New[0] {
		t.Fatalf("block at %d = %v, %v; want the re-mined %s", h, got, err, rm.New[0])
	}

	// ElectrumX stopped and started again: same port, same index, catches up on what was mined.
	if err := n.StopElectrumX(ctx); err != nil {
		t.Fatalf("StopElectrumX: %v", err)
	}
	if _, err := n.generate(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := n.StartElectrumX(ctx); err != nil {
		t.Fatalf("StartElectrumX: %v", err)
	}
	if err := n.StartElectrumX(ctx); err == nil {
		t.Fatal("StartElectrumX of a running ElectrumX succeeded")
	}
	if u := listUnspent(t, ctx, n.ElectrumAddr(), scripts[0]); len(u) != 1 {
		t.Fatalf("after the restart listunspent of script 0 = %+v", u)
	}
	if _, err := n.Mine(ctx, 1); err != nil {
		t.Fatalf("Mine after the restart: %v", err)
	}
}

func mustAddr(t *testing.T, n *Network, pkScript []byte) btcutil.Address {
	t.Helper()
	_, addrs, _, err := txscript.ExtractPkScriptAddrs(pkScript, n.Params())
	if err != nil || len(addrs) != 1 {
		t.Fatalf("address of %x: %v", pkScript, err)
	}
	return addrs[0]
}
