package trustedtime

import (
	"context"
	"testing"
	"time"
)

// fakes: a wall clock the test steps, a monotonic clock the test advances, a chain, a store.
type env struct {
	wall    time.Time
	elapsed time.Duration
	mtp     time.Time
	saved   *time.Time
}

func (e *env) MedianTimePast() (time.Time, bool) { return e.mtp, !e.mtp.IsZero() }
func (e *env) LastClock(context.Context) (time.Time, bool, error) {
	if e.saved == nil {
		return time.Time{}, false, nil
	}
	return *e.saved, true, nil
}
func (e *env) SaveClock(_ context.Context, t time.Time) error { e.saved = &t; return nil }

// start is a new run of the daemon: the monotonic clock starts again at zero.
func (e *env) start(t *testing.T) *Clock {
	t.Helper()
	e.elapsed = 0
	c, err := New(context.Background(), e, Options{Wall: func() time.Time { return e.wall }, Elapsed: func() time.Duration { return e.elapsed }})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var t0 = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

const week = 7 * 24 * time.Hour

func TestWallStepForwardWithinARun(t *testing.T) {
	e := &env{wall: t0}
	c := e.start(t)
	e.elapsed, e.wall = time.Hour, t0.Add(time.Hour)
	if got := c.Now(); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("now = %s", got)
	}
	e.wall = e.wall.Add(week) // someone steps the clock
	if got := c.Now(); !got.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after a 7-day step: now = %s, want %s", got, t0.Add(time.Hour))
	}
	e.elapsed += time.Minute
	if got := c.Now(); !got.Equal(t0.Add(61 * time.Minute)) {
		t.Fatalf("now = %s", got)
	}
	// The chain's median time past lets it run no further than mtp + slack.
	e.mtp = t0.Add(-30 * time.Minute)
	if got := c.Now(); !got.Equal(t0.Add(61 * time.Minute)) {
		t.Fatalf("with an old mtp: now = %s", got)
	}
}

func TestWallStepBackIsFollowed(t *testing.T) {
	e := &env{wall: t0}
	c := e.start(t)
	e.elapsed, e.wall = time.Hour, t0.Add(-time.Hour)
	if got := c.Now(); !got.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("now = %s, want the wall clock stepped back", got)
	}
}

func TestRestartAfterAStep(t *testing.T) {
	e := &env{wall: t0, mtp: t0.Add(-time.Hour)}
	c := e.start(t)
	c.SetChain(e)
	e.elapsed, e.wall = 10*time.Minute, t0.Add(10*time.Minute)
	if err := c.Save(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Stopped for a minute, the wall clock stepped 7 days forward, started again.
	e.wall = t0.Add(week + 11*time.Minute)
	c = e.start(t)
	if got := c.Now(); !got.Equal(t0.Add(10 * time.Minute)) {
		t.Fatalf("after restart, before the chain is known: now = %s", got)
	}
	c.SetChain(e)
	e.elapsed = 5 * time.Minute
	// The chain shows about an hour less than the real time: the step is not believed.
	e.mtp = t0.Add(16*time.Minute - time.Hour)
	if got := c.Now(); got.After(t0.Add(16*time.Minute + DefaultSlack)) {
		t.Fatalf("after a 7-day step and a restart: now = %s", got)
	}
	// Really stopped for 7 days: the chain's median time past shows it, and the time counts.
	e.mtp = t0.Add(week + 16*time.Minute - time.Hour)
	if got := c.Now(); got.Before(t0.Add(week)) || got.After(e.wall) {
		t.Fatalf("after a real 7-day stop: now = %s (wall %s)", got, e.wall)
	}
}

func TestFirstStartUsesTheWallClock(t *testing.T) {
	e := &env{wall: t0}
	if got := e.start(t).Now(); !got.Equal(t0) {
		t.Fatalf("now = %s", got)
	}
}
