package outbound

import "testing"

func TestCanTransition(t *testing.T) {
	all := []ProposalState{StateProposed, StateAwaitingCosigners, StateFinalized, StateBroadcast, StateConfirmed, StateReplaced, StateAbandoned}
	allowed := map[[2]ProposalState]bool{
		{StateProposed, StateProposed}: true, {StateProposed, StateAwaitingCosigners}: true, {StateProposed, StateAbandoned}: true,
		{StateAwaitingCosigners, StateAwaitingCosigners}: true, {StateAwaitingCosigners, StateFinalized}: true, {StateAwaitingCosigners, StateAbandoned}: true,
		{StateFinalized, StateBroadcast}: true, {StateFinalized, StateAbandoned}: true,
		{StateBroadcast, StateBroadcast}: true, {StateBroadcast, StateConfirmed}: true, {StateBroadcast, StateReplaced}: true, {StateBroadcast, StateAbandoned}: true,
		{StateConfirmed, StateBroadcast}: true,
	}
	for _, from := range all {
		for _, to := range all {
			if got := CanTransition(from, to); got != allowed[[2]ProposalState{from, to}] {
				t.Errorf("CanTransition(%s, %s) = %v", from, to, got)
			}
		}
	}
	for _, s := range all {
		if got, want := Cancellable(s), s == StateProposed || s == StateAwaitingCosigners; got != want {
			t.Errorf("Cancellable(%s) = %v", s, got)
		}
	}
}

func TestNext(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    Facts
		want Decision
	}{
		{"new proposal is built", Facts{State: StateProposed}, Decision{ActBuild, StateProposed, ""}},
		{"built proposal is signed", Facts{State: StateProposed, Built: true}, Decision{ActSelfSign, StateAwaitingCosigners, ""}},
		{"proposed, inputs spent elsewhere", Facts{State: StateProposed, Built: true, Conflict: ConflictElsewhere}, Decision{ActAbandon, StateAbandoned, ReasonSpentElsewhere}},
		{"bump whose original confirmed", Facts{State: StateProposed, Conflict: ConflictOriginalConfirmed}, Decision{ActAbandon, StateAbandoned, ReasonOriginalConfirmed}},
		{"awaiting: ask", Facts{State: StateAwaitingCosigners, Signatures: 1, Needed: 2}, Decision{ActAsk, StateAwaitingCosigners, ""}},
		{"awaiting: threshold reached", Facts{State: StateAwaitingCosigners, Signatures: 2, Needed: 2}, Decision{ActFinalize, StateFinalized, ""}},
		{"awaiting: more than needed", Facts{State: StateAwaitingCosigners, Signatures: 3, Needed: 2}, Decision{ActFinalize, StateFinalized, ""}},
		{"awaiting: needed unknown never finalizes", Facts{State: StateAwaitingCosigners, Signatures: 3}, Decision{ActAsk, StateAwaitingCosigners, ""}},
		{"awaiting: spent elsewhere", Facts{State: StateAwaitingCosigners, Signatures: 1, Needed: 2, Conflict: ConflictElsewhere}, Decision{ActAbandon, StateAbandoned, ReasonSpentElsewhere}},
		{"finalized is broadcast", Facts{State: StateFinalized}, Decision{ActBroadcast, StateBroadcast, ""}},
		{"finalized, already seen (crash after sending)", Facts{State: StateFinalized, Seen: true, Conflict: NoConflict}, Decision{ActBroadcast, StateBroadcast, ""}},
		{"finalized, inputs spent elsewhere", Facts{State: StateFinalized, Conflict: ConflictElsewhere}, Decision{ActAbandon, StateAbandoned, ReasonSpentElsewhere}},
		{"broadcast, in mempool", Facts{State: StateBroadcast, Seen: true, Tip: 101, BroadcastHeight: 100, BumpAfter: 6}, Decision{ActNone, StateBroadcast, ""}},
		{"broadcast, dropped: send again", Facts{State: StateBroadcast, Tip: 101, BroadcastHeight: 100}, Decision{ActBroadcast, StateBroadcast, ""}},
		{"broadcast, replaced in the mempool by its live bump", Facts{State: StateBroadcast, BumpLive: true}, Decision{ActNone, StateBroadcast, ""}},
		{"broadcast, confirmed", Facts{State: StateBroadcast, Seen: true, Confs: 1}, Decision{ActConfirm, StateConfirmed, ""}},
		{"broadcast, bump due", Facts{State: StateBroadcast, Seen: true, Tip: 106, BroadcastHeight: 100, BumpAfter: 6}, Decision{ActBump, StateBroadcast, ""}},
		{"broadcast, bump not yet due", Facts{State: StateBroadcast, Seen: true, Tip: 105, BroadcastHeight: 100, BumpAfter: 6}, Decision{ActNone, StateBroadcast, ""}},
		{"broadcast, bump already live", Facts{State: StateBroadcast, Seen: true, Tip: 120, BroadcastHeight: 100, BumpAfter: 6, BumpLive: true}, Decision{ActNone, StateBroadcast, ""}},
		{"broadcast, bump_after 0 never bumps", Facts{State: StateBroadcast, Seen: true, Tip: 1000, BroadcastHeight: 100}, Decision{ActNone, StateBroadcast, ""}},
		{"broadcast, the bump confirmed", Facts{State: StateBroadcast, Conflict: ConflictBumpConfirmed}, Decision{ActMarkReplace, StateReplaced, ""}},
		{"bump broadcast, the original confirmed", Facts{State: StateBroadcast, Conflict: ConflictOriginalConfirmed}, Decision{ActAbandon, StateAbandoned, ReasonOriginalConfirmed}},
		{"broadcast, double spent", Facts{State: StateBroadcast, Conflict: ConflictElsewhere}, Decision{ActAbandon, StateAbandoned, ReasonSpentElsewhere}},
		{"confirmed stays", Facts{State: StateConfirmed, Seen: true, Confs: 3}, Decision{ActNone, StateConfirmed, ""}},
		{"confirmed, reorged out", Facts{State: StateConfirmed, Seen: true}, Decision{ActUnconfirm, StateBroadcast, ""}},
		{"replaced is final", Facts{State: StateReplaced}, Decision{ActNone, StateReplaced, ""}},
		{"abandoned is final", Facts{State: StateAbandoned, Conflict: ConflictElsewhere}, Decision{ActNone, StateAbandoned, ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Next(tc.f)
			if got != tc.want {
				t.Fatalf("Next(%+v) = %+v, want %+v", tc.f, got, tc.want)
			}
			if got.To != tc.f.State && !CanTransition(tc.f.State, got.To) {
				t.Fatalf("Next leads %s → %s, which is not an allowed transition", tc.f.State, got.To)
			}
		})
	}
}

