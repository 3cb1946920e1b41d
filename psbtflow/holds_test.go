package psbtflow

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/internal/testfakes"
	"github.com/custodyagents/cosigner/internal/trustedtime"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/store"
)

// officeHours: signed from 11:00 to 17:00 UTC; outside, held for alice's approval. holdEnv's
// clock starts at 10:00 UTC.
const officeHours = "rules:\n" +
	"  - {name: office, match: {hours: {from: \"11:00\", to: \"17:00\"}}, action: allow}\n" +
	"  - {name: after_hours, action: hold, hold: {approvals: 1, approvers: [alice]}}\n"

// holdState is the stored state of the hold of request id of e's client.
func (e *holdEnv) holdState(t *testing.T, id string) string {
	t.Helper()
	h, err := e.db.FindHold(context.Background(), e.client, id)
	if err != nil {
		t.Fatal(err)
	}
	return h.State
}

// TestHoldDecidedWhenHoursWindowOpens: a request held because it came outside a rule's
// time-of-day window is signed when the window opens, without any approval arriving (the window's
// edge is a time point of the hold schedule: policy.NextChange).
func TestHoldDecidedWhenHoursWindowOpens(t *testing.T) {
	e := newHoldEnv(t, officeHours)
	ctx := context.Background()
	_, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "r1", Method: "sign_psbt", Params: []string{e.psbt(t, 60_000)}})
	heldURL(t, err)
	e.svc.Tick(ctx) // the first tick after a start decides every waiting hold again
	e.now = e.now.Add(59 * time.Minute)
	e.svc.Tick(ctx)
	if got := e.ans.List(); len(got) != 0 {
		t.Fatalf("answered before the window opened: %v", got)
	}
	e.now = e.now.Add(time.Minute)
	e.svc.Tick(ctx)
	got := e.ans.List()
	if len(got) != 1 || !strings.HasPrefix(got[0], "r1 cHNidP8") {
		t.Fatalf("when the window opened, want r1 signed, got %v", got)
	}
	if s := e.holdState(t, "r1"); s != store.HoldReleased {
		t.Fatalf("hold state %s, want %s", s, store.HoldReleased)
	}
}

// TestHoldRefusedWhenHoursWindowCloses: a request held by a rule that matches only within a
// time-of-day window is refused when the window closes (the next rule denies), not only when an
// approval arrives later.
func TestHoldRefusedWhenHoursWindowCloses(t *testing.T) {
	e := newHoldEnv(t, "rules:\n"+
		"  - {name: office, match: {hours: {from: \"09:00\", to: \"11:00\"}}, action: hold, hold: {approvals: 1, approvers: [alice]}}\n"+
		"  - {name: closed, action: deny, reason: outside office hours}\n")
	ctx := context.Background()
	_, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "r1", Method: "sign_psbt", Params: []string{e.psbt(t, 60_000)}})
	heldURL(t, err)
	e.svc.Tick(ctx)
	e.now = e.now.Add(59 * time.Minute)
	e.svc.Tick(ctx)
	if got := e.ans.List(); len(got) != 0 {
		t.Fatalf("answered while the window was open: %v", got)
	}
	e.now = e.now.Add(time.Minute)
	e.svc.Tick(ctx)
	got := e.ans.List()
	if len(got) != 1 || !strings.HasPrefix(got[0], "r1 policy_denied: closed: outside office hours") {
		t.Fatalf("when the window closed, want r1 refused by rule closed, got %v", got)
	}
	if s := e.holdState(t, "r1"); s != store.HoldDenied {
		t.Fatalf("hold state %s, want %s", s, store.HoldDenied)
	}
}

// TestHoldHoursWindowOnTrustedClock: on the daemon's trusted clock, a wall clock stepped past
// the window's opening does not release the hold; the hour actually passing does.
func TestHoldHoursWindowOnTrustedClock(t *testing.T) {
	e := newHoldEnv(t, officeHours)
	sc := &testfakes.StepClock{WallTime: e.now}
	clk, err := trustedtime.New(context.Background(), sc, trustedtime.Options{Wall: sc.Wall, Elapsed: sc.Elapsed})
	if err != nil {
		t.Fatal(err)
	}
	e.rebuild(t, nil, WithClock(clk.Now))
	ctx := context.Background()
	_, err = e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "r1", Method: "sign_psbt", Params: []string{e.psbt(t, 60_000)}})
	heldURL(t, err)
	e.svc.Tick(ctx)
	sc.WallTime, sc.ElapsedTime = sc.WallTime.Add(2*time.Hour), time.Minute
	e.svc.Tick(ctx)
	if got := e.ans.List(); len(got) != 0 {
		t.Fatalf("a wall clock step opened the window: %v", got)
	}
	sc.WallTime, sc.ElapsedTime = e.now.Add(time.Hour), time.Hour
	e.svc.Tick(ctx)
	if got := e.ans.List(); len(got) != 1 || !strings.HasPrefix(got[0], "r1 cHNidP8") {
		t.Fatalf("an hour later, want r1 signed, got %v", got)
	}
}

// TestRepeatedRequestAnsweredFromStoreWhileSyncing: after a restart, while the watcher syncs, a
// client re-sending a request already held or signed gets its stored answer (the auth_url, the
// signature), not "retry in a moment" — a chaos run showed a client taking that as the held
// request's answer and missing the signature its approval released. A new request is still
// refused until the view is complete, and nothing is recorded for it.
func TestRepeatedRequestAnsweredFromStoreWhileSyncing(t *testing.T) {
	e := newHoldEnv(t, officeHours)
	ctx := context.Background()
	held := nip46.Call{Client: e.client, ID: "held", Method: "sign_psbt", Params: []string{e.psbt(t, 60_000)}}
	_, err := e.svc.SignPSBT(ctx, held)
	url := heldURL(t, err)
	e.now = e.now.Add(2 * time.Hour) // in the office window: the next request is signed
	signedCall := nip46.Call{Client: e.client, ID: "signed", Method: "sign_psbt", Params: []string{e.psbt(t, 70_000)}}
	sig, err := e.svc.SignPSBT(ctx, signedCall)
	if err != nil {
		t.Fatalf("signed request: %v", err)
	}

	e.f.chain.Syncing = true
	if _, err := e.svc.SignPSBT(ctx, held); heldURL(t, err) != url {
		t.Fatalf("held request re-sent while syncing: want the same auth_url %s", url)
	}
	if again, err := e.svc.SignPSBT(ctx, signedCall); err != nil || again != sig {
		t.Fatalf("signed request re-sent while syncing: %v (same answer: %v)", err, again == sig)
	}
	fresh := nip46.Call{Client: e.client, ID: "fresh", Method: "sign_psbt", Params: []string{e.psbt(t, 80_000)}}
	_, err = e.svc.SignPSBT(ctx, fresh)
	var me *nip46.MethodError
	if !errors.As(err, &me) || me.Code != nip46.CodeInternal {
		t.Fatalf("new request while syncing: %v, want %s", err, nip46.CodeInternal)
	}
	if _, ok, err := e.db.SignRequestRow(ctx, e.client, "fresh"); ok || err != nil {
		t.Fatalf("new request while syncing was recorded (%v, %v)", ok, err)
	}
}
