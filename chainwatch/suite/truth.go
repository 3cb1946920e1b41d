package suite

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/btcsuite/btcd/btcjson"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/rpcclient"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
)

// ScriptRef is a wallet script's place: branch (0 receive, 1 change) and index.
type ScriptRef struct{ Branch, Index uint32 }

// Coin is one wallet output as the node sees it. Height and BlockHash are
// its block's, 0 and zero while in the mempool.
type Coin struct {
	OutPoint  wire.OutPoint
	Value     btcutil.Amount
	PkScript  []byte
	Ref       ScriptRef
	Height    int32
	BlockHash chainhash.Hash
}

func (c Coin) String() string {
	return fmt.Sprintf("%v %v @%d/%.8s %d/%d", c.OutPoint, c.Value, c.Height, c.BlockHash, c.Ref.Branch, c.Ref.Index)
}

// Truth is the wallet's unspent outputs by outpoint, as the node says.
type Truth map[wire.OutPoint]Coin

// NodeTruth computes the wallet's UTXO set from the node alone: every output
// paying one of scripts in the main-chain blocks from fromHeight to the tip
// (getblockhash, getblock) and in the mempool (getrawmempool,
// getrawtransaction), less outputs that gettxout reports spent or unknown
// and outputs that a mempool transaction spends (btcd's gettxout does not
// look at mempool spends). fromHeight must be at or below the first block
// that paid the wallet.
func NodeTruth(rpc *rpcclient.Client, scripts map[string]ScriptRef, fromHeight int64) (Truth, error) {
	_, tip, err := rpc.GetBestBlock()
	if err != nil {
		return nil, fmt.Errorf("getbestblock: %w", err)
	}
	found := Truth{}
	spentInMempool := map[wire.OutPoint]bool{}
	collect := func(tx *wire.MsgTx, height int32, block chainhash.Hash) {
		txid := tx.TxHash()
		for i, out := range tx.TxOut {
			if ref, ok := scripts[string(out.PkScript)]; ok {
				op := wire.OutPoint{Hash: txid, Index: uint32(i)}
				found[op] = Coin{OutPoint: op, Value: btcutil.Amount(out.Value), PkScript: out.PkScript, Ref: ref, Height: height, BlockHash: block}
			}
		}
	}
	for h := max(fromHeight, 1); h <= int64(tip); h++ {
		hash, err := rpc.GetBlockHash(h)
		if err != nil {
			return nil, fmt.Errorf("getblockhash %d: %w", h, err)
		}
		block, err := rpc.GetBlock(hash)
		if err != nil {
			return nil, fmt.Errorf("getblock %s: %w", hash, err)
		}
		for _, tx := range block.Transactions {
			collect(tx, int32(h), *hash)
		}
	}
	pool, err := rpc.GetRawMempool()
	if err != nil {
		return nil, fmt.Errorf("getrawmempool: %w", err)
	}
	for _, txid := range pool {
		tx, err := rpc.GetRawTransaction(txid)
		if err != nil {
			if isNoTxInfo(err) {
				continue // left the mempool meanwhile
			}
			return nil, fmt.Errorf("getrawtransaction %s: %w", txid, err)
		}
		collect(tx.MsgTx(), 0, chainhash.Hash{})
		for _, in := range tx.MsgTx().TxIn {
			spentInMempool[in.PreviousOutPoint] = true
		}
	}
	for op, c := range found {
		if spentInMempool[op] {
			delete(found, op)
			continue
		}
		res, err := rpc.GetTxOut(&op.Hash, op.Index, true)
		if err != nil {
			if isNoTxInfo(err) {
				delete(found, op)
				continue
			}
			return nil, fmt.Errorf("gettxout %v: %w", op, err)
		}
		if res == nil {
			delete(found, op)
			continue
		}
		v, err := btcutil.NewAmount(res.Value)
		if err != nil || v != c.Value {
			return nil, fmt.Errorf("gettxout %v: value %v, the block says %v", op, res.Value, c.Value)
		}
		var wantConfs int64
		if c.Height > 0 {
			wantConfs = int64(tip) - int64(c.Height) + 1
		}
		if res.Confirmations != wantConfs {
			return nil, fmt.Errorf("gettxout %v: %d confirmations, its block height %d at tip %d says %d", op, res.Confirmations, c.Height, tip, wantConfs)
		}
	}
	return found, nil
}

func isNoTxInfo(err error) bool {
	var rerr *btcjson.RPCError
	if errors.As(err, &rerr) {
		return rerr.Code == btcjson.ErrRPCNoTxInfo
	}
	return strings.Contains(err.Error(), "No information available")
}

// Diff compares a watcher's UTXO set with the truth: "" when they are equal
// (outpoint, value, script, branch, index, height and block hash), else a
// description of every difference.
func Diff(got []chainwatch.UTXO, want Truth) string {
	var lines []string
	seen := map[wire.OutPoint]bool{}
	for _, u := range got {
		seen[u.OutPoint] = true
		c, ok := want[u.OutPoint]
		switch {
		case !ok:
			lines = append(lines, fmt.Sprintf("watcher has %v %v @%d/%.8s %d/%d; the node does not", u.OutPoint, u.Value, u.Height, u.BlockHash, u.Branch, u.Index))
		case u.Value != c.Value || string(u.PkScript) != string(c.PkScript) || u.Branch != c.Ref.Branch || u.Index != c.Ref.Index || u.Height != c.Height || u.BlockHash != c.BlockHash:
			lines = append(lines, fmt.Sprintf("watcher has %v %v @%d/%.8s %d/%d; the node says %s", u.OutPoint, u.Value, u.Height, u.BlockHash, u.Branch, u.Index, c))
		}
	}
	for op, c := range want {
		if !seen[op] {
			lines = append(lines, fmt.Sprintf("node has %s; the watcher does not", c))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// BestBlock is the node's tip as a chainwatch.Tip.
func BestBlock(rpc *rpcclient.Client) (chainwatch.Tip, error) {
	hash, height, err := rpc.GetBestBlock()
	if err != nil {
		return chainwatch.Tip{}, fmt.Errorf("getbestblock: %w", err)
	}
	return chainwatch.Tip{Height: height, Hash: *hash}, nil
}
