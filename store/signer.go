package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/custodyagents/cosigner/nip46/session"
)

// The records of NIP-46 sessions are defined by the remote signer's vocabulary (package
// nip46/session) and persisted here.

// AddConnectSecret stores the SHA-256 of a fresh single-use connect secret (NIP-46 bunker URI)
// that grants the default permissions (nip46.DefaultPerms).
func (db *DB) AddConnectSecret(ctx context.Context, secret string) error {
	return db.addConnectSecret(ctx, secret, sql.NullString{})
}

// AddConnectSecretPerms is AddConnectSecret for a secret that grants perms (canonical
// "method[:kind],…" string, see nip46.Perms) instead of the defaults.
func (db *DB) AddConnectSecretPerms(ctx context.Context, secret, perms string) error {
	return db.addConnectSecret(ctx, secret, sql.NullString{String: perms, Valid: true})
}

func (db *DB) addConnectSecret(ctx context.Context, secret string, perms sql.NullString) error {
	h := sha256.Sum256([]byte(secret))
	_, err := db.SQL.ExecContext(ctx, `INSERT INTO connect_secrets(secret_sha256, created_at, perms) VALUES (?, ?, ?)`,
		h[:], time.Now().Unix(), perms)
	if err != nil {
		return fmt.Errorf("store: add connect secret: %w", err)
	}
	return nil
}

