package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"
)

// Retention bounds the remote signer's records: the audit log, the signing requests and the
// NIP-46 replay set. Pruning never removes what an audit of the co-signer's commitments needs
// (see Prune). A zero field turns that limit off.
type Retention struct {
	// MaxAge: audit_log rows (by their time) and sign_requests rows (by their last update)
	// older than this are pruned.
	MaxAge time.Duration
	// MaxAuditRows and MaxRequestRows: past these counts the oldest prunable rows go. Rows that
	// are kept (see Prune) count too, so a table can stay above its count while they exist.
	MaxAuditRows   int
	MaxRequestRows int
	// SeenTTL: replay-set entries older than this are pruned (the remote signer's replay window:
	// older events are refused by their created_at anyway). MaxSeenEvents bounds their number;
	// past it the oldest go, and a replay of one of them is caught by the request's
	// (client, id) de-duplication instead.
	SeenTTL       time.Duration
	MaxSeenEvents int
}

// PruneResult counts the rows one Prune deleted.
type PruneResult struct {
	Audit, Requests, SeenEvents int64
}

// pruneBatch bounds the rows one pruning transaction deletes, so that writers (requests being
// decided) never wait long behind it.
const pruneBatch = 1000

// keptRequest is the SQL condition (over columns client_pubkey and request_id) of a request
// Prune keeps whatever its age: one that is not finished (received, held), one with a hold
// still waiting, and one a spend_ledger entry references (the signature it answered is a
// commitment the ledger still accounts for, whatever the entry's state).
const keptRequest = `((client_pubkey, request_id) IN (SELECT client_pubkey, request_id FROM sign_requests WHERE state IN ('` +
	RequestReceived + `', '` + RequestHeld + `'))
	OR (client_pubkey, request_id) IN (SELECT client_pubkey, request_id FROM holds WHERE state = '` + HoldWaiting + `')
	OR (client_pubkey, request_id) IN (SELECT client_pubkey, request_id FROM spend_ledger))`

// keptAudit adds, for audit_log rows: entries naming a transaction of the spend ledger, and the
// entries that created a session that still exists (who was let in, with which permissions).
const keptAudit = `(` + keptRequest + `
	OR (unsigned_txid != '' AND unsigned_txid IN (SELECT txid FROM spend_ledger))
	OR (decision = 'connected' AND client_pubkey IN (SELECT client_pubkey FROM client_sessions)))`

// Prune deletes, in batches of pruneBatch rows per transaction:
//   - audit_log rows older than MaxAge, then the oldest beyond MaxAuditRows;
//   - sign_requests rows last updated before MaxAge, then the oldest beyond MaxRequestRows;
//   - nip46_seen_events rows older than SeenTTL, then the oldest beyond MaxSeenEvents.
//
// It keeps, whatever their age or number: requests not finished (received, held), requests
// with a waiting hold, requests a spend_ledger entry references, and their audit entries;
// audit entries naming a spend_ledger transaction; and the audit entry that created each
// existing session. The spend ledger, holds, approvals, sessions and policy versions are never
// pruned. A request pruned is evaluated afresh if its client sends the same id again.
// Errors: the database's (rows deleted before the error stay deleted).
func (db *DB) Prune(ctx context.Context, r Retention, now time.Time) (PruneResult, error) {
	var res PruneResult
	var err error
	add := func(n *int64, q string, args ...any) {
		if err != nil {
			return
		}
		var k int64
		k, err = db.deleteInBatches(ctx, q, args...)
		*n += k
	}
	if r.MaxAge > 0 {
		cut := now.Add(-r.MaxAge).Unix()
		add(&res.Audit, `DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE at < ? AND NOT `+keptAudit+` ORDER BY id LIMIT ?)`, cut)
		add(&res.Requests, `DELETE FROM sign_requests WHERE rowid IN (SELECT rowid FROM sign_requests WHERE updated_at < ? AND NOT `+keptRequest+` ORDER BY rowid LIMIT ?)`, cut)
	}
	if r.MaxAuditRows > 0 {
		if cut, ok, cerr := db.nthNewest(ctx, `SELECT id FROM audit_log ORDER BY id DESC LIMIT 1 OFFSET ?`, r.MaxAuditRows); cerr != nil {
			err = cerr
		} else if ok {
			add(&res.Audit, `DELETE FROM audit_log WHERE id IN (SELECT id FROM audit_log WHERE id <= ? AND NOT `+keptAudit+` ORDER BY id LIMIT ?)`, cut)
		}
	}
	if r.MaxRequestRows > 0 && err == nil {
		if cut, ok, cerr := db.nthNewest(ctx, `SELECT rowid FROM sign_requests ORDER BY rowid DESC LIMIT 1 OFFSET ?`, r.MaxRequestRows); cerr != nil {
			err = cerr
		} else if ok {
			add(&res.Requests, `DELETE FROM sign_requests WHERE rowid IN (SELECT rowid FROM sign_requests WHERE rowid <= ? AND NOT `+keptRequest+` ORDER BY rowid LIMIT ?)`, cut)
		}
	}
	if r.SeenTTL > 0 {
		add(&res.SeenEvents, `DELETE FROM nip46_seen_events WHERE rowid IN (SELECT rowid FROM nip46_seen_events WHERE seen_at < ? LIMIT ?)`, now.Add(-r.SeenTTL).Unix())
	}
	if r.MaxSeenEvents > 0 && err == nil {
		if cut, ok, cerr := db.nthNewest(ctx, `SELECT seen_at FROM nip46_seen_events ORDER BY seen_at DESC LIMIT 1 OFFSET ?`, r.MaxSeenEvents); cerr != nil {
			err = cerr
		} else if ok {
			add(&res.SeenEvents, `DELETE FROM nip46_seen_events WHERE rowid IN (SELECT rowid FROM nip46_seen_events WHERE seen_at <= ? LIMIT ?)`, cut)
		}
	}
	if err != nil {
		return res, fmt.Errorf("store: prune: %w", err)
	}
	return res, nil
}

// nthNewest runs q (one int64 column, OFFSET ?) with offset n; ok is false when there is no
// such row (the table holds at most n rows).
func (db *DB) nthNewest(ctx context.Context, q string, n int) (v int64, ok bool, err error) {
	err = db.SQL.QueryRowContext(ctx, q, n).Scan(&v)
	if err == sql.ErrNoRows {
		return 0, false, nil
	}
	return v, err == nil, err
}

// deleteInBatches runs the DELETE q (whose last parameter is the batch size) one transaction
// per batch until a batch deletes fewer than pruneBatch rows, and returns the rows deleted.
func (db *DB) deleteInBatches(ctx context.Context, q string, args ...any) (int64, error) {
	var total int64
	for {
		var n int64
		err := db.Tx(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, q, append(args, pruneBatch)...)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		total += n
		if err != nil || n < pruneBatch {
			return total, err
		}
		if err := ctx.Err(); err != nil {
			return total, err
		}
	}
}

// RunRetention prunes by r at once and then every interval until ctx ends (a daemon
// goroutine), logging what it deleted. Errors are logged and retried at the next interval; it
// returns nil when ctx ends.
func (db *DB) RunRetention(ctx context.Context, r Retention, interval time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "retention")
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		res, err := db.Prune(ctx, r, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			log.Error("pruning old records failed; retrying later", "error", err)
		case res != PruneResult{}:
			log.Info("pruned old records", "audit_log", res.Audit, "sign_requests", res.Requests, "seen_events", res.SeenEvents)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
