package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// LastClock returns the trusted clock's last persisted value (migration 0015); when none was
// ever saved (a database from before it), the newest time the database recorded (an audit
// entry, a policy version seen), which the previous run's clock had passed; ok is false for
// a new database.
func (db *DB) LastClock(ctx context.Context) (time.Time, bool, error) {
	var ms sql.NullInt64
	if err := db.SQL.QueryRowContext(ctx, `SELECT at_ms FROM trusted_clock WHERE id = 1`).Scan(&ms); err != nil && err != sql.ErrNoRows {
		return time.Time{}, false, fmt.Errorf("store: read clock: %w", err)
	}
	if ms.Valid {
		return time.UnixMilli(ms.Int64), true, nil
	}
	var sec sql.NullInt64
	if err := db.SQL.QueryRowContext(ctx, `SELECT max(t) FROM (SELECT max(at) AS t FROM audit_log UNION ALL SELECT max(seen_at) FROM policy_versions)`).Scan(&sec); err != nil {
		return time.Time{}, false, fmt.Errorf("store: read clock: %w", err)
	}
	if sec.Valid {
		return time.Unix(sec.Int64, 0), true, nil
	}
	return time.Time{}, false, nil
}

// SaveClock persists the trusted clock's value t.
func (db *DB) SaveClock(ctx context.Context, t time.Time) error {
	if _, err := db.SQL.ExecContext(ctx, `INSERT INTO trusted_clock(id, at_ms) VALUES (1, ?) ON CONFLICT(id) DO UPDATE SET at_ms = excluded.at_ms`, t.UnixMilli()); err != nil {
		return fmt.Errorf("store: save clock: %w", err)
	}
	return nil
}
