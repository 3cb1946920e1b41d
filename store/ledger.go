package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Spend ledger, held requests, approvals and policy versions (migration 0005). Every change
// that decides a request happens in one transaction with the request's state (FinishDecision),
// so a crash never leaves a signature without its reservation or a reservation counted twice.

// Ledger states of a signed transaction (see migration 0005).
const (
	LedgerReserved = "reserved"
	LedgerSpent    = "spent"
	LedgerReleased = "released"
	LedgerReplaced = "replaced"
)

// Request and hold states added by the policy flow.
const (
	RequestHeld   = "held"
	HoldWaiting   = "waiting"
	HoldReleased  = "released"
	HoldDenied    = "denied"
	HoldCancelled = "cancelled"
)

// ErrNoSuchHold means no held request matches.
var ErrNoSuchHold = errors.New("store: no such held request")

// Reservation is one signed transaction's outflow in the spend ledger.
type Reservation struct {
	TxID         string
	Client       string
	RequestID    string
	OutflowSat   int64
	Inputs       []string // outpoints "txid:vout"
	State        string
	At           time.Time // signing time: windows count from here
	ReleaseAfter time.Duration
	ReplacedBy   string
}

// Hold is a held request.
type Hold struct {
	Client, RequestID string
	Token             string
	Params            []string
	Rule              string
	HeldSince         time.Time
	State             string
	URL, Reason       string
	Responded         bool
}

// Approval is an approver's decision on a held request, with the signed event as evidence.
type Approval struct {
	Client, RequestID string // the held request
	Approver          string // pubkey hex
	Decision          string // approve | deny | cancel
	Event             string // the approver's signed kind-24133 event, JSON
	At                time.Time
}

// Decided is everything one decision writes, in one transaction: the request's final (or held)
// state, the audit entry with the policy hash and explanation, and optionally a reservation
// (when signing; it supersedes reserved transactions spending any of the same inputs), a new
// hold, or a hold state change.
type Decided struct {
	Request     SignRequest
	Audit       AuditEntry
	PolicyHash  string
	Explanation string // JSON of the rule-by-rule explanation
	Reserve     *Reservation
	NewHold     *Hold
	HoldState   string // when non-empty, the request's hold moves to this state
}

