package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrSecretInvalid means a connect secret is unknown or was already used by another client.
var ErrSecretInvalid = errors.New("store: connect secret unknown or already used")

// AddConnectSecret stores the SHA-256 of a fresh single-use connect secret (NIP-46 bunker URI).
func (db *DB) AddConnectSecret(ctx context.Context, secret string) error {
	h := sha256.Sum256([]byte(secret))
	_, err := db.SQL.ExecContext(ctx, `INSERT INTO connect_secrets(secret_sha256, created_at) VALUES (?, ?)`,
		h[:], time.Now().Unix())
	if err != nil {
		return fmt.Errorf("store: add connect secret: %w", err)
	}
	return nil
}

// UseConnectSecret spends secret for client in one transaction: the secret must exist and be
// unused (or already used by this same client, so a retried connect is answered alike), and the
// client gets a session. Returns ErrSecretInvalid otherwise; nothing changes then.
func (db *DB) UseConnectSecret(ctx context.Context, secret, client, perms, metadata string) error {
	h := sha256.Sum256([]byte(secret))
	return db.Tx(ctx, func(tx *sql.Tx) error {
		var usedBy sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT used_by FROM connect_secrets WHERE secret_sha256 = ?`, h[:]).Scan(&usedBy)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrSecretInvalid
		}
		if err != nil {
			return fmt.Errorf("store: use connect secret: %w", err)
		}
		if usedBy.Valid && usedBy.String != client {
			return ErrSecretInvalid
		}
		now := time.Now().Unix()
		if !usedBy.Valid {
			if _, err := tx.ExecContext(ctx, `UPDATE connect_secrets SET used_by = ?, used_at = ? WHERE secret_sha256 = ?`,
				client, now, h[:]); err != nil {
				return fmt.Errorf("store: use connect secret: %w", err)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO client_sessions(client_pubkey, connected_at, perms, metadata) VALUES (?, ?, ?, ?)
			ON CONFLICT(client_pubkey) DO UPDATE SET connected_at = excluded.connected_at, perms = excluded.perms, metadata = excluded.metadata`,
			client, now, perms, metadata)
		if err != nil {
			return fmt.Errorf("store: create session: %w", err)
		}
		return nil
	})
}

// ClientConnected reports whether client (hex pubkey) has a session.
func (db *DB) ClientConnected(ctx context.Context, client string) (bool, error) {
	var n int
	if err := db.SQL.QueryRowContext(ctx, `SELECT count(*) FROM client_sessions WHERE client_pubkey = ?`, client).Scan(&n); err != nil {
		return false, fmt.Errorf("store: read session: %w", err)
	}
	return n > 0, nil
}

// EndSession removes client's session (NIP-46 logout).
func (db *DB) EndSession(ctx context.Context, client string) error {
	if _, err := db.SQL.ExecContext(ctx, `DELETE FROM client_sessions WHERE client_pubkey = ?`, client); err != nil {
		return fmt.Errorf("store: end session: %w", err)
	}
	return nil
}

// SignRequest is one row of sign_requests: a request that asked for a signing decision.
type SignRequest struct {
	Client       string
	RequestID    string
	Method       string
	PSBTSHA256   []byte
	UnsignedTxID string
	State        string // received | denied | signed | failed
	Result       string
	Error        string
}

// Request states.
const (
	RequestReceived = "received"
	RequestDenied   = "denied"
	RequestSigned   = "signed"
	RequestFailed   = "failed"
)

