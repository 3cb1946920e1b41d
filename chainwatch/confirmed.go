package chainwatch

// Proven spends: the facts the spend exposure of psbtflow moves on. A wallet coin is spent, as
// far as a co-signer may act on it, only by a transaction whose merkle proof
// (blockchain.transaction.get_merkle) checked against the watcher's own header chain, and only
// while that header chain still has the block the proof was checked against. A mempool spend,
// a history the server stops listing, or a height the server claims are never such facts.

import (
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// ProvenSpend is a wallet transaction spending a given outpoint, confirmed by a merkle proof
// checked against the watcher's header chain. UnsignedTxID is its txid with every signature
// script and witness removed (the txid a PSBT's unsigned transaction has: equal to TxID for an
// all-segwit transaction), so a signed legacy transaction is recognised as the one signed.
// BlockTime is the header's timestamp (BIP-113 bounds it only loosely: up to two hours ahead of
// the network's time, above the median of the 11 previous blocks).
type ProvenSpend struct {
	TxID         chainhash.Hash
	UnsignedTxID chainhash.Hash
	Height       int32
	BlockHash    chainhash.Hash
	BlockTime    time.Time
}

// provenSpenders is Watcher.ProvenSpenders on the tracker (not safe for concurrent use).
func (t *Tracker) provenSpenders(ops []wire.OutPoint) map[wire.OutPoint]ProvenSpend {
	want := make(map[wire.OutPoint]bool, len(ops))
	for _, op := range ops {
		want[op] = true
	}
	out := map[wire.OutPoint]ProvenSpend{}
	if len(want) == 0 {
		return out
	}
	for id, tx := range t.raw {
		var hit []wire.OutPoint
		for _, in := range tx.TxIn {
			if want[in.PreviousOutPoint] {
				hit = append(hit, in.PreviousOutPoint)
			}
		}
		if len(hit) == 0 {
			continue
		}
		r := t.txs[id]
		if r == nil || !r.Verified || r.Height <= 0 {
			continue // in the mempool, or not proven (yet)
		}
		hdr, ok := t.chain.Header(r.Height)
		if !ok || hdr.BlockHash() != r.BlockHash {
			continue // the block it was proven in is not (or no longer) in our chain
		}
		ps := ProvenSpend{TxID: id, UnsignedTxID: unsignedTxID(tx), Height: r.Height, BlockHash: r.BlockHash, BlockTime: hdr.Timestamp}
		for _, op := range hit {
			out[op] = ps
		}
	}
	return out
}

func unsignedTxID(tx *wire.MsgTx) chainhash.Hash {
	c := tx.Copy()
	for _, in := range c.TxIn {
		in.SignatureScript, in.Witness = nil, nil
	}
	return c.TxHash()
}

// ProvenSpenders returns, for each of ops that a wallet transaction spends in a block of the
// watcher's header chain (its merkle proof checked against the header at its height, whose hash
// it still is), that transaction. Outpoints spent only in the mempool, by a transaction not
// proven yet, or not at all (as far as the watcher knows) are absent. The watcher holds the
// transactions of every tracked script's history, so a spend of a wallet coin is found.
func (w *Watcher) ProvenSpenders(ops []wire.OutPoint) map[wire.OutPoint]ProvenSpend {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.tr.provenSpenders(ops)
}

// InBestChain reports whether the watcher's header chain has the block hash at height. A chain
// that has headers but ends below height does not have it (a reorg to a shorter chain took it
// away). known is false only while the chain holds nothing but the genesis header (before the
// stored headers are loaded): then in says nothing.
func (w *Watcher) InBestChain(height int32, hash chainhash.Hash) (in, known bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	c := w.tr.Chain()
	if c.Height() <= 0 {
		return false, false
	}
	h, ok := c.Hash(height)
	return ok && h == hash, true
}
