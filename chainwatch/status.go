package chainwatch

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// ScriptHash returns the Electrum scripthash of a scriptPubKey: sha256(pkScript) with its bytes
// reversed, as lowercase hex (Electrum protocol, "Script Hashes").
func ScriptHash(pkScript []byte) string {
	h := sha256.Sum256(pkScript)
	for i, j := 0, len(h)-1; i < j; i, j = i+1, j-1 {
		h[i], h[j] = h[j], h[i]
	}
	return hex.EncodeToString(h[:])
}

// HistoryItem is one entry of blockchain.scripthash.get_history: Height > 0 confirmed, 0 in the
// mempool with confirmed inputs, -1 in the mempool with unconfirmed inputs.
type HistoryItem struct {
	TxHash chainhash.Hash
	Height int32
}

// UnspentItem is one unspent output of a script, in the shape of an entry of
// blockchain.scripthash.listunspent (Height 0 = mempool); the watcher works them out from the
// history's transactions (Tracker.ApplyTxs) rather than asking the server.
type UnspentItem struct {
	TxHash chainhash.Hash
	TxPos  uint32
	Height int32
	Value  btcutil.Amount
}

// ElectrumStatus returns the Electrum status of a script's history, in the order the server
// lists it (confirmed by height and position in block, then mempool):
// hex(sha256(concat(txid + ":" + height + ":"))), or "" (the protocol's null) for no history.
// It returns ErrBadHistory if the list is not in canonical order as far as the client can
// check (confirmed heights non-decreasing, all mempool items after all confirmed ones, no
// height below -1).
func ElectrumStatus(history []HistoryItem) (string, error) {
	if len(history) == 0 {
		return "", nil
	}
	h := sha256.New()
	var last int32
	inMempool := false
	for i, it := range history {
		switch {
		case it.Height < -1:
			return "", fmt.Errorf("%w: history item %d has height %d", ErrBadHistory, i, it.Height)
		case it.Height > 0:
			if inMempool || it.Height < last {
				return "", fmt.Errorf("%w: history item %d (height %d) out of canonical order", ErrBadHistory, i, it.Height)
			}
			last = it.Height
		default:
			inMempool = true
		}
		h.Write([]byte(it.TxHash.String()))
		h.Write([]byte{':'})
		h.Write([]byte(strconv.FormatInt(int64(it.Height), 10)))
		h.Write([]byte{':'})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