// UseConnectSecret spends secret for client in one transaction: the secret must exist and be
// unused, and the client gets a session with the permissions grant returns (requested is kept
// as the client sent it, info as validated: display hints, never read to authorize). A retried connect by the same client whose session
// still exists is answered alike and changes nothing (so a repeated connect never restores
// revoked permissions). Returns the session's permissions, or session.ErrSecretInvalid
// (nothing changes then) or grant's error.
func (db *DB) UseConnectSecret(ctx context.Context, secret, client, requested string, info session.ClientInfo, grant session.GrantFunc) (string, error) {
	h := sha256.Sum256([]byte(secret))
	var granted string
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		var usedBy, perms sql.NullString
		err := tx.QueryRowContext(ctx, `SELECT used_by, perms FROM connect_secrets WHERE secret_sha256 = ?`, h[:]).Scan(&usedBy, &perms)
		if errors.Is(err, sql.ErrNoRows) {
			return session.ErrSecretInvalid
		}
		if err != nil {
			return fmt.Errorf("store: use connect secret: %w", err)
		}
		if usedBy.Valid {
			if usedBy.String != client {
				return session.ErrSecretInvalid
			}
			err := tx.QueryRowContext(ctx, `SELECT perms FROM client_sessions WHERE client_pubkey = ?`, client).Scan(&granted)
			if errors.Is(err, sql.ErrNoRows) {
				return session.ErrSecretInvalid // the session it made has ended (logout, revoke)
			}
			return err
		}
		if granted, err = grant(perms.String, perms.Valid); err != nil {
			return err
		}
		now := time.Now().Unix()
		if _, err := tx.ExecContext(ctx, `UPDATE connect_secrets SET used_by = ?, used_at = ? WHERE secret_sha256 = ?`,
			client, now, h[:]); err != nil {
			return fmt.Errorf("store: use connect secret: %w", err)
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO client_sessions(client_pubkey, connected_at, perms, requested_perms, metadata,
			name, url, image, metadata_note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(client_pubkey) DO UPDATE SET connected_at = excluded.connected_at, perms = excluded.perms,
			requested_perms = excluded.requested_perms, metadata = excluded.metadata, name = excluded.name,
			url = excluded.url, image = excluded.image, metadata_note = excluded.metadata_note`,
			client, now, granted, requested, infoJSON(info), info.Name, info.URL, info.Image, info.Note)
		if err != nil {
			return fmt.Errorf("store: create session: %w", err)
		}
		return nil
	})
	return granted, err
}

// ConnectSecretUsable reports whether UseConnectSecret(secret, client, …) could succeed: the
// secret is known and unused, or was used by client for a session that still exists. It only
// reads (the remote signer asks it before anything about a stranger is written).
func (db *DB) ConnectSecretUsable(ctx context.Context, secret, client string) (bool, error) {
	h := sha256.Sum256([]byte(secret))
	var usable bool
	err := db.SQL.QueryRowContext(ctx, `SELECT used_by IS NULL OR (used_by = ? AND EXISTS (SELECT 1 FROM client_sessions WHERE client_pubkey = ?))
		FROM connect_secrets WHERE secret_sha256 = ?`, client, client, h[:]).Scan(&usable)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: check connect secret: %w", err)
	}
	return usable, nil
}

// ClientConnected reports whether client (hex pubkey) has a session.
func (db *DB) ClientConnected(ctx context.Context, client string) (bool, error) {
	_, ok, err := db.SessionPerms(ctx, client)
	return ok, err
}

// SessionPerms returns the permissions granted to client's session; ok is false when it has none.
func (db *DB) SessionPerms(ctx context.Context, client string) (perms string, ok bool, err error) {
	err = db.SQL.QueryRowContext(ctx, `SELECT perms FROM client_sessions WHERE client_pubkey = ?`, client).Scan(&perms)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: read session: %w", err)
	}
	return perms, true, nil
}

// ListSessions returns every session, oldest first.
func (db *DB) ListSessions(ctx context.Context) ([]session.ClientSession, error) {
	rows, err := db.SQL.QueryContext(ctx, `SELECT client_pubkey, connected_at, perms, requested_perms, metadata, relays, name,
		url, image, metadata_note, last_seen, requests FROM client_sessions ORDER BY connected_at, client_pubkey`)
	if err != nil {
		return nil, fmt.Errorf("store: list sessions: %w", err)
	}
	defer rows.Close()
	var out []session.ClientSession
	for rows.Next() {
		var c session.ClientSession
		var at, seen int64
		var relays string
		if err := rows.Scan(&c.Client, &at, &c.Perms, &c.RequestedPerms, &c.Metadata, &relays, &c.Name,
			&c.Info.URL, &c.Info.Image, &c.Info.Note, &seen, &c.Requests); err != nil {
			return nil, fmt.Errorf("store: list sessions: %w", err)
		}
		c.ConnectedAt = time.Unix(at, 0)
		c.Info.Name = c.Name
		if seen > 0 {
			c.LastSeen = time.Unix(seen, 0)
		}
		if err := json.Unmarshal([]byte(relays), &c.Relays); err != nil {
			return nil, fmt.Errorf("store: session %s: relays: %w", c.Client, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// SetSessionPerms replaces client's granted permissions (`cosigner clients grant|revoke`); the
// running daemon reads them on the client's next request. Errors: session.ErrNoSession.
func (db *DB) SetSessionPerms(ctx context.Context, client, perms string) error {
	res, err := db.SQL.ExecContext(ctx, `UPDATE client_sessions SET perms = ? WHERE client_pubkey = ?`, perms, client)
	if err != nil {
		return fmt.Errorf("store: set perms: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return session.ErrNoSession
	}
	return nil
}

// EndSession removes client's session (NIP-46 logout, `cosigner clients revoke CLIENT`).
func (db *DB) EndSession(ctx context.Context, client string) error {
	if _, err := db.SQL.ExecContext(ctx, `DELETE FROM client_sessions WHERE client_pubkey = ?`, client); err != nil {
		return fmt.Errorf("store: end session: %w", err)
	}
	return nil
}

// SetSessionRelays replaces client's own relays (nil: the remote signer's relays, e.g. after
// switch_relays). Errors: session.ErrNoSession.
func (db *DB) SetSessionRelays(ctx context.Context, client string, relays []string) error {
	if relays == nil {
		relays = []string{}
	}
	b, err := json.Marshal(relays)
	if err != nil {
		return err
	}
	res, err := db.SQL.ExecContext(ctx, `UPDATE client_sessions SET relays = ? WHERE client_pubkey = ?`, string(b), client)
	if err != nil {
		return fmt.Errorf("store: set session relays: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return session.ErrNoSession
	}
	return nil
}

// RecordActivity adds each client's requests and moves its last_seen forward, in one
// transaction; clients without a session are skipped.
func (db *DB) RecordActivity(ctx context.Context, act map[string]session.Activity) error {
	if len(act) == 0 {
		return nil
	}
	return db.Tx(ctx, func(tx *sql.Tx) error {
		for client, a := range act {
			if _, err := tx.ExecContext(ctx, `UPDATE client_sessions SET requests = requests + ?, last_seen = MAX(last_seen, ?)
				WHERE client_pubkey = ?`, a.Requests, a.LastSeen.Unix(), client); err != nil {
				return fmt.Errorf("store: record client activity: %w", err)
			}
		}
		return nil
	})
}

// RequestTransportTTL is how long the transport of a held request is kept when no late answer
// comes.
const RequestTransportTTL = 30 * 24 * time.Hour

// SaveRequestTransport records how request (client, id) arrived: transport
// (session.TransportNIP44 or session.TransportNIP04) and the relay URL, so its late answer uses
// the same (NIP-46 auth_url flow). Rows older than RequestTransportTTL are dropped on the way.
func (db *DB) SaveRequestTransport(ctx context.Context, client, requestID, transport, arrivedOn string) error {
	if transport != session.TransportNIP44 && transport != session.TransportNIP04 {
		return fmt.Errorf("store: unknown request transport %q", transport)
	}
	return db.Tx(ctx, func(tx *sql.Tx) error {
		now := time.Now()
		if _, err := tx.ExecContext(ctx, `DELETE FROM request_transports WHERE created_at < ?`, now.Add(-RequestTransportTTL).Unix()); err != nil {
			return fmt.Errorf("store: prune request transports: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO request_transports(client_pubkey, request_id, transport, arrived_on, created_at)
			VALUES (?, ?, ?, ?, ?) ON CONFLICT(client_pubkey, request_id) DO UPDATE SET transport = excluded.transport,
			arrived_on = excluded.arrived_on, created_at = excluded.created_at`, client, requestID, transport, arrivedOn, now.Unix()); err != nil {
			return fmt.Errorf("store: save request transport: %w", err)
		}
		return nil
	})
}

