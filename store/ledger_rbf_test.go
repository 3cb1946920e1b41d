package store

import (
	"context"
	"testing"
	"time"
)

// A fee bump signed after the watcher reported the original's spend (the original is "spent",
// in the mempool) supersedes it: the windows count the two once, and when the bump's spend is
// reported the original is released.
func TestLedgerBumpOfSpentOriginal(t *testing.T) {
	db, _ := openTemp(t)
	ctx := context.Background()
	at := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	signed(t, db, "orig", 100_000, at, "c:0")
	if err := db.SetLedgerState(ctx, "orig", LedgerSpent); err != nil { // Spent event: in the mempool
		t.Fatal(err)
	}
	plan, err := db.PlanReplacement(ctx, "bump", []string{"c:0"})
	if err != nil || len(plan.Replaced) != 1 || plan.Replaced[0].TxID != "orig" {
		t.Fatalf("plan %+v %v", plan, err)
	}
	signed(t, db, "bump", 100_500, at.Add(time.Hour), "c:0")
	if got := states(t, db); got["orig"] != LedgerReplaced+"/bump" || got["bump"] != LedgerReserved+"/" {
		t.Fatalf("ledger %v", got)
	}
	n, err := db.SpentSince(ctx, at.Add(-time.Hour), nil)
	if err != nil || n != 100_500 {
		t.Fatalf("counted %d sat (%v), want the bump once", n, err)
	}
}
