package policyfile

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/internal/trustedtime"
	"github.com/custodyagents/cosigner/policy"
)

// stepClock is a wall clock the test steps, a monotonic clock it advances, a chain's median
// time past, and the trusted clock's store.
type stepClock struct {
	wall    time.Time
	elapsed time.Duration
	mtp     time.Time
	saved   *time.Time
}

func (s *stepClock) MedianTimePast() (time.Time, bool) { return s.mtp, true }
func (s *stepClock) LastClock(context.Context) (time.Time, bool, error) {
	if s.saved == nil {
		return time.Time{}, false, nil
	}
	return *s.saved, true, nil
}
func (s *stepClock) SaveClock(_ context.Context, t time.Time) error { s.saved = &t; return nil }

func (s *stepClock) start(t *testing.T) *trustedtime.Clock {
	s.elapsed = 0
	c, err := trustedtime.New(context.Background(), s, trustedtime.Options{Wall: func() time.Time { return s.wall }, Elapsed: func() time.Duration { return s.elapsed }})
	if err != nil {
		t.Fatal(err)
	}
	c.SetChain(s)
	return c
}

// TestLoosenDelaySurvivesWallClockStep (issue 11, finding 7): with the daemon's trusted
// clock, stepping the wall clock 7 days forward — within a run, or before a restart — does
// not apply a loosened policy early; 7 real days do.
func TestLoosenDelaySurvivesWallClockStep(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	write := func(doc string) {
		if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	sc := &stepClock{wall: t0, mtp: t0.Add(-time.Hour)}
	clk := sc.start(t)
	versions := &memVersions{}
	write(reloadDoc("0.5 BTC", ""))
	r, err := NewReloader(ctx, path, versions, nil, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	write(reloadDoc("2 BTC", "")) // a loosening: 7 days
	if _, err := r.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	decide := func() policy.Outcome {
		return policy.Evaluate(r.Policy(), policy.Input{Client: pkA, Method: "sign_psbt", Now: clk.Now(), Outflow: 90_000_000}).Outcome
	}
	if decide() != policy.Deny {
		t.Fatal("the loosening applied at once")
	}
	// The wall clock is stepped 7 days forward a minute later.
	sc.wall, sc.elapsed = t0.Add(7*24*time.Hour+time.Minute), time.Minute
	if decide() != policy.Deny {
		t.Fatal("a 7-day wall clock step applied the loosened policy within the run")
	}
	// Control: trusting the wall clock, the same step would have applied it.
	if policy.Evaluate(r.Policy(), policy.Input{Client: pkA, Method: "sign_psbt", Now: sc.wall, Outflow: 90_000_000}).Outcome != policy.Allow {
		t.Fatal("control: the wall clock should be past the delay")
	}
	// Restart (the clock was saved a minute in); the chain shows only minutes have passed.
	if err := clk.Save(ctx); err != nil {
		t.Fatal(err)
	}
	clk = sc.start(t)
	if r, err = NewReloader(ctx, path, versions, nil, clk.Now); err != nil {
		t.Fatal(err)
	}
	sc.elapsed, sc.mtp = time.Minute, t0.Add(2*time.Minute-time.Hour)
	if decide() != policy.Deny {
		t.Fatal("a 7-day wall clock step before a restart applied the loosened policy")
	}
	// Seven real days later (the chain moves on too), it applies.
	sc.elapsed, sc.mtp = 7*24*time.Hour, t0.Add(7*24*time.Hour-time.Hour)
	sc.wall = t0.Add(14 * 24 * time.Hour)
	if decide() != policy.Allow {
		t.Fatalf("after 7 real days the loosened policy should apply (now %s)", clk.Now())
	}
}