// RequestTransport returns how request (client, id) arrived; ok is false when it was not recorded.
func (db *DB) RequestTransport(ctx context.Context, client, requestID string) (transport, arrivedOn string, ok bool, err error) {
	err = db.SQL.QueryRowContext(ctx, `SELECT transport, arrived_on FROM request_transports WHERE client_pubkey = ? AND request_id = ?`,
		client, requestID).Scan(&transport, &arrivedOn)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", false, nil
	}
	if err != nil {
		return "", "", false, fmt.Errorf("store: read request transport: %w", err)
	}
	return transport, arrivedOn, true, nil
}

// DeleteRequestTransport forgets request (client, id)'s transport (its late answer was sent).
func (db *DB) DeleteRequestTransport(ctx context.Context, client, requestID string) error {
	if _, err := db.SQL.ExecContext(ctx, `DELETE FROM request_transports WHERE client_pubkey = ? AND request_id = ?`, client, requestID); err != nil {
		return fmt.Errorf("store: delete request transport: %w", err)
	}
	return nil
}

// AddNostrConnect creates (or replaces) the client's session with c's permissions and relays and
// queues the connect response for the daemon, in one transaction.
func (db *DB) AddNostrConnect(ctx context.Context, c session.NostrConnect) error {
	relays, err := json.Marshal(c.Relays)
	if err != nil {
		return err
	}
	return db.Tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().Unix()
		if _, err := tx.ExecContext(ctx, `INSERT INTO client_sessions(client_pubkey, connected_at, perms, requested_perms, metadata, relays, name,
			url, image, metadata_note)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(client_pubkey) DO UPDATE SET connected_at = excluded.connected_at,
			perms = excluded.perms, requested_perms = excluded.requested_perms, metadata = excluded.metadata,
			relays = excluded.relays, name = excluded.name, url = excluded.url, image = excluded.image,
			metadata_note = excluded.metadata_note`,
			c.Client, now, c.Perms, c.RequestedPerms, c.Metadata, string(relays), c.Name, c.Info.URL, c.Info.Image, c.Info.Note); err != nil {
			return fmt.Errorf("store: nostrconnect session: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO nostrconnect_pending(client_pubkey, secret, relays, state, error, created_at, updated_at)
			VALUES (?, ?, ?, ?, '', ?, ?) ON CONFLICT(client_pubkey) DO UPDATE SET secret = excluded.secret, relays = excluded.relays,
			state = excluded.state, error = '', created_at = excluded.created_at, updated_at = excluded.updated_at,
			response_id = '', attempts = 0, sent_at = 0, next_at = 0`,
			c.Client, c.Secret, string(relays), session.ConnectPending, now, now); err != nil {
			return fmt.Errorf("store: nostrconnect queue: %w", err)
		}
		return nil
	})
}

// PendingNostrConnects returns the nostrconnect responses still being delivered (state pending
// or sent), oldest first, with the client metadata of their sessions (Info, Name).
func (db *DB) PendingNostrConnects(ctx context.Context) ([]session.NostrConnect, error) {
	rows, err := db.SQL.QueryContext(ctx, `SELECT p.client_pubkey, p.secret, p.relays, p.state, p.error, p.created_at,
		p.response_id, p.attempts, p.sent_at, p.next_at,
		COALESCE(s.name, ''), COALESCE(s.url, ''), COALESCE(s.image, ''), COALESCE(s.metadata_note, '')
		FROM nostrconnect_pending p LEFT JOIN client_sessions s ON s.client_pubkey = p.client_pubkey
		WHERE p.state IN (?, ?) ORDER BY p.created_at`, session.ConnectPending, session.ConnectSent)
	if err != nil {
		return nil, fmt.Errorf("store: pending nostrconnect: %w", err)
	}
	defer rows.Close()
	var out []session.NostrConnect
	for rows.Next() {
		var c session.NostrConnect
		var relays string
		var at, sent, next int64
		if err := rows.Scan(&c.Client, &c.Secret, &relays, &c.State, &c.Error, &at, &c.ResponseID, &c.Attempts, &sent, &next,
			&c.Info.Name, &c.Info.URL, &c.Info.Image, &c.Info.Note); err != nil {
			return nil, fmt.Errorf("store: pending nostrconnect: %w", err)
		}
		c.Name = c.Info.Name
		c.CreatedAt = time.Unix(at, 0)
		if sent > 0 {
			c.SentAt = time.Unix(sent, 0)
		}
		c.NextAt = time.Unix(next, 0)
		if err := json.Unmarshal([]byte(relays), &c.Relays); err != nil {
			return nil, fmt.Errorf("store: pending nostrconnect %s: relays: %w", c.Client, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// NostrConnectSent records one accepted send of client's connect response: state sent, the
// response id (kept from the first send), one more attempt, the first send time, and when to
// re-send. It changes nothing unless the row is pending or sent. Errors: session.ErrNoSession
// when there is no such row in those states.
func (db *DB) NostrConnectSent(ctx context.Context, client, responseID string, at, next time.Time) error {
	res, err := db.SQL.ExecContext(ctx, `UPDATE nostrconnect_pending SET state = ?, attempts = attempts + 1,
		response_id = CASE WHEN response_id = '' THEN ? ELSE response_id END,
		sent_at = CASE WHEN sent_at = 0 THEN ? ELSE sent_at END, next_at = ?, updated_at = ?
		WHERE client_pubkey = ? AND state IN (?, ?)`,
		session.ConnectSent, responseID, at.Unix(), next.Unix(), time.Now().Unix(), client, session.ConnectPending, session.ConnectSent)
	if err != nil {
		return fmt.Errorf("store: nostrconnect sent: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return session.ErrNoSession
	}
	return nil
}

// FinishNostrConnect records the outcome of a queued nostrconnect response (sent, failed or
// expired) and forgets the client's secret.
func (db *DB) FinishNostrConnect(ctx context.Context, client, state, errMsg string) error {
	_, err := db.SQL.ExecContext(ctx, `UPDATE nostrconnect_pending SET state = ?, error = ?, secret = '', updated_at = ?
		WHERE client_pubkey = ?`, state, errMsg, time.Now().Unix(), client)
	if err != nil {
		return fmt.Errorf("store: finish nostrconnect: %w", err)
	}
	return nil
}

// ConfirmNostrConnect marks client's connect response confirmed (the app's first request
// arrived, which it can only send after reading the response) and forgets the secret; reports
// whether a row still being delivered (pending or sent) was changed.
func (db *DB) ConfirmNostrConnect(ctx context.Context, client string) (bool, error) {
	res, err := db.SQL.ExecContext(ctx, `UPDATE nostrconnect_pending SET state = ?, error = '', secret = '', updated_at = ?
		WHERE client_pubkey = ? AND state IN (?, ?)`, session.ConnectConfirmed, time.Now().Unix(), client, session.ConnectPending, session.ConnectSent)
	if err != nil {
		return false, fmt.Errorf("store: confirm nostrconnect: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// NostrConnectState returns the state and error of client's queued nostrconnect response.
// Errors: session.ErrNoSession when there is none.
func (db *DB) NostrConnectState(ctx context.Context, client string) (state, errMsg string, err error) {
	err = db.SQL.QueryRowContext(ctx, `SELECT state, error FROM nostrconnect_pending WHERE client_pubkey = ?`, client).Scan(&state, &errMsg)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", session.ErrNoSession
	}
	if err != nil {
		return "", "", fmt.Errorf("store: nostrconnect state: %w", err)
	}
	return state, errMsg, nil
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
	// PolicyHash is the hex SHA-256 of the policy file that decided (empty for decisions the
	// policy was not asked about); Explanation is the decision's rule-by-rule explanation as
	// JSON ([{"rule","result","detail"}], policy.Step), or empty.
	PolicyHash  string
	Explanation string
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

// AuditSession appends a note about a NIP-46 session (connect, refusal, logout) to the audit
// log, like AppendAudit.
func (db *DB) AuditSession(ctx context.Context, a session.Audit) error {
	return db.AppendAudit(ctx, AuditEntry{Client: a.Client, RequestID: a.RequestID, Method: a.Method,
		Decision: a.Decision, Rule: a.Rule, Reason: a.Reason})
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
		unsigned_txid, outflow_sat, fee_sat, analysis, policy_hash, explanation) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.At.Unix(), a.Client, a.RequestID, a.Method, a.Decision, a.Rule, a.Reason, a.UnsignedTxID, a.OutflowSat, a.FeeSat, a.Analysis,
		a.PolicyHash, a.Explanation)
	if err != nil {
		return fmt.Errorf("store: append audit: %w", err)
	}
	return nil
}

// AuditLog returns the newest limit audit entries, newest first, with the policy hash and
// explanation of each decision (migration 0005).
func (db *DB) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	return queryRows(ctx, db.SQL, "read audit log", func(rows *sql.Rows) (AuditEntry, error) {
		var a AuditEntry
		var at int64
		err := rows.Scan(&at, &a.Client, &a.RequestID, &a.Method, &a.Decision, &a.Rule, &a.Reason, &a.UnsignedTxID,
			&a.OutflowSat, &a.FeeSat, &a.Analysis, &a.PolicyHash, &a.Explanation)
		a.At = time.Unix(at, 0)
		return a, err
	}, `SELECT at, client_pubkey, request_id, method, decision, rule, reason, unsigned_txid,
		outflow_sat, fee_sat, analysis, policy_hash, explanation FROM audit_log ORDER BY id DESC LIMIT ?`, limit)
}

// infoJSON is info's name, url and image as a JSON object ("" when all are empty): the
// client_sessions.metadata column.
func infoJSON(info session.ClientInfo) string {
	if info.Name == "" && info.URL == "" && info.Image == "" {
		return ""
	}
	b, _ := json.Marshal(struct {
		Name  string `json:"name,omitempty"`
		URL   string `json:"url,omitempty"`
		Image string `json:"image,omitempty"`
	}{info.Name, info.URL, info.Image}) // strings only: cannot fail
	return string(b)
}
