package store

import (
	"context"
	"encoding/binary"
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

func TestMedianTimePastOfStoredHeaders(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, ok, err := db.MedianTimePast(ctx, 20); ok || err != nil {
		t.Fatalf("no headers: %v, %v", ok, err)
	}
	// Heights 1..20; timestamps out of order near the tip (allowed by consensus).
	base := uint32(1_800_000_000)
	stamps := map[int]uint32{}
	for h := 1; h <= 20; h++ {
		stamps[h] = base + uint32(h)*600
	}
	stamps[19], stamps[20] = base+100, base+50_000
	for h, ts := range stamps {
		hdr := make([]byte, 80)
		binary.LittleEndian.PutUint32(hdr[68:72], ts)
		if _, err := db.SQL.Exec(`INSERT INTO chainwatch_headers(height, header) VALUES (?, ?)`, h, hdr); err != nil {
			t.Fatal(err)
		}
	}
	// Heights 10..20: 10..18 at base+h*600, 19 at base+100, 20 at base+50000 → sorted, the 6th
	// of 11 is height 14's.
	got, ok, err := db.MedianTimePast(ctx, 20)
	if !ok || err != nil || got.Unix() != int64(base+14*600) {
		t.Fatalf("mtp = %d, %v, %v; want %d", got.Unix(), ok, err, base+14*600)
	}
}