// FuzzNext: whatever the facts, Next never leads to a state change the state machine does not
// allow, never acts on a final state, and only abandons with a reason.
func FuzzNext(f *testing.F) {
	f.Add(uint8(0), true, 1, 2, false, int32(0), uint8(0), int32(100), int32(90), int32(6), false)
	f.Add(uint8(3), false, 0, 0, true, int32(0), uint8(1), int32(106), int32(100), int32(6), true)
	f.Add(uint8(4), false, 0, 0, false, int32(0), uint8(3), int32(0), int32(0), int32(0), false)
	states := []ProposalState{StateProposed, StateAwaitingCosigners, StateFinalized, StateBroadcast, StateConfirmed, StateReplaced, StateAbandoned, "bogus"}
	f.Fuzz(func(t *testing.T, st uint8, built bool, sigs, needed int, seen bool, confs int32, conflict uint8, tip, bh, bumpAfter int32, bumpLive bool) {
		fa := Facts{State: states[int(st)%len(states)], Built: built, Signatures: sigs, Needed: needed, Seen: seen, Confs: confs,
			Conflict: Conflict(conflict % 4), Tip: tip, BroadcastHeight: bh, BumpAfter: bumpAfter, BumpLive: bumpLive}
		d := Next(fa)
		if d.To != fa.State && !CanTransition(fa.State, d.To) {
			t.Fatalf("Next(%+v) = %+v: %s → %s is not allowed", fa, d, fa.State, d.To)
		}
		if (d.Do == ActAbandon) != (d.Reason != "") {
			t.Fatalf("Next(%+v) = %+v: abandon and reason disagree", fa, d)
		}
		if (fa.State == StateReplaced || fa.State == StateAbandoned) && d.Do != ActNone {
			t.Fatalf("Next acts on a final proposal: %+v", d)
		}
	})
}