// FinishDecision writes d in one transaction. Errors: a wrapped SQL error; nothing is written then.
func (db *DB) FinishDecision(ctx context.Context, d Decided) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().Unix()
		r := d.Request
		res, err := tx.ExecContext(ctx, `UPDATE sign_requests SET state = ?, result = ?, error = ?, unsigned_txid = ?, updated_at = ?
			WHERE client_pubkey = ? AND request_id = ?`, r.State, r.Result, r.Error, r.UnsignedTxID, now, r.Client, r.RequestID)
		if err != nil {
			return fmt.Errorf("store: update sign request: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("store: update sign request %s/%s: no such request", r.Client, r.RequestID)
		}
		if d.Reserve != nil {
			if err := reserve(ctx, tx, *d.Reserve, now); err != nil {
				return err
			}
		}
		if h := d.NewHold; h != nil {
			params, _ := json.Marshal(h.Params)
			if _, err := tx.ExecContext(ctx, `INSERT INTO holds(client_pubkey, request_id, token, params, rule, held_since, state, url, reason, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, h.Client, h.RequestID, h.Token, string(params), h.Rule, h.HeldSince.Unix(), HoldWaiting, h.URL, h.Reason, now); err != nil {
				return fmt.Errorf("store: insert hold: %w", err)
			}
		}
		if d.HoldState != "" {
			if _, err := tx.ExecContext(ctx, `UPDATE holds SET state = ?, reason = ?, updated_at = ? WHERE client_pubkey = ? AND request_id = ?`,
				d.HoldState, d.Audit.Reason, now, r.Client, r.RequestID); err != nil {
				return fmt.Errorf("store: update hold: %w", err)
			}
		}
		return insertDecisionAudit(ctx, tx, d.Audit, d.PolicyHash, d.Explanation)
	})
}

// AppendDecisionAudit appends an audit entry with the policy hash and explanation on its own
// (decisions not tied to a stored request); they replace a.PolicyHash and a.Explanation.
func (db *DB) AppendDecisionAudit(ctx context.Context, a AuditEntry, policyHash, explanation string) error {
	return db.Tx(ctx, func(tx *sql.Tx) error { return insertDecisionAudit(ctx, tx, a, policyHash, explanation) })
}

func insertDecisionAudit(ctx context.Context, tx *sql.Tx, a AuditEntry, policyHash, explanation string) error {
	a.PolicyHash, a.Explanation = policyHash, explanation
	return insertAudit(ctx, tx, a)
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// ReplacementPlan is what reserving a transaction spending inputs would change in the ledger
// (an RBF replacement): Replaced are the reserved (or spent: in the mempool) transactions it conflicts with (sharing an
// input; at most one of them and it can confirm), which stop counting on their own; Reinstated
// are transactions those had replaced that do not conflict with the new one, so they could
// confirm alongside it and count again.
type ReplacementPlan struct {
	Replaced   []Reservation
	Reinstated []Reservation
}

// PlanReplacement computes the ReplacementPlan of a transaction txid spending inputs.
func (db *DB) PlanReplacement(ctx context.Context, txid string, inputs []string) (ReplacementPlan, error) {
	return planReplacement(ctx, db.SQL, txid, inputs)
}

func planReplacement(ctx context.Context, q querier, txid string, inputs []string) (ReplacementPlan, error) {
	var plan ReplacementPlan
	if len(inputs) == 0 {
		return plan, nil
	}
	in := `(?` + strings.Repeat(",?", len(inputs)-1) + `)`
	// Reserved and spent ones: a transaction that spent the inputs in the mempool (the watcher
	// reported the spend) is what an RBF fee bump replaces; were it confirmed, the replacement
	// could never confirm, and counting the two once is still right.
	args := []any{LedgerReserved, LedgerSpent, txid}
	for _, op := range inputs {
		args = append(args, op)
	}
	var err error
	plan.Replaced, err = queryReservations(ctx, q, `WHERE state IN (?, ?) AND txid != ? AND txid IN (SELECT txid FROM spend_ledger_inputs WHERE outpoint IN `+in+`)`, args...)
	if err != nil {
		return plan, err
	}
	for _, r := range plan.Replaced {
		args := []any{LedgerReplaced, r.TxID}
		for _, op := range inputs {
			args = append(args, op)
		}
		children, err := queryReservations(ctx, q, `WHERE state = ? AND replaced_by = ? AND txid NOT IN (SELECT txid FROM spend_ledger_inputs WHERE outpoint IN `+in+`)`, args...)
		if err != nil {
			return plan, err
		}
		plan.Reinstated = append(plan.Reinstated, children...)
	}
	return plan, nil
}

func queryReservations(ctx context.Context, q querier, where string, args ...any) ([]Reservation, error) {
	return queryRows(ctx, q, "read spend ledger", func(rows *sql.Rows) (Reservation, error) {
		var r Reservation
		var at, rel int64
		err := rows.Scan(&r.TxID, &r.Client, &r.RequestID, &r.OutflowSat, &r.State, &at, &rel, &r.ReplacedBy)
		r.At, r.ReleaseAfter = time.Unix(at, 0), time.Duration(rel)*time.Second
		return r, err
	}, `SELECT txid, client_pubkey, request_id, outflow_sat, state, reserved_at, release_after, replaced_by FROM spend_ledger `+where+` ORDER BY reserved_at, txid`, args...)
}

func reserve(ctx context.Context, tx *sql.Tx, r Reservation, now int64) error {
	// An RBF replacement: reserved transactions spending any of the same inputs are superseded;
	// what they had superseded without conflicting with r counts again.
	plan, err := planReplacement(ctx, tx, r.TxID, r.Inputs)
	if err != nil {
		return err
	}
	for _, x := range plan.Reinstated {
		if _, err := tx.ExecContext(ctx, `UPDATE spend_ledger SET state = ?, replaced_by = '', updated_at = ? WHERE txid = ?`, LedgerReserved, now, x.TxID); err != nil {
			return fmt.Errorf("store: reinstate reservation: %w", err)
		}
	}
	for _, x := range plan.Replaced {
		if _, err := tx.ExecContext(ctx, `UPDATE spend_ledger SET replaced_by = ?, updated_at = ? WHERE state = ? AND replaced_by = ?`, r.TxID, now, LedgerReplaced, x.TxID); err != nil {
			return fmt.Errorf("store: supersede reservation: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE spend_ledger SET state = ?, replaced_by = ?, updated_at = ? WHERE txid = ?`, LedgerReplaced, r.TxID, now, x.TxID); err != nil {
			return fmt.Errorf("store: supersede reservation: %w", err)
		}
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO spend_ledger(txid, client_pubkey, request_id, outflow_sat, state, reserved_at, release_after, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(txid) DO UPDATE SET state = excluded.state, reserved_at = excluded.reserved_at, release_after = excluded.release_after,
			outflow_sat = excluded.outflow_sat, replaced_by = '', updated_at = excluded.updated_at`,
		r.TxID, r.Client, r.RequestID, r.OutflowSat, LedgerReserved, r.At.Unix(), int64(r.ReleaseAfter/time.Second), now)
	if err != nil {
		return fmt.Errorf("store: reserve: %w", err)
	}
	for _, op := range r.Inputs {
		if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO spend_ledger_inputs(outpoint, txid) VALUES (?, ?)`, op, r.TxID); err != nil {
			return fmt.Errorf("store: reserve input: %w", err)
		}
	}
	return nil
}

