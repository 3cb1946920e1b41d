package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestFirstSeenEvent: an id is new once within the window, also after the database is closed
// and opened again (a restart), and new again once the window has passed.
func TestFirstSeenEvent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	ttl := 21 * time.Minute
	for i, want := range []bool{true, false} {
		if got, err := db.FirstSeenEvent(ctx, "e1", now, ttl); err != nil || got != want {
			t.Fatalf("call %d: %v, %v; want %v", i, got, err, want)
		}
	}
	db.Close()
	if db, err = Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := db.FirstSeenEvent(ctx, "e1", now.Add(ttl-time.Second), ttl); err != nil || got {
		t.Fatalf("after a restart, within the window: %v, %v; want a replay", got, err)
	}
	if got, err := db.FirstSeenEvent(ctx, "e2", now.Add(2*ttl), ttl); err != nil || !got {
		t.Fatalf("another id: %v, %v", got, err)
	}
	if got, err := db.FirstSeenEvent(ctx, "e1", now.Add(2*ttl), ttl); err != nil || !got {
		t.Fatalf("after the window: %v, %v; want new (pruned)", got, err)
	}
}
