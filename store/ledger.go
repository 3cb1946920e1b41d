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

// Ledger states of a signed transaction (migration 0013, spend exposure): outstanding from
// signing until it confirms (confirmed) or one of its inputs is spent by a different confirmed
// transaction (invalidated); both facts proven against the watcher's header chain.
const (
	LedgerOutstanding = "outstanding"
	LedgerConfirmed   = "confirmed"
	LedgerInvalidated = "invalidated"
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

// Reservation is one signed transaction in the spend ledger: its outflow (what leaves the
// wallet: payments to others plus the fee, in satoshis), the outpoints it spends, when it was
// signed, and the fact that settled it, if any.
type Reservation struct {
	TxID       string // unsigned txid (the txid of a segwit transaction), display order
	Client     string
	RequestID  string
	OutflowSat int64
	Inputs     []string // outpoints "txid:vout"
	State      string   // LedgerOutstanding | LedgerConfirmed | LedgerInvalidated
	At         time.Time
	// Confirmed: the block (height, hash) it is in and the time it counts at.
	ConfHeight int32
	ConfHash   string
	ConfAt     time.Time
	// Invalidated: the confirmed transaction that spent one of its inputs, and its block.
	InvalidBy     string
	InvalidHeight int32
	InvalidHash   string
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
// (when signing: the transaction becomes outstanding exposure), a new hold, or a hold state
// change.
type Decided struct {
	Request     SignRequest
	Audit       AuditEntry
	PolicyHash  string
	Explanation string // JSON of the rule-by-rule explanation
	Reserve     *Reservation
	NewHold     *Hold
	HoldState   string // when non-empty, the request's hold moves to this state
}

// The statements of the request path (sign_psbt, approve, psbt_status, the held requests) and
// of the spend exposure's reconcile. Each is served by an index, so that none reads a number of
// rows that grows with the ledger, the requests or the audit log (store/plan_test.go checks
// their plans).
const (
	sqlFinishRequest = `UPDATE sign_requests SET state = ?, result = ?, error = ?, unsigned_txid = ?, updated_at = ?
			WHERE client_pubkey = ? AND request_id = ?`
	sqlInsertHold = `INSERT INTO holds(client_pubkey, request_id, token, params, rule, held_since, state, url, reason, updated_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	sqlHoldState = `UPDATE holds SET state = ?, reason = ?, updated_at = ? WHERE client_pubkey = ? AND request_id = ?`
	sqlReserve   = `INSERT INTO spend_ledger(txid, client_pubkey, request_id, outflow_sat, state, reserved_at, release_after, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, 0, ?)
		ON CONFLICT(txid) DO UPDATE SET outflow_sat = max(outflow_sat, excluded.outflow_sat), updated_at = excluded.updated_at`
	sqlReserveInput = `INSERT OR IGNORE INTO spend_ledger_inputs(outpoint, txid) VALUES (?, ?)`
	sqlReopen       = `UPDATE spend_ledger SET state = ?, conf_height = 0, conf_hash = '', conf_at = 0, invalid_by = '',
			invalid_height = 0, invalid_hash = '', updated_at = ? WHERE txid = ? AND state IN (?, ?)`
	sqlCountRequests    = `SELECT count(*) FROM sign_requests WHERE client_pubkey = ? AND created_at >= ?`
	sqlHoldByToken      = `SELECT ` + holdCols + ` FROM holds WHERE token = ?`
	sqlHold             = `SELECT ` + holdCols + ` FROM holds WHERE client_pubkey = ? AND request_id = ?`
	sqlHoldsByRequestID = `SELECT ` + holdCols + ` FROM holds WHERE request_id = ? OR token = ?
		OR (client_pubkey, request_id) IN (SELECT client_pubkey, request_id FROM sign_requests WHERE unsigned_txid = ?)`
	sqlHoldsForApproval = `SELECT ` + holdCols + ` FROM holds WHERE token = ?
		OR (client_pubkey, request_id) IN (SELECT client_pubkey, request_id FROM sign_requests WHERE unsigned_txid = ? AND unsigned_txid != '')
		ORDER BY held_since, request_id`
	sqlUnrespondedHolds  = `SELECT ` + holdCols + ` FROM holds WHERE state IN (?, ?, ?) AND responded = 0 ORDER BY held_since, request_id`
	sqlHoldsByState      = `SELECT ` + holdCols + ` FROM holds WHERE state IN (?`
	sqlCountWaitingHolds = `SELECT count(*), coalesce(sum(client_pubkey = ?), 0) FROM holds WHERE state = ?`
	sqlHoldResponded     = `UPDATE holds SET responded = 1, updated_at = ? WHERE client_pubkey = ? AND request_id = ?`
	sqlAddApproval       = `INSERT INTO approvals(client_pubkey, request_id, approver_pubkey, decision, event, at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT(client_pubkey, request_id, approver_pubkey) DO UPDATE SET decision = excluded.decision, event = excluded.event, at = excluded.at`
	sqlApprovals   = `SELECT approver_pubkey, decision, event, at FROM approvals WHERE client_pubkey = ? AND request_id = ? ORDER BY at, approver_pubkey`
	sqlSignRequest = `SELECT method, psbt_sha256, unsigned_txid, state, result, error FROM sign_requests
		WHERE client_pubkey = ? AND request_id = ?`
	sqlFindSignRequests = `SELECT request_id, method, psbt_sha256, unsigned_txid, state, result, error FROM sign_requests
		WHERE (client_pubkey = ? AND request_id = ?) OR (client_pubkey = ? AND unsigned_txid = ?) ORDER BY created_at`
)

// The columns ConfirmEntry and InvalidateEntry set (moveSQL).
const (
	setConfirmed   = `state = ?, conf_height = ?, conf_hash = ?, conf_at = ?`
	setInvalidated = `state = ?, invalid_by = ?, invalid_height = ?, invalid_hash = ?`
)

// moveSQL is the statement that moves a ledger entry from one state (set: the columns it sets).
func moveSQL(set string) string {
	return `UPDATE spend_ledger SET ` + set + `, updated_at = ? WHERE txid = ? AND state = ?`
}

// FinishDecision writes d in one transaction. Errors: a wrapped SQL error; nothing is written then.
func (db *DB) FinishDecision(ctx context.Context, d Decided) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		now := time.Now().Unix()
		r := d.Request
		res, err := tx.ExecContext(ctx, sqlFinishRequest, r.State, r.Result, r.Error, r.UnsignedTxID, now, r.Client, r.RequestID)
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
			if _, err := tx.ExecContext(ctx, sqlInsertHold, h.Client, h.RequestID, h.Token, string(params), h.Rule, h.HeldSince.Unix(), HoldWaiting, h.URL, h.Reason, now); err != nil {
				return fmt.Errorf("store: insert hold: %w", err)
			}
		}
		if d.HoldState != "" {
			if _, err := tx.ExecContext(ctx, sqlHoldState,
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

const ledgerCols = `txid, client_pubkey, request_id, outflow_sat, state, reserved_at, conf_height, conf_hash, conf_at, invalid_by, invalid_height, invalid_hash`

// The conditions the spend ledger is read by; each is served by an index (migrations 0005,
// 0013, 0018; store/plan_test.go checks the plans).
const (
	whereExposure    = `WHERE state = ? OR (state = ? AND conf_at >= ?)`
	whereSettled     = `WHERE (state = ? AND conf_height >= ?) OR (state = ? AND invalid_height >= ?)`
	whereSpending    = `WHERE txid IN (SELECT txid FROM spend_ledger_inputs WHERE outpoint = ?)`
	whereLedgerTxID  = `WHERE txid = ?`
	whereLedgerState = `WHERE state IN (?`
)

// ledgerSelect returns the two statements that read the ledger entries matching where: the
// entries, oldest first, and their inputs.
func ledgerSelect(where string) (entries, inputs string) {
	return `SELECT ` + ledgerCols + ` FROM spend_ledger ` + where + ` ORDER BY reserved_at, txid`,
		`SELECT txid, outpoint FROM spend_ledger_inputs WHERE txid IN (SELECT txid FROM spend_ledger ` + where + `) ORDER BY txid, outpoint`
}

func queryReservations(ctx context.Context, q querier, where string, args ...any) ([]Reservation, error) {
	entries, _ := ledgerSelect(where)
	return queryRows(ctx, q, "read spend ledger", func(rows *sql.Rows) (Reservation, error) {
		var r Reservation
		var at, confAt int64
		err := rows.Scan(&r.TxID, &r.Client, &r.RequestID, &r.OutflowSat, &r.State, &at, &r.ConfHeight, &r.ConfHash, &confAt,
			&r.InvalidBy, &r.InvalidHeight, &r.InvalidHash)
		r.At = time.Unix(at, 0)
		if confAt != 0 {
			r.ConfAt = time.Unix(confAt, 0)
		}
		return r, err
	}, entries, args...)
}

// reserve records a newly signed transaction as outstanding. Signing a transaction the ledger
// already has (the same unsigned txid under another request) keeps its state and counts the
// larger outflow.
func reserve(ctx context.Context, tx *sql.Tx, r Reservation, now int64) error {
	_, err := tx.ExecContext(ctx, sqlReserve,
		r.TxID, r.Client, r.RequestID, r.OutflowSat, LedgerOutstanding, r.At.Unix(), now)
	if err != nil {
		return fmt.Errorf("store: reserve: %w", err)
	}
	for _, op := range r.Inputs {
		if _, err := tx.ExecContext(ctx, sqlReserveInput, op, r.TxID); err != nil {
			return fmt.Errorf("store: reserve input: %w", err)
		}
	}
	return nil
}

// Exposure returns what the velocity windows count, with inputs: every outstanding entry
// (whatever its age) and the confirmed entries that count at or after since (ConfAt).
// Invalidated entries and older confirmed ones are left out.
func (db *DB) Exposure(ctx context.Context, since time.Time) ([]Reservation, error) {
	return db.reservations(ctx, whereExposure, LedgerOutstanding, LedgerConfirmed, since.Unix())
}

// Reservations returns the ledger entries in any of states (all when none given), oldest
// first, with their inputs.
func (db *DB) Reservations(ctx context.Context, states ...string) ([]Reservation, error) {
	where, args := "", []any{}
	if len(states) > 0 {
		where = whereLedgerState + strings.Repeat(",?", len(states)-1) + `)`
		for _, s := range states {
			args = append(args, s)
		}
	}
	return db.reservations(ctx, where, args...)
}

// SettledAbove returns the confirmed and invalidated entries whose fact is in a block at or
// above height (those a reorg could undo), with their inputs.
func (db *DB) SettledAbove(ctx context.Context, height int32) ([]Reservation, error) {
	return db.reservations(ctx, whereSettled, LedgerConfirmed, height, LedgerInvalidated, height)
}

// SettledFactsAbove is SettledAbove without the inputs (the reorg check reads only the facts;
// an entry to reopen is read whole with LedgerEntry).
func (db *DB) SettledFactsAbove(ctx context.Context, height int32) ([]Reservation, error) {
	return queryReservations(ctx, db.SQL, whereSettled, LedgerConfirmed, height, LedgerInvalidated, height)
}

// LedgerSpending returns the ledger entries (any state) that spend outpoint, with their inputs.
func (db *DB) LedgerSpending(ctx context.Context, outpoint string) ([]Reservation, error) {
	return db.reservations(ctx, whereSpending, outpoint)
}

// LedgerEntry returns the ledger entry of txid (with its inputs); ok is false when there is none.
func (db *DB) LedgerEntry(ctx context.Context, txid string) (Reservation, bool, error) {
	rs, err := db.reservations(ctx, whereLedgerTxID, txid)
	if err != nil || len(rs) == 0 {
		return Reservation{}, false, err
	}
	return rs[0], true, nil
}

func (db *DB) reservations(ctx context.Context, where string, args ...any) ([]Reservation, error) {
	out, err := queryReservations(ctx, db.SQL, where, args...)
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}
	idx := make(map[string]int, len(out))
	for i, r := range out {
		idx[r.TxID] = i
	}
	_, inputs := ledgerSelect(where)
	rows, err := db.SQL.QueryContext(ctx, inputs, args...)
	if err != nil {
		return nil, fmt.Errorf("store: read spend ledger inputs: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var txid, op string
		if err := rows.Scan(&txid, &op); err != nil {
			return nil, fmt.Errorf("store: read spend ledger inputs: %w", err)
		}
		if i, ok := idx[txid]; ok {
			out[i].Inputs = append(out[i].Inputs, op)
		}
	}
	return out, rows.Err()
}

// ErrLedgerState means a ledger entry was not in the state a change expected (another change
// came first); nothing was written.
var ErrLedgerState = errors.New("store: spend ledger entry not in the expected state")

// ConfirmEntry moves outstanding entry txid to confirmed in block (height, hash), counting at
// at. ErrLedgerState when it is not outstanding.
func (db *DB) ConfirmEntry(ctx context.Context, txid string, height int32, hash string, at time.Time) error {
	return db.moveEntry(ctx, txid, LedgerOutstanding, setConfirmed,
		LedgerConfirmed, height, hash, at.Unix())
}

// InvalidateEntry moves outstanding entry txid to invalidated: by, in block (height, hash),
// spent one of its inputs. ErrLedgerState when it is not outstanding.
func (db *DB) InvalidateEntry(ctx context.Context, txid, by string, height int32, hash string) error {
	return db.moveEntry(ctx, txid, LedgerOutstanding, setInvalidated,
		LedgerInvalidated, by, height, hash)
}

// ReopenEntry moves a confirmed or invalidated entry back to outstanding (its block left the
// header chain), clearing the fact. ErrLedgerState when it is in neither state.
func (db *DB) ReopenEntry(ctx context.Context, txid string) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, sqlReopen,
			LedgerOutstanding, time.Now().Unix(), txid, LedgerConfirmed, LedgerInvalidated)
		if err != nil {
			return fmt.Errorf("store: reopen spend ledger entry: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: %s", ErrLedgerState, txid)
		}
		return nil
	})
}

func (db *DB) moveEntry(ctx context.Context, txid, from, set string, args ...any) error {
	return db.Tx(ctx, func(tx *sql.Tx) error {
		args = append(args, time.Now().Unix(), txid, from)
		res, err := tx.ExecContext(ctx, moveSQL(set), args...)
		if err != nil {
			return fmt.Errorf("store: update spend ledger: %w", err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: %s is not %s", ErrLedgerState, txid, from)
		}
		return nil
	})
}

// CountRequests counts client's signing requests received at or after since.
func (db *DB) CountRequests(ctx context.Context, client string, since time.Time) (int, error) {
	var n int
	if err := db.SQL.QueryRowContext(ctx, sqlCountRequests, client, since.Unix()).Scan(&n); err != nil {
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
		q = sqlHoldsByState + strings.Repeat(",?", len(states)-1) + `)`
		for _, s := range states {
			args = append(args, s)
		}
	}
	return queryRows(ctx, db.SQL, "read holds", func(rows *sql.Rows) (Hold, error) { return scanHold(rows) },
		q+` ORDER BY held_since, request_id`, args...)
}

// UnrespondedHolds returns holds that ended (released, denied, cancelled) whose late answer has
// not reached a relay yet, oldest first.
func (db *DB) UnrespondedHolds(ctx context.Context) ([]Hold, error) {
	return queryRows(ctx, db.SQL, "read holds", func(rows *sql.Rows) (Hold, error) { return scanHold(rows) },
		sqlUnrespondedHolds, HoldReleased, HoldDenied, HoldCancelled)
}

// FindHold returns the hold of (client, requestID), or by token when client is empty and
// requestID is the token. ErrNoSuchHold when there is none.
func (db *DB) FindHold(ctx context.Context, client, requestID string) (Hold, error) {
	var row *sql.Row
	if client == "" {
		row = db.SQL.QueryRowContext(ctx, sqlHoldByToken, requestID)
	} else {
		row = db.SQL.QueryRowContext(ctx, sqlHold, client, requestID)
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
	rows, err := db.SQL.QueryContext(ctx, sqlHoldsByRequestID, id, id, id)
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
		sqlHoldsForApproval, id, id)
}

// CountWaitingHolds returns how many holds are waiting: client's, and in all.
func (db *DB) CountWaitingHolds(ctx context.Context, client string) (mine, all int, err error) {
	err = db.SQL.QueryRowContext(ctx, sqlCountWaitingHolds,
		client, HoldWaiting).Scan(&all, &mine)
	if err != nil {
		return 0, 0, fmt.Errorf("store: count holds: %w", err)
	}
	return mine, all, nil
}

// MarkHoldResponded records that the late answer of a hold reached a relay.
func (db *DB) MarkHoldResponded(ctx context.Context, client, requestID string) error {
	if _, err := db.SQL.ExecContext(ctx, sqlHoldResponded,
		time.Now().Unix(), client, requestID); err != nil {
		return fmt.Errorf("store: update hold: %w", err)
	}
	return nil
}

// AddApproval records (or replaces) an approver's decision on a held request, with its evidence.
func (db *DB) AddApproval(ctx context.Context, a Approval) error {
	_, err := db.SQL.ExecContext(ctx, sqlAddApproval,
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
	}, sqlApprovals, client, requestID)
}

// SignRequestRow returns the stored request (client, requestID), or ok = false.
func (db *DB) SignRequestRow(ctx context.Context, client, requestID string) (SignRequest, bool, error) {
	r := SignRequest{Client: client, RequestID: requestID}
	err := db.SQL.QueryRowContext(ctx, sqlSignRequest, client, requestID).Scan(&r.Method, &r.PSBTSHA256, &r.UnsignedTxID, &r.State, &r.Result, &r.Error)
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
	rows, err := db.SQL.QueryContext(ctx, sqlFindSignRequests, client, id, client, id)
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
