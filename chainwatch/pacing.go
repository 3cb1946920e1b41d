package chainwatch

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// Pacing of subscribe and fetch batches under a server's cost-based throttling.
//
// ElectrumX (aiorpcx) charges every session a cost for each request and for the bytes it sends;
// the cost decays over time (by default the hard limit's worth per hour). Above the soft limit
// (default 2,000) the server delays requests and lowers the session's concurrency; above the hard
// limit (default 10,000) it answers "excessive resource usage" (code -101, ErrExcessiveResourceUsage)
// and closes the connection; a request that waits too long in its queue gets "server busy"
// (code -102, ErrServerBusy). Sessions from one IP address share a cost group.
//
// The watcher paces adaptively (additive increase, multiplicative decrease, as TCP does): each
// round of blockchain.scripthash.subscribe or get_history batches waits the current delay first;
// batches are at most the current size. Unthrottled, a round sends batchesInFlight batches at
// once and fetches histories ahead of a dense branch's window; after a throttling answer, one
// batch at a time and nothing ahead (see pacer.throttled). Each throttling answer halves the batch size
// (down to pacerMinBatch) and doubles the delay (from pacerStartDelay up to pacerMaxDelay); the
// session then ends as the server closes it, and the next session goes on from where this one
// stopped (verified statuses are stored, so finished scripts are not fetched again). Every
// pacerRecoverAfter batches without throttling shorten the delay by a quarter and double the
// batch size again up to the default. Without throttling there is no delay and the batches keep
// their default size, so a server with generous limits (or none) costs nothing extra.
const (
	pacerStartDelay   = 250 * time.Millisecond
	pacerMaxDelay     = 30 * time.Second
	pacerMinBatch     = 5
	pacerRecoverAfter = 20
)

// pacer is the adaptive pacing state; it is shared by the Watcher's sessions (so one that was
// throttled makes the next one slower) and safe for concurrent use.
type pacer struct {
	mu    sync.Mutex
	delay time.Duration
	shift uint // batch size = default >> shift, at least pacerMinBatch
	good  int  // batches since the last throttling or recovery step
}

// isThrottled reports whether err is a server's cost-based throttling answer.
func isThrottled(err error) bool {
	return errors.Is(err, electrum.ErrExcessiveResourceUsage) || errors.Is(err, electrum.ErrServerBusy)
}

// size returns the batch size to use for a batch whose default size is def.
func (p *pacer) size(def int) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(def>>p.shift, min(pacerMinBatch, def))
}

// throttled reports whether the server has throttled recently (a delay or a smaller batch is in
// force): the watcher then sends one batch at a time and fetches nothing ahead of the window.
func (p *pacer) throttled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay > 0 || p.shift > 0
}

// parallel returns how many batches to keep in flight: def, or 1 while throttled.
func (p *pacer) parallel(def int) int {
	if p.throttled() {
		return 1
	}
	return def
}

// wait sleeps the current delay (returns ctx's error if it ends first).
func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	d := p.delay
	p.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// observe records a batch's outcome: throttled (any of its errors is a throttling answer) or not.
func (p *pacer) observe(throttled bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if throttled {
		p.good = 0
		p.delay = min(max(2*p.delay, pacerStartDelay), pacerMaxDelay)
		if p.shift < 16 {
			p.shift++
		}
		return
	}
	if p.delay == 0 && p.shift == 0 {
		return
	}
	p.good++
	if p.good < pacerRecoverAfter {
		return
	}
	p.good = 0
	p.delay -= p.delay / 4
	if p.delay < 10*time.Millisecond {
		p.delay = 0
	}
	if p.shift > 0 {
		p.shift--
	}
}

// snapshot returns the current delay and shift (for Health and tests).
func (p *pacer) snapshot() (time.Duration, uint) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.delay, p.shift
}

// batchThrottled reports whether a batch's transport error or any call's error is throttling.
func batchThrottled(err error, calls []*electrum.Call) bool {
	if isThrottled(err) {
		return true
	}
	for _, c := range calls {
		if c != nil && isThrottled(c.Err) {
			return true
		}
	}
	return false
}