// SpentSince sums the outflow of ledger transactions reserved or spent with a signing time at or
// after since, leaving out the transactions in exclude (those a replacement would supersede).
func (db *DB) SpentSince(ctx context.Context, since time.Time, exclude []string) (int64, error) {
	q := `SELECT COALESCE(SUM(outflow_sat), 0) FROM spend_ledger WHERE state IN (?, ?) AND reserved_at >= ?`
	args := []any{LedgerReserved, LedgerSpent, since.Unix()}
	if len(exclude) > 0 {
		q += ` AND txid NOT IN (?` + strings.Repeat(",?", len(exclude)-1) + `)`
		for _, x := range exclude {
			args = append(args, x)
		}
	}
	var n int64
	if err := db.SQL.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: sum spend ledger: %w", err)
	}
	return n, nil
}

// Reservations returns the ledger entries in any of states (all when none given), oldest
// first, with their inputs.
func (db *DB) Reservations(ctx context.Context, states ...string) ([]Reservation, error) {
	where, args := "", []any{}
	if len(states) > 0 {
		where = `WHERE state IN (?` + strings.Repeat(",?", len(states)-1) + `)`
		for _, s := range states {
			args = append(args, s)
		}
	}
	return db.reservations(ctx, where, args...)
}

// ActiveReservations returns the reserved entries and the spent ones signed at or after since
// (older spent entries are settled history), oldest first, with their inputs.
func (db *DB) ActiveReservations(ctx context.Context, since time.Time) ([]Reservation, error) {
	return db.reservations(ctx, `WHERE state = ? OR (state = ? AND reserved_at >= ?)`, LedgerReserved, LedgerSpent, since.Unix())
}

// LedgerSpending returns the ledger entries (any state) that spend outpoint, with their inputs.
func (db *DB) LedgerSpending(ctx context.Context, outpoint string) ([]Reservation, error) {
	return db.reservations(ctx, `WHERE txid IN (SELECT txid FROM spend_ledger_inputs WHERE outpoint = ?)`, outpoint)
}

