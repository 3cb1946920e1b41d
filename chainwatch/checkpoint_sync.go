package chainwatch

import (
	"context"
	"fmt"

	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// fetchHeaders asks blockchain.block.headers for n headers from height from. A server may
// answer fewer than asked (the protocol allows it); with whole set it asks again from where the
// answer stopped until it has n, and an answer with none is an error (ErrBadHeader).
func fetchHeaders(ctx context.Context, c *electrum.Client, from, n int32, whole bool) ([]wire.BlockHeader, error) {
	var out []wire.BlockHeader
	for int32(len(out)) < n {
		at, want := from+int32(len(out)), n-int32(len(out))
		var res blockHeadersJSON
		if err := c.Call(ctx, "blockchain.block.headers", []any{at, want}, &res); err != nil {
			return nil, fmt.Errorf("chainwatch: blockchain.block.headers %d+%d: %w", at, want, err)
		}
		hdrs, err := res.parse()
		if err != nil {
			return nil, err
		}
		if int32(len(hdrs)) > want {
			return nil, fmt.Errorf("%w: blockchain.block.headers %d+%d returned %d", ErrBadHeader, at, want, len(hdrs))
		}
		out = append(out, hdrs...)
		if !whole {
			break
		}
		if len(hdrs) == 0 {
			return nil, fmt.Errorf("%w: blockchain.block.headers %d+%d returned none; %d of %d headers of a whole period", ErrBadHeader, at, want, len(out), n)
		}
	}
	return out, nil
}

// fetchBelowBase makes sure the header chain holds the header of every block below its base
// (checkpointed chains only) that holds a transaction of todo: for each such period it fetches
// the period's 2016 headers and checks them against the checkpoints (HeaderChain.AddBelowBase),
// keeping only the headers of the wallet's blocks. A period that fails the checks ends the
// session (ErrBadHeader: the server lies about the chain below our checkpoint).
func (w *Watcher) fetchBelowBase(ctx context.Context, c *electrum.Client, todo []TxState) error {
	periods := map[int32][]int32{}
	w.mu.RLock()
	ch := w.tr.Chain()
	for _, x := range todo {
		if x.Height > 0 && x.Height < ch.Base() {
			if _, ok := ch.Header(x.Height); !ok {
				p := x.Height / RetargetInterval
				periods[p] = append(periods[p], x.Height)
			}
		}
	}
	w.mu.RUnlock()
	for p, keep := range periods {
		hdrs, err := fetchHeaders(ctx, c, p*RetargetInterval, RetargetInterval, true)
		if err != nil {
			return err
		}
		w.mu.Lock()
		err = w.tr.Chain().AddBelowBase(p*RetargetInterval, hdrs, keep)
		w.mu.Unlock()
		if err != nil {
			return err
		}
		w.log.Debug("headers below the checkpoint checked", "period", p, "kept", len(keep))
	}
	return nil
}

// forkRefused handles ErrForkLessWork from a header sync: the server offers a fork that does
// not carry more work than our chain (a lying server, or an honest one during a race between
// two blocks at the same height). The chain and the session are kept: the refusal is logged
// and shown in Health.LastError, transactions the server places in its fork's blocks stay
// unproven (their proofs do not match our headers), and the next header notification is checked
// again — an honest server's chain soon carries more work, which is then followed.
func (w *Watcher) forkRefused(err error) {
	w.setErr(err)
	w.log.Warn("fork with no more work refused; keeping our chain", "err", err)
}
