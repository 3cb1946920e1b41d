package daemon

import (
	"context"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/psbtflow"
)

// chainView adapts the watcher to psbt.ChainView and psbtflow.OutboundChain. It converts,
// it does not decide: which coin may be spent is chainwatch's rule (Watcher.SpendableCoin).
type chainView struct{ w *chainwatch.Watcher }

// Coin returns the wallet coin at op if a transaction in the next block may spend it (immature
// coinbase outputs cannot be spent yet).
func (c chainView) Coin(op wire.OutPoint) (psbt.Coin, bool) {
	u, ok := c.w.SpendableCoin(op)
	if !ok {
		return psbt.Coin{}, false
	}
	return psbtflow.CoinOf(u), true
}

func (c chainView) Lookup(pkScript []byte) (uint32, uint32, bool)     { return c.w.Lookup(pkScript) }
func (c chainView) SpendableUTXOs() []chainwatch.UTXO                 { return c.w.SpendableUTXOs() }
func (c chainView) Tx(txid chainhash.Hash) (chainwatch.TxState, bool) { return c.w.Tx(txid) }
func (c chainView) Tip() chainwatch.Tip                               { return c.w.Tip() }
func (c chainView) Broadcast(ctx context.Context, tx *wire.MsgTx) (chainhash.Hash, error) {
	return c.w.Broadcast(ctx, tx)
}
func (c chainView) EstimateFee(ctx context.Context, blocks int) electrum.FeeEstimate {
	return c.w.EstimateFee(ctx, blocks)
}
func (c chainView) TipHeight() int32 { return c.w.Tip().Height }

// Synced is true once the watcher's initial sync has completed.
func (c chainView) Synced() bool {
	select {
	case <-c.w.Ready():
		return true
	default:
		return false
	}
}