func (db *DB) reservations(ctx context.Context, where string, args ...any) ([]Reservation, error) {
	out, err := queryReservations(ctx, db.SQL, where, args...)
	if err != nil {
		return nil, err
	}
	for i := range out {
		ins, err := db.SQL.QueryContext(ctx, `SELECT outpoint FROM spend_ledger_inputs WHERE txid = ? ORDER BY outpoint`, out[i].TxID)
		if err != nil {
			return nil, fmt.Errorf("store: read spend ledger inputs: %w", err)
		}
		for ins.Next() {
			var op string
			if err := ins.Scan(&op); err != nil {
				ins.Close()
				return nil, err
			}
			out[i].Inputs = append(out[i].Inputs, op)
		}
		ins.Close()
		if err := ins.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// SetLedgerState moves ledger transaction txid to state. Releasing a transaction reinstates
// (as reserved) the transactions it had replaced: they may still confirm.
func (db *DB) SetLedgerState(ctx context.Context, txid, state string) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().Unix()
		if _, err := tx.ExecContext(ctx, `UPDATE spend_ledger SET state = ?, updated_at = ? WHERE txid = ?`, state, now, txid); err != nil {
			return fmt.Errorf("store: update spend ledger: %w", err)
		}
		if state == LedgerReleased {
			if _, err := tx.ExecContext(ctx, `UPDATE spend_ledger SET state = ?, replaced_by = '', updated_at = ? WHERE state = ? AND replaced_by = ?`,
				LedgerReserved, now, LedgerReplaced, txid); err != nil {
				return fmt.Errorf("store: reinstate reservations: %w", err)
			}
		}
		return nil
	})
}

// CountRequests counts client's signing requests received at or after since.
func (db *DB) CountRequests(ctx context.Context, client string, since time.Time) (int, error) {
	var n int
	if err := db.SQL.QueryRowContext(ctx, `SELECT count(*) FROM sign_requests WHERE client_pubkey = ? AND created_at >= ?`, client, since.Unix()).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: count requests: %w", err)
	}
	return n, nil
}

const holdCols = `client_pubkey, request_id, token, params, rule, held_since, state, url, reason, responded`

func scanHold(sc interface{ Scan(...any) error }) (Hold, error) {
	var h Hold
	var params string
	var since int64
	if err := sc.Scan(&h.Client, &h.RequestID, &h.Token, &params, &h.Rule, &since, &h.State, &h.URL, &h.Reason, &h.Responded); err != nil {
		return h, err
	}
	h.HeldSince = time.Unix(since, 0)
	if err := json.Unmarshal([]byte(params), &h.Params); err != nil {
		return h, fmt.Errorf("store: hold params: %w", err)
	}
	return h, nil
}

// Holds returns held requests in any of states (all when none given), oldest first.
func (db *DB) Holds(ctx context.Context, states ...string) ([]Hold, error) {
	q := `SELECT ` + holdCols + ` FROM holds`
	var args []any
	if len(states) > 0 {
		q += ` WHERE state IN (?` + strings.Repeat(",?", len(states)-1) + `)`
		for _, s := range states {
			args = append(args, s)
		}
	}
	return queryRows(ctx, db.SQL, "read holds", func(rows *sql.Rows) (Hold, error) { return scanHold(rows) },
		q+` ORDER BY held_since, request_id`, args...)
}

// UnrespondedHolds returns holds that ended (released, denied, cancelled) whose late answer has
// not reached a relay yet.
func (db *DB) UnrespondedHolds(ctx context.Context) ([]Hold, error) {
	hs, err := db.Holds(ctx, HoldReleased, HoldDenied, HoldCancelled)
	if err != nil {
		return nil, err
	}
	out := hs[:0]
	for _, h := range hs {
		if !h.Responded {
			out = append(out, h)
		}
	}
	return out, nil
}

