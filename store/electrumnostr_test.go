package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestElectrumNostrEvents: an event id is new once; records past the ttl are pruned unless
// pending (a held request's sender must outlive the 24 hours).
func TestElectrumNostrEvents(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	t0 := time.Unix(1_800_000_000, 0)
	ttl := 24 * time.Hour
	first := func(id string, at time.Time) bool {
		t.Helper()
		ok, err := db.FirstSeenElectrumNostr(ctx, ElectrumNostrEvent{EventID: id, Sender: "aa", Label: "rent", SeenAt: at}, ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !first("e1", t0) || first("e1", t0.Add(time.Hour)) {
		t.Fatal("e1: new, then seen")
	}
	if !first("e2", t0) {
		t.Fatal("e2 new")
	}
	if err := db.SetElectrumNostrPending(ctx, "e2", true); err != nil {
		t.Fatal(err)
	}
	if err := db.SetElectrumNostrPending(ctx, "nope", true); !errors.Is(err, ErrNoSuchElectrumNostrEvent) {
		t.Fatalf("unknown id: %v", err)
	}
	// A day and a bit later: e1 is pruned (and would count as new again: the 24-hour
	// created_at window refuses it before this table is asked), e2 is kept while pending.
	later := t0.Add(ttl + time.Minute)
	if !first("e3", later) {
		t.Fatal("e3 new")
	}
	if _, ok, _ := db.ElectrumNostrEventByID(ctx, "e1"); ok {
		t.Fatal("e1 not pruned")
	}
	ev, ok, err := db.ElectrumNostrEventByID(ctx, "e2")
	if err != nil || !ok || ev.Sender != "aa" || ev.Label != "rent" || !ev.Pending || !ev.SeenAt.Equal(t0) {
		t.Fatalf("e2: %+v %v %v", ev, ok, err)
	}
	if err := db.SetElectrumNostrPending(ctx, "e2", false); err != nil {
		t.Fatal(err)
	}
	first("e4", later)
	if _, ok, _ := db.ElectrumNostrEventByID(ctx, "e2"); ok {
		t.Fatal("e2 not pruned once answered")
	}
	// A forgotten event is new again.
	if err := db.ForgetElectrumNostr(ctx, "e4"); err != nil {
		t.Fatal(err)
	}
	if !first("e4", later) {
		t.Fatal("e4 still seen after ForgetElectrumNostr")
	}
}
