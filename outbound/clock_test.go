package outbound

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/internal/testfakes"
	"github.com/custodyagents/cosigner/internal/trustedtime"
	"github.com/custodyagents/cosigner/policy"
)

// TestScheduleRunsOnTrustedClock (issue 11, finding 7): the engine decides what is due on the
// clock it is given, the daemon's trusted clock: a wall clock stepped 7 days forward does not
// fire the next slot of an hourly schedule; an hour of monotonic time does.
func TestScheduleRunsOnTrustedClock(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	sc := &testfakes.StepClock{WallTime: e.now} // 10:00:00, a slot start
	clk, err := trustedtime.New(ctx, sc, trustedtime.Options{Wall: sc.Wall, Elapsed: sc.Elapsed})
	if err != nil {
		t.Fatal(err)
	}
	e.setAutomation(func(a *policy.Automation) { a.Trigger = policy.Trigger{Kind: policy.TriggerSchedule, Every: time.Hour} })
	eng := e.engine(t, Config{Asker: e.co, Now: clk.Now})
	s := eng.newSchedule()
	proposals := func() []string {
		t.Helper()
		ps, err := e.db.Proposals(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, p := range ps {
			keys = append(keys, p.TriggerKey)
		}
		return keys
	}
	sc.ElapsedTime = time.Minute
	s.check(ctx)
	sc.WallTime, sc.ElapsedTime = sc.WallTime.Add(7*24*time.Hour), 2*time.Minute
	s.check(ctx)
	if got := proposals(); len(got) != 0 {
		t.Fatalf("a 7-day wall clock step fired the schedule: %v", got)
	}
	sc.ElapsedTime = time.Hour + time.Minute
	s.check(ctx)
	want := ScheduleKey(e.now.Add(time.Hour))
	if got := proposals(); len(got) != 1 || got[0] != want {
		t.Fatalf("after an hour: proposals %v, want %s", got, want)
	}
}

// An engine without a clock is refused: it never falls back to the wall clock.
func TestEngineNeedsClock(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	_, err := NewEngine(Config{Descriptor: e.f.Desc, Store: e.db, Policy: func() *policy.Policy { return e.pol }, Signer: e.svc, Chain: e.chain})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("NewEngine without Now = %v, want ErrConfig", err)
	}
}
