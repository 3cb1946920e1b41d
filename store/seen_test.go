package store

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
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

// TestSeenEventsSynchronous: the replay set's connection commits with synchronous=NORMAL and
// every connection of the pool (every other transaction) keeps FULL.
func TestSeenEventsSynchronous(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var level int
	if err := db.seen.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&level); err != nil || level != 1 {
		t.Fatalf("replay set connection: synchronous = %d, %v; want 1 (NORMAL)", level, err)
	}
	// Hold several pool connections at once so that each is a different one.
	var conns []*sql.Conn
	for range 4 {
		c, err := db.SQL.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns {
		if err := c.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&level); err != nil || level != 2 {
			t.Fatalf("pool connection %d: synchronous = %d, %v; want 2 (FULL)", i, level, err)
		}
	}
}

// TestSeenEventsSurviveKill: a process that records event ids and is killed (SIGKILL) at a
// moment it does not choose loses none of the ids FirstSeenEvent had returned for: after the
// database is opened again each of them is a replay. (A process crash is what synchronous=NORMAL
// survives; a power loss is argued in seen.go.) Several rounds kill it at different points.
func TestSeenEventsSurviveKill(t *testing.T) {
	if path := os.Getenv("STORE_SEEN_CHILD"); path != "" {
		seenChild(path)
		return
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	now := time.Now()
	var recorded []string
	for round := range 5 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSeenEventsSurviveKill$")
		cmd.Env = append(os.Environ(), "STORE_SEEN_CHILD="+path, fmt.Sprintf("STORE_SEEN_ROUND=%d", round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		stopAt := 50 + mathrand.IntN(400) // ids reported before the kill
		for n := 0; sc.Scan(); n++ {
			if id, ok := strings.CutPrefix(sc.Text(), "recorded "); ok {
				recorded = append(recorded, id)
				if n == stopAt {
					break
				}
			}
		}
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	}
	if len(recorded) < 5*50 {
		t.Fatalf("the children reported only %d ids", len(recorded))
	}
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, id := range recorded {
		if first, err := db.FirstSeenEvent(ctx, id, now, 21*time.Minute); err != nil || first {
			t.Fatalf("id %s, recorded before the kill, is new again after it (%v)", id, err)
		}
	}
}

// seenChild records ids until it is killed, reporting each once FirstSeenEvent returned.
func seenChild(path string) {
	ctx := context.Background()
	db, err := Open(ctx, path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	round := os.Getenv("STORE_SEEN_ROUND")
	for i := 0; ; i++ {
		id := fmt.Sprintf("r%s-e%d", round, i)
		if first, err := db.FirstSeenEvent(ctx, id, time.Now(), 21*time.Minute); err != nil || !first {
			fmt.Println("error", id, first, err)
			os.Exit(1)
		}
		fmt.Println("recorded " + id) // unbuffered: the parent reads it at once
	}
}
