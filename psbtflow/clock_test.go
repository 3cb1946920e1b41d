package psbtflow

import (
	"context"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/internal/testfakes"
	"github.com/custodyagents/cosigner/internal/trustedtime"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/psbt"
)

// TestWallClockStepDoesNotEndCoolingOffOrWindows (issue 11, finding 7): on the trusted clock,
// a wall clock stepped 7 days forward neither ends a 24h cooling-off nor empties a 1-day
// velocity window.
func TestWallClockStepDoesNotEndCoolingOffOrWindows(t *testing.T) {
	e := newHoldEnv(t, "  velocity: [{window: 1d, max: 0.0005 BTC}]\nrules:\n  - {name: wait, match: {min_outflow: 35000 sat}, action: hold, hold: {cooling_off: 24h}}\n  - {name: small, action: allow}\n")
	sc := &testfakes.StepClock{WallTime: e.now}
	clk, err := trustedtime.New(context.Background(), sc, trustedtime.Options{Wall: sc.Wall, Elapsed: sc.Elapsed})
	if err != nil {
		t.Fatal(err)
	}
	e.rebuild(t, nil, WithClock(clk.Now))
	ctx := context.Background()
	_, err = e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "big", Method: "sign_psbt", Params: []string{e.psbt(t, 40_000)}})
	heldURL(t, err)
	e.svc.Tick(ctx)
	op := e.f.addCoin(t, 0, 7, 100_000)
	small, _ := psbt.Encode(e.f.buildPSBT(t, []wire.OutPoint{op}, 28_000, 71_000, 2), psbt.Base64)
	if _, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "s1", Method: "sign_psbt", Params: []string{small}}); err != nil {
		t.Fatal(err)
	}
	sc.WallTime, sc.ElapsedTime = sc.WallTime.Add(7*24*time.Hour+time.Minute), time.Minute
	e.svc.Tick(ctx)
	if got := e.ans.List(); len(got) != 0 {
		t.Fatalf("a 7-day wall clock step ended the 24h cooling-off: %v", got)
	}
	op2 := e.f.addCoin(t, 0, 8, 100_000)
	small2, _ := psbt.Encode(e.f.buildPSBT(t, []wire.OutPoint{op2}, 28_000, 71_000, 2), psbt.Base64)
	if _, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "s2", Method: "sign_psbt", Params: []string{small2}}); methodCode(err) != nip46.CodePolicyDenied {
		t.Fatalf("a 7-day wall clock step emptied the 1-day window: %v", err)
	}
}
