package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// AuditSince returns the audit entries recorded at or after since (Unix seconds; the zero time
// means all), oldest first, at most limit of them (the newest limit when there are more), with
// the policy hash and explanation of each decision. Errors: a wrapped SQL error.
func (db *DB) AuditSince(ctx context.Context, since time.Time, limit int) ([]AuditEntry, error) {
	var from int64
	if !since.IsZero() {
		from = since.Unix()
	}
	rows, err := queryRows(ctx, db.SQL, "read audit log", func(rows *sql.Rows) (AuditEntry, error) {
		var a AuditEntry
		var at int64
		err := rows.Scan(&at, &a.Client, &a.RequestID, &a.Method, &a.Decision, &a.Rule, &a.Reason, &a.UnsignedTxID,
			&a.OutflowSat, &a.FeeSat, &a.Analysis, &a.PolicyHash, &a.Explanation)
		a.At = time.Unix(at, 0)
		return a, err
	}, `SELECT at, client_pubkey, request_id, method, decision, rule, reason, unsigned_txid,
		outflow_sat, fee_sat, analysis, policy_hash, explanation FROM audit_log WHERE at >= ? ORDER BY id DESC LIMIT ?`, from, limit)
	if err != nil {
		return nil, err
	}
	for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
		rows[i], rows[j] = rows[j], rows[i]
	}
	return rows, nil
}

// WaitingHolds counts held requests still waiting for their cooling-off or approvals (for
// metrics). Errors: a wrapped SQL error.
func (db *DB) WaitingHolds(ctx context.Context) (int, error) {
	var n int
	if err := db.SQL.QueryRowContext(ctx, `SELECT COUNT(*) FROM holds WHERE state = ?`, HoldWaiting).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count waiting holds: %w", err)
	}
	return n, nil
}

// ProposalsByState counts the automations' proposals in each state (for metrics). Errors: a
// wrapped SQL error.
func (db *DB) ProposalsByState(ctx context.Context) (map[string]int, error) {
	rows, err := db.SQL.QueryContext(ctx, `SELECT state, COUNT(*) FROM proposals GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("store: count proposals: %w", err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var st string
		var n int
		if err := rows.Scan(&st, &n); err != nil {
			return nil, fmt.Errorf("store: count proposals: %w", err)
		}
		out[st] = n
	}
	return out, rows.Err()
}
