package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"fmt"
	"slices"
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

// MedianTimePast is BIP-113's median time past at height tip of the chain watcher's stored
// header chain (table chainwatch_headers): the median of the timestamps of the headers at
// tip-10 … tip (fewer when fewer are stored); ok is false when none is.
func (db *DB) MedianTimePast(ctx context.Context, tip int32) (time.Time, bool, error) {
	rows, err := db.SQL.QueryContext(ctx, `SELECT header FROM chainwatch_headers WHERE height BETWEEN ? AND ?`, int64(tip)-10, tip)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("store: read headers: %w", err)
	}
	defer rows.Close()
	var ts []uint32
	for rows.Next() {
		var h []byte
		if err := rows.Scan(&h); err != nil {
			return time.Time{}, false, fmt.Errorf("store: read headers: %w", err)
		}
		if len(h) == 80 {
			ts = append(ts, binary.LittleEndian.Uint32(h[68:72])) // version 4, prev 32, merkle root 32, time 4
		}
	}
	if err := rows.Err(); err != nil {
		return time.Time{}, false, fmt.Errorf("store: read headers: %w", err)
	}
	if len(ts) == 0 {
		return time.Time{}, false, nil
	}
	slices.Sort(ts)
	return time.Unix(int64(ts[len(ts)/2]), 0), true, nil
}