// BeginSignRequest records a new request in state "received", or returns the existing row for
// the same (client, request id) with existed = true so that it is answered again, not evaluated
// again.
func (db *DB) BeginSignRequest(ctx context.Context, r SignRequest) (existing SignRequest, existed bool, err error) {
	err = db.Tx(ctx, func(tx *sql.Tx) error {
		row := tx.QueryRowContext(ctx, `SELECT method, psbt_sha256, unsigned_txid, state, result, error
			FROM sign_requests WHERE client_pubkey = ? AND request_id = ?`, r.Client, r.RequestID)
		existing = SignRequest{Client: r.Client, RequestID: r.RequestID}
		switch err := row.Scan(&existing.Method, &existing.PSBTSHA256, &existing.UnsignedTxID, &existing.State, &existing.Result, &existing.Error); {
		case err == nil:
			existed = true
			return nil
		case !errors.Is(err, sql.ErrNoRows):
			return fmt.Errorf("store: read sign request: %w", err)
		}
		now := time.Now().Unix()
		_, err := tx.ExecContext(ctx, `INSERT INTO sign_requests(client_pubkey, request_id, method, psbt_sha256, state, created_at, updated_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, r.Client, r.RequestID, r.Method, r.PSBTSHA256, RequestReceived, now, now)
		if err != nil {
			return fmt.Errorf("store: insert sign request: %w", err)
		}
		return nil
	})
	return existing, existed, err
}

// AuditEntry is one row of the audit log: a decision and what it was based on.
type AuditEntry struct {
	At           time.Time
	Client       string
	RequestID    string
	Method       string
	Decision     string // signed | denied | rejected | error
	Rule         string
	Reason       string
	UnsignedTxID string
	OutflowSat   int64
	FeeSat       int64
	Analysis     string // JSON
}

// FinishSignRequest moves a request to its final state and appends the audit entry, in one
// transaction.
func (db *DB) FinishSignRequest(ctx context.Context, r SignRequest, a AuditEntry) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().Unix()
		res, err := tx.ExecContext(ctx, `UPDATE sign_requests SET state = ?, result = ?, error = ?, unsigned_txid = ?, updated_at = ?
			WHERE client_pubkey = ? AND request_id = ?`, r.State, r.Result, r.Error, r.UnsignedTxID, now, r.Client, r.RequestID)
		if err != nil {
			return fmt.Errorf("store: update sign request: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("store: update sign request %s/%s: no such request", r.Client, r.RequestID)
		}
		return insertAudit(ctx, tx, a)
	})
}

// AppendAudit appends one audit entry on its own (for decisions not tied to a stored request,
// such as a refused connect).
func (db *DB) AppendAudit(ctx context.Context, a AuditEntry) error {
	return db.Tx(ctx, func(tx *sql.Tx) error { return insertAudit(ctx, tx, a) })
}

func insertAudit(ctx context.Context, tx *sql.Tx, a AuditEntry) error {
	if a.At.IsZero() {
		a.At = time.Now()
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO audit_log(at, client_pubkey, request_id, method, decision, rule, reason,
		unsigned_txid, outflow_sat, fee_sat, analysis) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.At.Unix(), a.Client, a.RequestID, a.Method, a.Decision, a.Rule, a.Reason, a.UnsignedTxID, a.OutflowSat, a.FeeSat, a.Analysis)
	if err != nil {
		return fmt.Errorf("store: append audit: %w", err)
	}
	return nil
}

// AuditLog returns the newest limit audit entries, newest first.
func (db *DB) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	rows, err := db.SQL.QueryContext(ctx, `SELECT at, client_pubkey, request_id, method, decision, rule, reason, unsigned_txid,
		outflow_sat, fee_sat, analysis FROM audit_log ORDER BY id DESC LIMIT ?`, limit)
	if err != nil {
		return nil, fmt.Errorf("store: read audit log: %w", err)
	}
	defer rows.Close()
	var out []AuditEntry
	for rows.Next() {
		var a AuditEntry
		var at int64
		if err := rows.Scan(&at, &a.Client, &a.RequestID, &a.Method, &a.Decision, &a.Rule, &a.Reason, &a.UnsignedTxID,
			&a.OutflowSat, &a.FeeSat, &a.Analysis); err != nil {
			return nil, fmt.Errorf("store: read audit log: %w", err)
		}
		a.At = time.Unix(at, 0)
		out = append(out, a)
	}
	return out, rows.Err()
}
