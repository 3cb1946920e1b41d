package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func openTemp(t *testing.T) (*DB, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, path
}

func TestCreateProposalOncePerTrigger(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.UTC)
	p, created, err := db.CreateProposal(ctx, Proposal{ID: "p1", Automation: "sweep", TriggerKey: "funding_confirmed:aa:0", State: "proposed", CreatedAt: at}, "deposit aa:0")
	if err != nil || !created || p.State != "proposed" || !p.CreatedAt.Equal(at) {
		t.Fatalf("first create: %+v %v %v", p, created, err)
	}
	// The same event again (restart, reorg), even under another id: no second proposal.
	again, created, err := db.CreateProposal(ctx, Proposal{ID: "p2", Automation: "sweep", TriggerKey: "funding_confirmed:aa:0", State: "proposed", CreatedAt: at.Add(time.Hour)}, "again")
	if err != nil || created || again.ID != "p1" {
		t.Fatalf("second create: %+v %v %v", again, created, err)
	}
	// Another automation may fire on the same event.
	if _, created, err := db.CreateProposal(ctx, Proposal{ID: "p3", Automation: "forward", TriggerKey: "funding_confirmed:aa:0", State: "proposed", CreatedAt: at}, ""); err != nil || !created {
		t.Fatalf("other automation: %v %v", created, err)
	}
	all, err := db.Proposals(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("proposals: %d %v", len(all), err)
	}
	tl, err := db.ProposalTimeline(ctx, "p1")
	if err != nil || len(tl) != 1 || tl[0].Event != "proposed" || tl[0].Detail != "deposit aa:0" {
		t.Fatalf("timeline: %+v %v", tl, err)
	}
	if _, err := db.GetProposal(ctx, "p2"); !errors.Is(err, ErrNoSuchProposal) {
		t.Fatalf("p2 exists: %v", err)
	}
}

func TestChangeProposalGuardedByState(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	p, _, err := db.CreateProposal(ctx, Proposal{ID: "p1", Automation: "sweep", TriggerKey: "k", State: "proposed"}, "")
	if err != nil {
		t.Fatal(err)
	}
	p.State, p.PSBT, p.UnsignedTxID = "awaiting_cosigners", []byte("psbt"), "tx1"
	err = db.ChangeProposal(ctx, ProposalChange{From: "proposed", Proposal: p,
		Cosigners: []ProposalCosigner{{Cosigner: "bb", BunkerURI: "bunker://bb?secret=s", RequestID: "r1", State: "waiting"}},
		Events:    []ProposalEvent{{Event: "self_signed"}, {Event: "requested", Detail: "bb"}}})
	if err != nil {
		t.Fatal(err)
	}
	// A second step from the old state fails and writes nothing.
	stale := p
	stale.State = "abandoned"
	if err := db.ChangeProposal(ctx, ProposalChange{From: "proposed", Proposal: stale, Events: []ProposalEvent{{Event: "abandoned"}}}); !errors.Is(err, ErrProposalState) {
		t.Fatalf("stale change: %v", err)
	}
	got, _ := db.GetProposal(ctx, "p1")
	if got.State != "awaiting_cosigners" || string(got.PSBT) != "psbt" {
		t.Fatalf("after stale change: %+v", got)
	}
	// The co-signer's answer keeps its request id.
	if err := db.SetProposalCosigner(ctx, "awaiting_cosigners", ProposalCosigner{ProposalID: "p1", Cosigner: "bb", RequestID: "other", State: "held", Detail: "https://x"},
		ProposalEvent{Event: "held"}); err != nil {
		t.Fatal(err)
	}
	cs, _ := db.ProposalCosigners(ctx, "p1")
	if len(cs) != 1 || cs[0].RequestID != "r1" || cs[0].State != "held" || cs[0].BunkerURI != "bunker://bb?secret=s" {
		t.Fatalf("cosigners: %+v", cs)
	}
	if err := db.SetProposalCosigner(ctx, "proposed", ProposalCosigner{ProposalID: "p1", Cosigner: "bb", RequestID: "r1", State: "waiting"}); !errors.Is(err, ErrProposalState) {
		t.Fatalf("cosigner under wrong state: %v", err)
	}
	if err := db.RenewProposalCosigner(ctx, "awaiting_cosigners", ProposalCosigner{ProposalID: "p1", Cosigner: "bb", RequestID: "r2", State: "error"}); err != nil {
		t.Fatal(err)
	}
	if cs, _ := db.ProposalCosigners(ctx, "p1"); cs[0].RequestID != "r2" || cs[0].State != "error" {
		t.Fatalf("renewed: %+v", cs)
	}
	if err := db.RenewProposalCosigner(ctx, "proposed", ProposalCosigner{ProposalID: "p1", Cosigner: "bb", RequestID: "r3"}); !errors.Is(err, ErrProposalState) {
		t.Fatalf("renew under the wrong state: %v", err)
	}
	tl, _ := db.ProposalTimeline(ctx, "p1")
	var names []string
	for _, e := range tl {
		names = append(names, e.Event)
	}
	if !reflect.DeepEqual(names, []string{"proposed", "self_signed", "requested", "held"}) {
		t.Fatalf("timeline: %v", names)
	}
	if err := db.ChangeProposal(ctx, ProposalChange{From: "proposed", Proposal: Proposal{ID: "nope", State: "abandoned"}}); !errors.Is(err, ErrNoSuchProposal) {
		t.Fatalf("unknown id: %v", err)
	}
}

