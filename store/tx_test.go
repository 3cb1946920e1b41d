package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"testing"
)

// TestTxTakesTurns: the process's transactions run one at a time; one waiting for its turn
// gives up when its context ends, and the next runs once the one before has committed.
func TestTxTakesTurns(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	inside, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- db.Tx(ctx, func(tx *sql.Tx) error {
			close(inside)
			<-release
			_, err := tx.ExecContext(ctx, `INSERT INTO nip46_seen_events(event_id, seen_at) VALUES('a', 1)`)
			return err
		})
	}()
	<-inside
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	ran := false
	if err := db.Tx(cancelled, func(*sql.Tx) error { ran = true; return nil }); !errors.Is(err, context.Canceled) || ran {
		t.Fatalf("a transaction waiting for its turn with its context ended: ran %v, err %v; want context.Canceled without running", ran, err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.SQL.QueryRowContext(ctx, `SELECT count(*) FROM nip46_seen_events WHERE event_id = 'a'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the first transaction's row: %d (%v)", n, err)
	}
}
