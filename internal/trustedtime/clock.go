// Package trustedtime is the daemon's clock for delays and windows (the policy's loosen delay,
// a hold's cooling-off, velocity windows): a clock that a step of the system's wall clock
// cannot move forward (issue 11, finding 7; docs/trust-model.md).
//
// The time it gives is
//
//	now = min(wall, max(base + elapsed, mtp + Slack))
//
// where wall is the system clock, elapsed the monotonic time since this run started, base the
// clock's last persisted value (the previous run's time when it stopped, or the wall clock at
// the first start), and mtp the median time past of the wallet's header chain (BIP-113) once
// the chain view has one. Within a run it advances with the monotonic clock only, so a wall
// clock stepped forward gains nothing (beyond how far mtp + Slack is ahead of the real time);
// across a restart the time spent stopped counts only as far as the chain's median time past
// shows it has passed; a wall clock stepped back is followed back (delays only get longer).
package trustedtime

import (
	"context"
	"sync"
	"time"
)

// DefaultSlack is how far past the chain's median time past the clock may be: the median of
// the last 11 blocks is about an hour behind the real time on mainnet.
const DefaultSlack = 90 * time.Minute

// DefaultSaveEvery is how often Run persists the clock.
const DefaultSaveEvery = 10 * time.Second

// Chain gives the median time past of the best header chain the wallet view follows (BIP-113:
// the median of the timestamps of the tip and the 10 blocks before it), and false while it has
// none. Satisfied by the chain watcher's view.
type Chain interface {
	MedianTimePast() (time.Time, bool)
}

// Store keeps the clock across restarts.
type Store interface {
	// LastClock returns the clock's last persisted value, or, when none was ever persisted, the
	// newest time the database recorded otherwise (a lower bound of the last run's time);
	// false for a new database.
	LastClock(ctx context.Context) (time.Time, bool, error)
	// SaveClock persists t as the clock's value.
	SaveClock(ctx context.Context, t time.Time) error
}

// Options are for tests: the wall clock and the monotonic elapsed time since start (defaults:
// time.Now and time.Since(start)), the slack past the median time past (DefaultSlack).
type Options struct {
	Wall    func() time.Time
	Elapsed func() time.Duration
	Slack   time.Duration
}

// Clock is the trusted clock. Safe for concurrent use.
type Clock struct {
	wall    func() time.Time
	elapsed func() time.Duration
	slack   time.Duration
	store   Store
	base    time.Time

	mu    sync.Mutex
	chain Chain
	saved time.Time
}

// New starts a Clock from st's last value (the wall clock when there is none). Errors: the
// store's.
func New(ctx context.Context, st Store, opts Options) (*Clock, error) {
	c := &Clock{wall: opts.Wall, elapsed: opts.Elapsed, slack: opts.Slack, store: st}
	if c.wall == nil {
		c.wall = time.Now
	}
	if c.elapsed == nil {
		start := time.Now()
		c.elapsed = func() time.Duration { return time.Since(start) } // monotonic
	}
	if c.slack <= 0 {
		c.slack = DefaultSlack
	}
	last, ok, err := st.LastClock(ctx)
	if err != nil {
		return nil, err
	}
	c.base = c.wall()
	if ok {
		c.base = last
	}
	return c, nil
}

// SetChain gives the clock the chain whose median time past bounds it (nil: none).
func (c *Clock) SetChain(ch Chain) {
	c.mu.Lock()
	c.chain = ch
	c.mu.Unlock()
}

// Now is the trusted time (see the package comment). It never runs ahead of the wall clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	ch := c.chain
	c.mu.Unlock()
	t := c.base.Add(c.elapsed())
	if ch != nil {
		if m, ok := ch.MedianTimePast(); ok {
			if b := m.Add(c.slack); b.After(t) {
				t = b
			}
		}
	}
	if w := c.wall(); w.Before(t) {
		t = w
	}
	return t
}

// Save persists the current time (a later start continues from it).
func (c *Clock) Save(ctx context.Context) error {
	t := c.Now()
	if err := c.store.SaveClock(ctx, t); err != nil {
		return err
	}
	c.mu.Lock()
	c.saved = t
	c.mu.Unlock()
	return nil
}

// Run persists the clock every DefaultSaveEvery and once more when ctx ends; it returns nil
// then. A failed save is retried at the next period.
func (c *Clock) Run(ctx context.Context) error {
	t := time.NewTicker(DefaultSaveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			_ = c.Save(context.WithoutCancel(ctx))
			return nil
		case <-t.C:
			_ = c.Save(ctx)
		}
	}
}