// TestMoveProposal: a proposal moves only from one of the states given, in one transaction
// with its timeline entry; otherwise nothing is written and the proposal as it is comes back.
func TestMoveProposal(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	from := []string{"proposed", "awaiting_cosigners"}
	for _, tc := range []struct {
		state   string
		wantErr error
	}{
		{"proposed", nil},
		{"awaiting_cosigners", nil},
		{"finalized", ErrProposalState},
		{"abandoned", ErrProposalState},
	} {
		t.Run(tc.state, func(t *testing.T) {
			id := "p-" + tc.state
			if _, _, err := db.CreateProposal(ctx, Proposal{ID: id, Automation: "a", TriggerKey: id, State: tc.state, Reason: "x"}, ""); err != nil {
				t.Fatal(err)
			}
			before, err := db.MoveProposal(ctx, id, from, "abandoned", "cancelled by operator", now)
			if !errors.Is(err, tc.wantErr) || tc.wantErr == nil && err != nil {
				t.Fatalf("move from %s: %v, want %v", tc.state, err, tc.wantErr)
			}
			got, _ := db.GetProposal(ctx, id)
			tl, _ := db.ProposalTimeline(ctx, id)
			if before.State != tc.state {
				t.Fatalf("returned state %s, was %s", before.State, tc.state)
			}
			if tc.wantErr == nil {
				if got.State != "abandoned" || got.Reason != "cancelled by operator" || !got.UpdatedAt.Equal(now) ||
					len(tl) != 2 || tl[1].Event != "abandoned" || tl[1].Detail != "cancelled by operator" {
					t.Fatalf("after move: %+v, timeline %+v", got, tl)
				}
			} else if got.State != tc.state || got.Reason != "x" || len(tl) != 1 {
				t.Fatalf("refused move wrote: %+v, timeline %+v", got, tl)
			}
		})
	}
	if _, err := db.MoveProposal(ctx, "missing", from, "abandoned", "x", now); !errors.Is(err, ErrNoSuchProposal) {
		t.Fatalf("missing: %v", err)
	}
}

// snapshot is everything the outbound tables hold, for comparing before and after a failed step.
func snapshot(t *testing.T, db *DB) string {
	t.Helper()
	ctx := context.Background()
	ps, err := db.Proposals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := ""
	for _, p := range ps {
		cs, _ := db.ProposalCosigners(ctx, p.ID)
		tl, _ := db.ProposalTimeline(ctx, p.ID)
		out += fmt.Sprintf("%+v\n%+v\n%+v\n", p, cs, tl)
	}
	return out
}

// TestProposalStepsAtomic is the crash-in-between property: a step that fails part-way (here a
// bad co-signer row or timeline entry after the state update, as a crash before commit would)
// leaves the tables exactly as before, also after reopening the database; the step then applies
// whole. Random walks through the states.
func TestProposalStepsAtomic(t *testing.T) {
	db, path := openTemp(t)
	ctx := context.Background()
	walk := []string{"awaiting_cosigners", "finalized", "broadcast", "confirmed", "broadcast", "confirmed"}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		id := fmt.Sprintf("p%d", i)
		p, _, err := db.CreateProposal(ctx, Proposal{ID: id, Automation: "a", TriggerKey: id, State: "proposed"}, "")
		if err != nil {
			t.Fatal(err)
		}
		for step, next := range walk[:1+r.IntN(len(walk))] {
			before := snapshot(t, db)
			q := p
			q.State, q.TxID, q.FeeSat = next, fmt.Sprintf("tx%d", step), int64(step)
			change := ProposalChange{From: p.State, Proposal: q, Events: []ProposalEvent{{Event: next}}}
			bad := change
			if r.IntN(2) == 0 {
				bad.Cosigners = []ProposalCosigner{{Cosigner: "bb", RequestID: "r", State: "waiting"}, {Cosigner: "cc"}} // second row invalid
			} else {
				bad.Events = append(bad.Events, ProposalEvent{}) // invalid timeline entry
			}
			if err := db.ChangeProposal(ctx, bad); err == nil {
				t.Fatal("a bad step was applied")
			}
			if r.IntN(4) == 0 { // the process restarts
				db.Close()
				if db, err = Open(ctx, path); err != nil {
					t.Fatal(err)
				}
			}
			if after := snapshot(t, db); after != before {
				t.Fatalf("failed step %s→%s left a trace:\nbefore %s\nafter %s", p.State, next, before, after)
			}
			if err := db.ChangeProposal(ctx, change); err != nil {
				t.Fatal(err)
			}
			p = q
		}
		got, _ := db.GetProposal(ctx, id)
		tl, _ := db.ProposalTimeline(ctx, id)
		if got.State != p.State || tl[len(tl)-1].Event != p.State {
			t.Fatalf("%s: state %s, last timeline entry %s", id, got.State, tl[len(tl)-1].Event)
		}
	}
	db.Close()
}
