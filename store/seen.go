package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// FirstSeenEvent records that the NIP-46 request event id was handled at now and reports
// whether it is new: false when it was already recorded within ttl (a replay, or the same event
// delivered by another relay — also across restarts). Records older than ttl are pruned in the
// same transaction. Errors: the database's.
func (db *DB) FirstSeenEvent(ctx context.Context, id string, now time.Time, ttl time.Duration) (bool, error) {
	first := false
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM nip46_seen_events WHERE seen_at < ?`, now.Add(-ttl).Unix()); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO nip46_seen_events(event_id, seen_at) VALUES(?, ?) ON CONFLICT(event_id) DO NOTHING`, id, now.Unix())
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		first = n == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("store: seen event: %w", err)
	}
	return first, nil
}
