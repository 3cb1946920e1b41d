package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The replay set is written on its own connection with synchronous=NORMAL (seenConn), the only
// writes that skip the fsync. In WAL mode a commit appends the transaction to the WAL file
// before it returns, whatever synchronous says; NORMAL leaves out only the fsync of the WAL.
// Hence:
//   - a crash of the process (SIGKILL, panic, OOM) loses no recorded id: the WAL's pages are in
//     the operating system's cache and the next open replays them (TestSeenEventsSurviveKill);
//   - a crash of the machine (power, kernel) can lose the ids recorded since the WAL was last
//     synced. Every other transaction commits with synchronous=FULL, which syncs the whole WAL
//     file, ids written before it included, and the id of a request is recorded before the
//     request is served. So an id can be lost only if serving its request committed nothing
//     durable: ping, get_public_key, nip44_encrypt/decrypt, a sign_psbt answered from its
//     stored decision — requests whose replay changes nothing and is answered, again encrypted
//     to the client that sent it, as it was the first time. Every request that changed a
//     durable record (a sign_psbt decided, a connect spending its secret, a sign_event or a
//     refusal with its audit row, logout, switch_relays, an approval) keeps its id. And
//     requests not yet answered at the crash may be forgotten anyway: their client sends them
//     again.

// seenConn takes one connection out of sqldb's pool for the replay set and sets it to
// synchronous=NORMAL (checked by reading it back); the pool's connections stay FULL.
func seenConn(ctx context.Context, sqldb *sql.DB) (*sql.Conn, error) {
	c, err := sqldb.Conn(ctx)
	if err != nil {
		return nil, err
	}
	var level int
	if _, err = c.ExecContext(ctx, `PRAGMA synchronous=NORMAL`); err == nil {
		err = c.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(&level)
	}
	if err == nil && level != 1 {
		err = fmt.Errorf("synchronous is %d, want 1 (NORMAL)", level)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("replay set connection: %w", err)
	}
	return c, nil
}

// FirstSeenEvent records that the NIP-46 request event id was handled at now and reports
// whether it is new: false when it was already recorded within ttl (a replay, or the same event
// delivered by another relay — also across restarts). Records older than ttl are pruned in the
// same transaction. Errors: the database's.
func (db *DB) FirstSeenEvent(ctx context.Context, id string, now time.Time, ttl time.Duration) (bool, error) {
	first := false
	err := db.txOn(ctx, db.seen, func(tx *sql.Tx) error {
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
