package devnet

// reorg.go — chain reorganisations on btcd (invalidateblock,
// reconsiderblock) and the shapes tests need: an N-deep reorg and a re-mine of
// the same transactions at the same height.

import (
	"context"
	"fmt"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// InvalidateBlock marks hash and its descendants invalid on btcd
// (`invalidateblock`): btcd's tip goes back to hash's parent and the
// transactions of the disconnected blocks return to its mempool (coinbases
// excepted). ElectrumX learns of a reorg only when a block above its own tip
// arrives that does not connect (it polls the node's height), so follow with
// Mine of more blocks than were disconnected, or use Reorg.
func (n *Network) InvalidateBlock(ctx context.Context, hash chainhash.Hash) error {
	if err := n.checkOpen(); err != nil {
		return err
	}
	n.mineMu.Lock()
	defer n.mineMu.Unlock()
	if err := n.rpc.InvalidateBlock(&hash); err != nil {
		return fmt.Errorf("devnet: invalidateblock %s: %w", hash, err)
	}
	return nil
}

// ReconsiderBlock undoes InvalidateBlock for hash and its descendants
// (`reconsiderblock`); btcd switches back to that chain if it has more work.
// Like InvalidateBlock it does not wait for ElectrumX.
func (n *Network) ReconsiderBlock(ctx context.Context, hash chainhash.Hash) error {
	if err := n.checkOpen(); err != nil {
		return err
	}
	n.mineMu.Lock()
	defer n.mineMu.Unlock()
	if err := n.rpc.ReconsiderBlock(&hash); err != nil {
		return fmt.Errorf("devnet: reconsiderblock %s: %w", hash, err)
	}
	return nil
}

// ReorgResult says what Reorg and RemineTip replaced: Old are the
// disconnected blocks and New the blocks of the new chain from the fork
// point up, both in chain order; ForkHeight is the height of the last block
// the two chains share.
type ReorgResult struct {
	ForkHeight int64
	Old, New   []chainhash.Hash
}

// Reorg replaces the top depth blocks: it invalidates the block at
// tip−depth+1 (its transactions return to btcd's mempool), lets between run
// (nil is allowed: e.g. send a conflicting transaction so that a payment
// disappears), then mines depth+1 blocks — a strictly longer chain, which
// btcd's new block template fills from the mempool — and waits until
// ElectrumX serves the new tip. A transaction of the old chain that was not
// conflicted is thus confirmed again in the new chain's first block, at the
// fork height + 1 (its old height when it was in the lowest replaced block).
// depth must be at least 1 and below the chain height.
func (n *Network) Reorg(ctx context.Context, depth int, between func(context.Context) error) (ReorgResult, error) {
	if depth < 1 {
		return ReorgResult{}, fmt.Errorf("devnet: Reorg(%d): depth must be at least 1", depth)
	}
	if err := n.checkOpen(); err != nil {
		return ReorgResult{}, err
	}
	_, tip, err := n.rpc.GetBestBlock()
	if err != nil {
		return ReorgResult{}, fmt.Errorf("devnet: Reorg: getbestblock: %w", err)
	}
	fork := int64(tip) - int64(depth)
	if fork < 1 {
		return ReorgResult{}, fmt.Errorf("devnet: Reorg(%d): chain height %d is too low", depth, tip)
	}
	res := ReorgResult{ForkHeight: fork}
	for h := fork + 1; h <= int64(tip); h++ {
		hash, err := n.rpc.GetBlockHash(h)
		if err != nil {
			return res, fmt.Errorf("devnet: Reorg: getblockhash %d: %w", h, err)
		}
		res.Old = append(res.Old, *hash)
	}
	if err := n.InvalidateBlock(ctx, res.Old[0]); err != nil {
		return res, err
	}
	if between != nil {
		if err := between(ctx); err != nil {
			return res, fmt.Errorf("devnet: Reorg: between: %w", err)
		}
	}
	if res.New, err = n.Mine(ctx, depth+1); err != nil {
		return res, err
	}
	n.log.Info("reorg", "depth", depth, "fork_height", fork, "new_tip", res.New[len(res.New)-1])
	return res, nil
}

// RemineTip replaces the tip block by a new block at the same height that
// holds the same transactions (invalidateblock, then generate 1: btcd's
// template takes them back from the mempool), then mines one more block so
// that ElectrumX, which only notices a reorg when a block above its tip does
// not connect, switches to the new chain; it waits for that. Scripthash
// statuses of the re-mined transactions do not change (same txid, same
// height), so a client gets no scripthash notification for them: only new
// headers. Old has the replaced block, New the re-mined block and the one on
// top.
func (n *Network) RemineTip(ctx context.Context) (ReorgResult, error) {
	if err := n.checkOpen(); err != nil {
		return ReorgResult{}, err
	}
	old, tip, err := n.rpc.GetBestBlock()
	if err != nil {
		return ReorgResult{}, fmt.Errorf("devnet: RemineTip: getbestblock: %w", err)
	}
	oldBlock, err := n.rpc.GetBlock(old)
	if err != nil {
		return ReorgResult{}, fmt.Errorf("devnet: RemineTip: getblock %s: %w", old, err)
	}
	res := ReorgResult{ForkHeight: int64(tip) - 1, Old: []chainhash.Hash{*old}}
	if err := n.InvalidateBlock(ctx, *old); err != nil {
		return res, err
	}
	remined, err := n.generate(ctx, 1)
	if err != nil {
		return res, err
	}
	if remined[0] == *old {
		return res, fmt.Errorf("devnet: RemineTip: btcd mined the invalidated block %s again", old)
	}
	newBlock, err := n.rpc.GetBlock(&remined[0])
	if err != nil {
		return res, fmt.Errorf("devnet: RemineTip: getblock %s: %w", remined[0], err)
	}
	// Every non-coinbase transaction of the old block must be in the new one.
	have := make(map[chainhash.Hash]bool, len(newBlock.Transactions))
	for _, tx := range newBlock.Transactions[1:] {
		have[tx.TxHash()] = true
	}
	for _, tx := range oldBlock.Transactions[1:] {
		if !have[tx.TxHash()] {
			return res, fmt.Errorf("devnet: RemineTip: transaction %s of the old tip is not in the re-mined block %s", tx.TxHash(), remined[0])
		}
	}
	top, err := n.Mine(ctx, 1)
	if err != nil {
		return res, err
	}
	res.New = append(remined, top...)
	n.log.Info("re-mined tip", "height", tip, "old", old, "new", remined[0])
	return res, nil
}

// Generate mines blocks on btcd like Mine but does not wait for ElectrumX:
// for mining while ElectrumX is stopped (see StopElectrumX) or to let a test
// watch a server catch up. It returns the block hashes in chain order.
func (n *Network) Generate(ctx context.Context, blocks int) ([]chainhash.Hash, error) {
	if blocks <= 0 {
		return nil, fmt.Errorf("devnet: Generate(%d): blocks must be positive", blocks)
	}
	if err := n.checkOpen(); err != nil {
		return nil, err
	}
	return n.generate(ctx, blocks)
}
