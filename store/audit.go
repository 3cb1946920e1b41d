package store

import (
	"context"
	"database/sql"
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
