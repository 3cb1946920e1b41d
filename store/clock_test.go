package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

func TestClockPersistsAndFallsBack(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok, err := db.LastClock(ctx); ok || err != nil {
		t.Fatalf("new database: ok = %v, %v", ok, err)
	}
	// A database from before the clock was saved: the newest recorded time.
	seen := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	if err := db.PutPolicyVersion(ctx, PolicyVersion{Hash: "h", Name: "p", Body: []byte("x"), SeenAt: seen, EffectiveAt: seen}); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := db.LastClock(ctx); !ok || err != nil || !got.Equal(seen) {
		t.Fatalf("fallback = %s, %v, %v", got, ok, err)
	}
	at := seen.Add(time.Hour + 1500*time.Millisecond)
	if err := db.SaveClock(ctx, at); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := db.LastClock(ctx); !ok || err != nil || !got.Equal(at) {
		t.Fatalf("saved = %s, %v, %v", got, ok, err)
	}
}
