package outbound

// Fee estimates, one per confirmation target and block: the server's blockchain.estimatefee
// answer is kept for the watcher's current tip (height and hash), and a new tip starts asking
// again in the background (HandleEvent on NewTip → refreshFees), so that the build on the block
// that confirms a deposit finds the estimate ready instead of waiting for a round trip.
//
// Why this cannot sign what the policy forbids: the estimate only chooses the feerate an
// automation asks for; the policy's fee caps (max_feerate, max_fee, max_fee_share) are checked
// on the built PSBT by the same decision as any request (Signer.Decide), and AutomationFeeRate
// still clamps it to the automation's and the policy's ceilings. Bitcoin Core's and btcd's
// estimators change their answer when a block is connected, so an answer kept for the block it
// was asked at is the answer the server would give again; a new tip or a reorg (another hash)
// is asked anew. A failed call (not connected, the server's transport error) is not kept.

import (
	"context"
	"errors"
	"slices"
	"sync"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// feeCache keeps the estimate per target at one tip. Safe for concurrent use.
type feeCache struct {
	mu sync.Mutex
	m  map[int]*feeEntry
}

// feeEntry is one estimate being asked (done open) or answered (done closed).
type feeEntry struct {
	tip  chainwatch.Tip
	done chan struct{}
	est  electrum.FeeEstimate
	keep bool // set before done closes: the answer may be used again at this tip
}

// estimateFee is the server's fee estimate for target blocks at the current tip: kept from an
// earlier call at the same tip (or waited for, when one is under way), else asked
// (Chain.EstimateFee, blockchain.estimatefee). It returns the fallback when the server has none
// or cannot be reached (electrum.FeeEstimate.Estimated false).
func (e *Engine) estimateFee(ctx context.Context, target int) electrum.FeeEstimate {
	tip := e.chain.Tip()
	c := &e.fees
	c.mu.Lock()
	if c.m == nil {
		c.m = map[int]*feeEntry{}
	}
	if ent := c.m[target]; ent != nil && ent.tip == tip {
		c.mu.Unlock()
		select {
		case <-ent.done:
			if ent.keep {
				return ent.est
			}
		case <-ctx.Done():
		}
		return e.chain.EstimateFee(ctx, target)
	}
	ent := &feeEntry{tip: tip, done: make(chan struct{})}
	c.m[target] = ent
	c.mu.Unlock()
	ent.est = e.chain.EstimateFee(ctx, target)
	ent.keep = ent.est.Estimated || errors.Is(ent.est.Reason, electrum.ErrNoFeeEstimate)
	close(ent.done)
	if !ent.keep {
		c.mu.Lock()
		if c.m[target] == ent {
			delete(c.m, target)
		}
		c.mu.Unlock()
	}
	return ent.est
}

// refreshFees asks, in the background, the estimates of every target the automations in force
// use, at the current tip.
func (e *Engine) refreshFees(ctx context.Context) {
	var targets []int
	for _, a := range e.policy().AutomationsAt(e.now()) {
		t := a.Fee.TargetBlocks
		if t <= 0 {
			t = 6
		}
		if !slices.Contains(targets, t) {
			targets = append(targets, t)
		}
	}
	for _, t := range targets {
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			e.estimateFee(ctx, t)
		}()
	}
}
