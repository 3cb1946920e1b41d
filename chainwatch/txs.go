package chainwatch

import (
	"bytes"
	"fmt"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// UTXOs from transactions, as Electrum and BDK work them out.
//
// A script's unspent outputs are the outputs paying it in the transactions of its history that
// no transaction of the same history spends: ElectrumX indexes a transaction under the
// scripthash of every output it pays and of every output it spends, so the spender of an output
// of script S is always in S's history (mempool spenders included — the same set
// blockchain.scripthash.listunspent answers, which leaves out outputs spent in the mempool).
// Working them out from the transactions (blockchain.transaction.get, each checked against its
// txid) instead of asking listunspent saves the server most of its cost per script
// (listunspent ≈ 1.0 in ElectrumX's cost units against get_history's ≈ 0.35), the amounts come
// from the transaction itself (whose place in a block the SPV proof then shows), and the spender
// of each spent output is known.

// MissingTxs returns the transactions of history that the tracker does not hold yet (each once,
// in history order): the caller fetches them (blockchain.transaction.get) for ApplyTxs.
func (t *Tracker) MissingTxs(history []HistoryItem) []chainhash.Hash {
	var out []chainhash.Hash
	var seen map[chainhash.Hash]bool
	for _, h := range history {
		if _, ok := t.raw[h.TxHash]; ok {
			continue
		}
		if seen == nil {
			seen = map[chainhash.Hash]bool{}
		}
		if !seen[h.TxHash] {
			seen[h.TxHash] = true
			out = append(out, h.TxHash)
		}
	}
	return out
}

// HasTx reports whether the tracker holds the transaction txid.
func (t *Tracker) HasTx(txid chainhash.Hash) bool {
	_, ok := t.raw[txid]
	return ok
}

// ApplyTxs is Apply with the script's unspent outputs worked out from the transactions of its
// history (see the comment at the top of txs.go) instead of taken from listunspent. txs supplies
// the transactions of history that the tracker does not hold (MissingTxs), keyed by txid; others
// are ignored. A supplied transaction is checked against its txid when the tracker takes it
// (once). The tracker keeps the transactions of every tracked history (Update.RawTxs lists the
// new ones for the store) and drops them when they leave every history. Spent events carry
// SpentBy.
//
// Errors (nothing changes): those of Apply; ErrBadHistory when a transaction of history is
// neither held nor supplied, a supplied one does not hash to its key, or an output's value is out
// of range.
func (t *Tracker) ApplyTxs(scriptHash, announced string, history []HistoryItem, txs map[chainhash.Hash]*wire.MsgTx) (Update, error) {
	s, ok := t.byHash[scriptHash]
	if !ok {
		return Update{}, fmt.Errorf("%w: %s", ErrUnknownScript, scriptHash)
	}
	fresh := map[chainhash.Hash]*wire.MsgTx{}
	get := func(id chainhash.Hash) (*wire.MsgTx, error) {
		if tx, ok := t.raw[id]; ok {
			return tx, nil
		}
		if tx, ok := fresh[id]; ok {
			return tx, nil
		}
		tx := txs[id]
		if tx == nil {
			return nil, fmt.Errorf("%w: script %d/%d: transaction %s of the history was not fetched", ErrBadHistory, s.Branch, s.Index, id)
		}
		if got := tx.TxHash(); got != id {
			return nil, fmt.Errorf("%w: script %d/%d: transaction supplied as %s hashes to %s", ErrBadHistory, s.Branch, s.Index, id, got)
		}
		fresh[id] = tx
		return tx, nil
	}
	// The outputs spent within this history, and by whom.
	spentBy := map[wire.OutPoint]chainhash.Hash{}
	order := make([]chainhash.Hash, 0, len(history))
	seen := make(map[chainhash.Hash]bool, len(history))
	for _, h := range history {
		if seen[h.TxHash] {
			continue
		}
		seen[h.TxHash] = true
		tx, err := get(h.TxHash)
		if err != nil {
			return Update{}, err
		}
		order = append(order, h.TxHash)
		for _, in := range tx.TxIn {
			spentBy[in.PreviousOutPoint] = h.TxHash
		}
	}
	var unspent []UnspentItem
	for _, id := range order {
		tx, _ := get(id)
		for i, out := range tx.TxOut {
			if !bytes.Equal(out.PkScript, s.PkScript) {
				continue
			}
			op := wire.OutPoint{Hash: id, Index: uint32(i)}
			if _, spent := spentBy[op]; spent {
				continue
			}
			if out.Value < 0 || out.Value > btcutil.MaxSatoshi {
				return Update{}, fmt.Errorf("%w: script %d/%d: output %v has value %d", ErrBadHistory, s.Branch, s.Index, op, out.Value)
			}
			unspent = append(unspent, UnspentItem{TxHash: id, TxPos: uint32(i), Value: btcutil.Amount(out.Value)})
		}
	}
	up, err := t.Apply(scriptHash, announced, history, unspent)
	if err != nil {
		return Update{}, err
	}
	for _, id := range order {
		if tx, ok := fresh[id]; ok {
			if _, still := t.txs[id]; still {
				t.raw[id] = tx
				up.RawTxs = append(up.RawTxs, tx)
			}
		}
	}
	for i, ev := range up.Events {
		if sp, ok := ev.(Spent); ok && sp.SpentBy == nil {
			if by, ok := spentBy[sp.OutPoint]; ok {
				sp.SpentBy = &by
				up.Events[i] = sp
			}
		}
	}
	return up, nil
}
