package store

// electrumnostr.go — the events of Electrum's psbt_nostr channel (migration 0016,
// signer/psbtnostr).

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrNoSuchElectrumNostrEvent: no psbt_nostr event with that id is recorded.
var ErrNoSuchElectrumNostrEvent = errors.New("store: no such electrum nostr event")

// ElectrumNostrEvent is one kind-4 event the psbt_nostr channel took in.
type ElectrumNostrEvent struct {
	EventID, Sender, Label string
	SeenAt                 time.Time
	Pending                bool // its request waits in a hold; kept past the ttl
}

// FirstSeenElectrumNostr records the event ev.EventID (from ev.Sender, with ev.Label) as taken
// in at ev.SeenAt and reports whether it is new: false when it is already recorded. Records
// seen before ev.SeenAt−ttl that are not pending are pruned in the same transaction. Errors:
// the database's.
func (db *DB) FirstSeenElectrumNostr(ctx context.Context, ev ElectrumNostrEvent, ttl time.Duration) (bool, error) {
	first := false
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM electrum_nostr_events WHERE seen_at < ? AND pending = 0`, ev.SeenAt.Add(-ttl).Unix()); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO electrum_nostr_events(event_id, sender, label, seen_at) VALUES(?, ?, ?, ?) ON CONFLICT(event_id) DO NOTHING`,
			ev.EventID, ev.Sender, ev.Label, ev.SeenAt.Unix())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		first = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: electrum nostr event: %w", err)
	}
	return first, nil
}

// SetElectrumNostrPending marks (pending true) or unmarks the event id as waiting for a late
// answer. Errors: the database's; ErrNoSuchElectrumNostrEvent when no such event is recorded.
func (db *DB) SetElectrumNostrPending(ctx context.Context, id string, pending bool) error {
	p := 0
	if pending {
		p = 1
	}
	res, err := db.SQL.ExecContext(ctx, `UPDATE electrum_nostr_events SET pending = ? WHERE event_id = ?`, p, id)
	if err != nil {
		return fmt.Errorf("store: electrum nostr event %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("store: electrum nostr event %s: %w", id, ErrNoSuchElectrumNostrEvent)
	}
	return nil
}

// ElectrumNostrEventByID returns the recorded event id (ok false when none). Errors: the
// database's.
func (db *DB) ElectrumNostrEventByID(ctx context.Context, id string) (ElectrumNostrEvent, bool, error) {
	var ev ElectrumNostrEvent
	var at int64
	var p int
	err := db.SQL.QueryRowContext(ctx, `SELECT event_id, sender, label, seen_at, pending FROM electrum_nostr_events WHERE event_id = ?`, id).
		Scan(&ev.EventID, &ev.Sender, &ev.Label, &at, &p)
	if errors.Is(err, sql.ErrNoRows) {
		return ev, false, nil
	}
	if err != nil {
		return ev, false, fmt.Errorf("store: electrum nostr event %s: %w", id, err)
	}
	ev.SeenAt, ev.Pending = time.Unix(at, 0), p == 1
	return ev, true, nil
}

// ForgetElectrumNostr removes the record of event id (nothing when there is none), so that the
// event is taken in again when it is delivered again: for a request psbtflow did not decide
// (not synced yet, a passing failure). Errors: the database's.
func (db *DB) ForgetElectrumNostr(ctx context.Context, id string) error {
	if _, err := db.SQL.ExecContext(ctx, `DELETE FROM electrum_nostr_events WHERE event_id = ?`, id); err != nil {
		return fmt.Errorf("store: electrum nostr event %s: %w", id, err)
	}
	return nil
}