// FindHold returns the hold of (client, requestID), or by token when client is empty and
// requestID is the token. ErrNoSuchHold when there is none.
func (db *DB) FindHold(ctx context.Context, client, requestID string) (Hold, error) {
	var row *sql.Row
	if client == "" {
		row = db.SQL.QueryRowContext(ctx, `SELECT `+holdCols+` FROM holds WHERE token = ?`, requestID)
	} else {
		row = db.SQL.QueryRowContext(ctx, `SELECT `+holdCols+` FROM holds WHERE client_pubkey = ? AND request_id = ?`, client, requestID)
	}
	h, err := scanHold(row)
	if errors.Is(err, sql.ErrNoRows) {
		return h, ErrNoSuchHold
	}
	if err != nil {
		return h, fmt.Errorf("store: read hold: %w", err)
	}
	return h, nil
}

// HoldsByRequestID returns every hold whose request id (or unsigned txid) is id, any client.
func (db *DB) HoldsByRequestID(ctx context.Context, id string) ([]Hold, error) {
	rows, err := db.SQL.QueryContext(ctx, `SELECT `+holdCols+` FROM holds WHERE request_id = ? OR token = ?
		OR (client_pubkey, request_id) IN (SELECT client_pubkey, request_id FROM sign_requests WHERE unsigned_txid = ?)`, id, id, id)
	if err != nil {
		return nil, fmt.Errorf("store: read holds: %w", err)
	}
	defer rows.Close()
	var out []Hold
	for rows.Next() {
		h, err := scanHold(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// HoldsForApproval returns the holds an approver's id names: the hold whose auth_url token is
// id, or every hold whose request has unsigned txid id. A request id is never matched: clients
// choose them (issue 11, finding 6).
func (db *DB) HoldsForApproval(ctx context.Context, id string) ([]Hold, error) {
	return queryRows(ctx, db.SQL, "read holds", func(rows *sql.Rows) (Hold, error) { return scanHold(rows) },
		`SELECT `+holdCols+` FROM holds WHERE token = ?
		OR (client_pubkey, request_id) IN (SELECT client_pubkey, request_id FROM sign_requests WHERE unsigned_txid = ? AND unsigned_txid != '')
		ORDER BY held_since, request_id`, id, id)
}

// CountWaitingHolds returns how many holds are waiting: client's, and in all.
func (db *DB) CountWaitingHolds(ctx context.Context, client string) (mine, all int, err error) {
	err = db.SQL.QueryRowContext(ctx, `SELECT count(*), coalesce(sum(client_pubkey = ?), 0) FROM holds WHERE state = ?`,
		client, HoldWaiting).Scan(&all, &mine)
	if err != nil {
		return 0, 0, fmt.Errorf("store: count holds: %w", err)
	}
	return mine, all, nil
}

// MarkHoldResponded records that the late answer of a hold reached a relay.
func (db *DB) MarkHoldResponded(ctx context.Context, client, requestID string) error {
	if _, err := db.SQL.ExecContext(ctx, `UPDATE holds SET responded = 1, updated_at = ? WHERE client_pubkey = ? AND request_id = ?`,
		time.Now().Unix(), client, requestID); err != nil {
		return fmt.Errorf("store: update hold: %w", err)
	}
	return nil
}

// AddApproval records (or replaces) an approver's decision on a held request, with its evidence.
func (db *DB) AddApproval(ctx context.Context, a Approval) error {
	_, err := db.SQL.ExecContext(ctx, `INSERT INTO approvals(client_pubkey, request_id, approver_pubkey, decision, event, at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(client_pubkey, request_id, approver_pubkey) DO UPDATE SET decision = excluded.decision, event = excluded.event, at = excluded.at`,
		a.Client, a.RequestID, a.Approver, a.Decision, a.Event, a.At.Unix())
	if err != nil {
		return fmt.Errorf("store: add approval: %w", err)
	}
	return nil
}

// Approvals returns the decisions recorded on a held request, oldest first.
func (db *DB) Approvals(ctx context.Context, client, requestID string) ([]Approval, error) {
	return queryRows(ctx, db.SQL, "read approvals", func(rows *sql.Rows) (Approval, error) {
		a := Approval{Client: client, RequestID: requestID}
		var at int64
		err := rows.Scan(&a.Approver, &a.Decision, &a.Event, &at)
		a.At = time.Unix(at, 0)
		return a, err
	}, `SELECT approver_pubkey, decision, event, at FROM approvals WHERE client_pubkey = ? AND request_id = ? ORDER BY at, approver_pubkey`, client, requestID)
}

// SignRequestRow returns the stored request (client, requestID), or ok = false.
func (db *DB) SignRequestRow(ctx context.Context, client, requestID string) (SignRequest, bool, error) {
	r := SignRequest{Client: client, RequestID: requestID}
	err := db.SQL.QueryRowContext(ctx, `SELECT method, psbt_sha256, unsigned_txid, state, result, error FROM sign_requests
		WHERE client_pubkey = ? AND request_id = ?`, client, requestID).Scan(&r.Method, &r.PSBTSHA256, &r.UnsignedTxID, &r.State, &r.Result, &r.Error)
	if errors.Is(err, sql.ErrNoRows) {
		return r, false, nil
	}
	if err != nil {
		return r, false, fmt.Errorf("store: read sign request: %w", err)
	}
	return r, true, nil
}

// FindSignRequests returns client's requests whose id or unsigned txid is id.
func (db *DB) FindSignRequests(ctx context.Context, client, id string) ([]SignRequest, error) {
	rows, err := db.SQL.QueryContext(ctx, `SELECT request_id, method, psbt_sha256, unsigned_txid, state, result, error FROM sign_requests
		WHERE client_pubkey = ? AND (request_id = ? OR unsigned_txid = ?) ORDER BY created_at`, client, id, id)
	if err != nil {
		return nil, fmt.Errorf("store: read sign requests: %w", err)
	}
	defer rows.Close()
	var out []SignRequest
	for rows.Next() {
		r := SignRequest{Client: client}
		if err := rows.Scan(&r.RequestID, &r.Method, &r.PSBTSHA256, &r.UnsignedTxID, &r.State, &r.Result, &r.Error); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// PolicyVersion is a policy file content the daemon has seen.
type PolicyVersion struct {
	Hash, Name  string
	Body        []byte
	SeenAt      time.Time
	EffectiveAt time.Time // from then on it applies alone
}

// PutPolicyVersion records a policy version as the newest one seen (a file content seen
// before is moved to the end with its new times).
func (db *DB) PutPolicyVersion(ctx context.Context, v PolicyVersion) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM policy_versions WHERE hash = ?`, v.Hash); err != nil {
			return fmt.Errorf("store: put policy version: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO policy_versions(hash, name, body, seen_at, effective_at) VALUES (?, ?, ?, ?, ?)`,
			v.Hash, v.Name, v.Body, v.SeenAt.Unix(), v.EffectiveAt.Unix()); err != nil {
			return fmt.Errorf("store: put policy version: %w", err)
		}
		return nil
	})
}

// PolicyVersions returns every recorded policy version, oldest first (the last is the newest).
func (db *DB) PolicyVersions(ctx context.Context) ([]PolicyVersion, error) {
	rows, err := db.SQL.QueryContext(ctx, `SELECT hash, name, body, seen_at, effective_at FROM policy_versions ORDER BY rowid`)
	if err != nil {
		return nil, fmt.Errorf("store: read policy versions: %w", err)
	}
	defer rows.Close()
	var out []PolicyVersion
	for rows.Next() {
		var v PolicyVersion
		var seen, eff int64
		if err := rows.Scan(&v.Hash, &v.Name, &v.Body, &seen, &eff); err != nil {
			return nil, err
		}
		v.SeenAt, v.EffectiveAt = time.Unix(seen, 0), time.Unix(eff, 0)
		out = append(out, v)
	}
	return out, rows.Err()
}
