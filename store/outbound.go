package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Outbound proposals (migration 0009): the transactions the co-signer builds itself when a policy
// automation fires. Package outbound owns the state machine and defines the states (proposal and
// co-signer); this file only stores them as the strings it is given.
// Every change of a proposal's state is one transaction guarded by the state it expects to
// change (ChangeProposal), together with its cosigner rows and timeline entries, so a crash
// between two steps leaves the proposal in exactly one of them.

// Proposal errors.
var (
	// ErrNoSuchProposal means no proposal has the id.
	ErrNoSuchProposal = errors.New("store: no such proposal")
	// ErrProposalState means the proposal is not (any more) in the state a change expected:
	// another step (or `cosigner proposals cancel`) moved it first. Nothing was written.
	ErrProposalState = errors.New("store: proposal is not in the expected state")
)

// Proposal is one row of proposals. PSBT is the latest combined PSBT (binary); FinalTx the
// network serialization of the extracted transaction once finalized. FeeRate is in sat/vB.
type Proposal struct {
	ID, Automation, TriggerKey string
	State, Reason              string
	PSBT                       []byte
	UnsignedTxID               string
	FinalTx                    []byte
	TxID                       string
	FeeSat                     int64
	FeeRate                    float64
	Replaces                   string
	BroadcastHeight            int32
	CreatedAt, UpdatedAt       time.Time
}

// ProposalCosigner is a co-signer asked for one proposal. BunkerURI may carry a connect secret:
// never print it.
type ProposalCosigner struct {
	ProposalID, Cosigner string
	BunkerURI, RequestID string
	State, Detail        string
	UpdatedAt            time.Time
}

// ProposalEvent is one timeline entry of a proposal.
type ProposalEvent struct {
	ProposalID string
	At         time.Time
	Event      string
	Detail     string
}

const proposalCols = `id, automation, trigger_key, state, reason, psbt, unsigned_txid, final_tx, txid, fee_sat, feerate,
	replaces, broadcast_height, created_at, updated_at`

func scanProposal(r interface{ Scan(...any) error }) (Proposal, error) {
	var p Proposal
	var created, updated int64
	err := r.Scan(&p.ID, &p.Automation, &p.TriggerKey, &p.State, &p.Reason, &p.PSBT, &p.UnsignedTxID, &p.FinalTx, &p.TxID,
		&p.FeeSat, &p.FeeRate, &p.Replaces, &p.BroadcastHeight, &created, &updated)
	p.CreatedAt, p.UpdatedAt = time.Unix(0, created).UTC(), time.Unix(0, updated).UTC()
	return p, err
}

// CreateProposal inserts p with its "proposed" timeline entry (detail), unless a proposal for
// the same (automation, trigger key) exists. It returns the stored proposal and whether it was
// created now. Errors: the database's (wrapped).
func (db *DB) CreateProposal(ctx context.Context, p Proposal, detail string) (Proposal, bool, error) {
	if p.ID == "" || p.Automation == "" || p.TriggerKey == "" || p.State == "" {
		return Proposal{}, false, fmt.Errorf("store: create proposal: id, automation, trigger key and state are required")
	}
	if p.CreatedAt.IsZero() {
		p.CreatedAt = time.Now()
	}
	p.UpdatedAt = p.CreatedAt
	created := false
	var out Proposal
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO proposals(`+proposalCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
			ON CONFLICT(automation, trigger_key) DO NOTHING`,
			p.ID, p.Automation, p.TriggerKey, p.State, p.Reason, p.PSBT, p.UnsignedTxID, p.FinalTx, p.TxID, p.FeeSat, p.FeeRate,
			p.Replaces, p.BroadcastHeight, p.CreatedAt.UnixNano(), p.UpdatedAt.UnixNano())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			created = true
			if err := addProposalEvents(ctx, tx, []ProposalEvent{{ProposalID: p.ID, At: p.CreatedAt, Event: "proposed", Detail: detail}}); err != nil {
				return err
			}
		}
		out, err = scanProposal(tx.QueryRowContext(ctx, `SELECT `+proposalCols+` FROM proposals WHERE automation = ? AND trigger_key = ?`, p.Automation, p.TriggerKey))
		return err
	})
	if err != nil {
		return Proposal{}, false, fmt.Errorf("store: create proposal %s: %w", p.ID, err)
	}
	return out, created, nil
}

// ProposalChange is one step of a proposal: it moves from From to Proposal's values (state,
// reason, PSBT, txids, fee, feerate, broadcast height; id, automation, trigger key, replaces and
// created_at never change), inserts new co-signer rows (an existing row keeps its request id
// and gets the new state and detail), and appends timeline entries — all in one transaction.
type ProposalChange struct {
	From      string
	Proposal  Proposal
	Cosigners []ProposalCosigner
	Events    []ProposalEvent
}

// ChangeProposal applies c in one transaction. Errors: ErrProposalState (wrapped) when the
// proposal is not in state c.From (nothing written), the database's.
func (db *DB) ChangeProposal(ctx context.Context, c ProposalChange) error {
	p := c.Proposal
	if p.UpdatedAt.IsZero() {
		p.UpdatedAt = time.Now()
	}
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE proposals SET state = ?, reason = ?, psbt = ?, unsigned_txid = ?, final_tx = ?, txid = ?,
			fee_sat = ?, feerate = ?, broadcast_height = ?, updated_at = ? WHERE id = ? AND state = ?`,
			p.State, p.Reason, p.PSBT, p.UnsignedTxID, p.FinalTx, p.TxID, p.FeeSat, p.FeeRate, p.BroadcastHeight, p.UpdatedAt.UnixNano(), p.ID, c.From)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			if err := requireProposalState(ctx, tx, p.ID, c.From); err != nil {
				return err
			}
			return fmt.Errorf("%w: %s was not updated", ErrProposalState, p.ID)
		}
		for _, co := range c.Cosigners {
			if err := putCosigner(ctx, tx, p.ID, co, p.UpdatedAt); err != nil {
				return err
			}
		}
		return addProposalEvents(ctx, tx, withProposal(p.ID, p.UpdatedAt, c.Events))
	})
	if err != nil {
		return fmt.Errorf("store: proposal %s %s → %s: %w", p.ID, c.From, p.State, err)
	}
	return nil
}

// SetProposalCosigner records a co-signer's new state and detail (and timeline entries) while
// the proposal is in state from. Errors: ErrProposalState (wrapped), the database's.
func (db *DB) SetProposalCosigner(ctx context.Context, from string, c ProposalCosigner, events ...ProposalEvent) error {
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = time.Now()
	}
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		if err := requireProposalState(ctx, tx, c.ProposalID, from); err != nil {
			return err
		}
		if err := putCosigner(ctx, tx, c.ProposalID, c, c.UpdatedAt); err != nil {
			return err
		}
		return addProposalEvents(ctx, tx, withProposal(c.ProposalID, c.UpdatedAt, events))
	})
	if err != nil {
		return fmt.Errorf("store: proposal %s cosigner %s: %w", c.ProposalID, c.Cosigner, err)
	}
	return nil
}

func putCosigner(ctx context.Context, tx *sql.Tx, id string, c ProposalCosigner, at time.Time) error {
	if c.Cosigner == "" || c.RequestID == "" || c.State == "" {
		return fmt.Errorf("co-signer row without pubkey, request id or state")
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO proposal_cosigners(proposal_id, cosigner, bunker_uri, request_id, state, detail, updated_at)
		VALUES (?,?,?,?,?,?,?) ON CONFLICT(proposal_id, cosigner) DO UPDATE SET state = excluded.state, detail = excluded.detail,
		updated_at = excluded.updated_at`, id, c.Cosigner, c.BunkerURI, c.RequestID, c.State, c.Detail, at.UnixNano())
	return err
}

func withProposal(id string, at time.Time, evs []ProposalEvent) []ProposalEvent {
	out := make([]ProposalEvent, len(evs))
	for i, e := range evs {
		e.ProposalID = id
		if e.At.IsZero() {
			e.At = at
		}
		out[i] = e
	}
	return out
}

func addProposalEvents(ctx context.Context, tx *sql.Tx, evs []ProposalEvent) error {
	for _, e := range evs {
		if e.Event == "" {
			return fmt.Errorf("timeline entry without an event name")
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO proposal_events(proposal_id, at, event, detail) VALUES (?,?,?,?)`,
			e.ProposalID, e.At.UnixNano(), e.Event, e.Detail); err != nil {
			return err
		}
	}
	return nil
}

// AddProposalEvent appends one timeline entry (for example "notified"). Errors: the database's.
func (db *DB) AddProposalEvent(ctx context.Context, e ProposalEvent) error {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	if err := db.Tx(ctx, func(tx *sql.Tx) error { return addProposalEvents(ctx, tx, []ProposalEvent{e}) }); err != nil {
		return fmt.Errorf("store: proposal %s timeline: %w", e.ProposalID, err)
	}
	return nil
}

// GetProposal returns the proposal with id. Errors: ErrNoSuchProposal (wrapped), the database's.
func (db *DB) GetProposal(ctx context.Context, id string) (Proposal, error) {
	p, err := scanProposal(db.SQL.QueryRowContext(ctx, `SELECT `+proposalCols+` FROM proposals WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Proposal{}, fmt.Errorf("%w: %q", ErrNoSuchProposal, id)
	}
	if err != nil {
		return Proposal{}, fmt.Errorf("store: read proposal %s: %w", id, err)
	}
	return p, nil
}

// Proposals returns the proposals in any of states (all when none), oldest first.
func (db *DB) Proposals(ctx context.Context, states ...string) ([]Proposal, error) {
	q := `SELECT ` + proposalCols + ` FROM proposals`
	args := make([]any, len(states))
	if len(states) > 0 {
		q += ` WHERE state IN (` + strings.TrimSuffix(strings.Repeat("?,", len(states)), ",") + `)`
		for i, s := range states {
			args[i] = s
		}
	}
	q += ` ORDER BY created_at, id`
	return queryRows(ctx, db.SQL, "read proposals", func(r *sql.Rows) (Proposal, error) { return scanProposal(r) }, q, args...)
}

// ProposalCosigners returns the co-signers asked for proposal id, by pubkey.
func (db *DB) ProposalCosigners(ctx context.Context, id string) ([]ProposalCosigner, error) {
	return queryRows(ctx, db.SQL, "read proposal cosigners", func(r *sql.Rows) (ProposalCosigner, error) {
		var c ProposalCosigner
		var at int64
		err := r.Scan(&c.ProposalID, &c.Cosigner, &c.BunkerURI, &c.RequestID, &c.State, &c.Detail, &at)
		c.UpdatedAt = time.Unix(0, at).UTC()
		return c, err
	}, `SELECT proposal_id, cosigner, bunker_uri, request_id, state, detail, updated_at FROM proposal_cosigners
		WHERE proposal_id = ? ORDER BY cosigner`, id)
}

// ProposalTimeline returns proposal id's timeline in order.
func (db *DB) ProposalTimeline(ctx context.Context, id string) ([]ProposalEvent, error) {
	return queryRows(ctx, db.SQL, "read proposal timeline", func(r *sql.Rows) (ProposalEvent, error) {
		var e ProposalEvent
		var at int64
		err := r.Scan(&e.ProposalID, &at, &e.Event, &e.Detail)
		e.At = time.Unix(0, at).UTC()
		return e, err
	}, `SELECT proposal_id, at, event, detail FROM proposal_events WHERE proposal_id = ? ORDER BY seq`, id)
}

// MoveProposal moves proposal id to state to with reason, in one transaction with a timeline
// entry named after the state (detail reason), if it is in one of the states from (the rule of
// which states may move is the caller's: package outbound). It returns the proposal as it was
// before, also with ErrProposalState. Errors: ErrNoSuchProposal; ErrProposalState when it is in
// none of from (nothing written); the database's. All wrapped.
func (db *DB) MoveProposal(ctx context.Context, id string, from []string, to, reason string, now time.Time) (Proposal, error) {
	var before Proposal
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		p, err := scanProposal(tx.QueryRowContext(ctx, `SELECT `+proposalCols+` FROM proposals WHERE id = ?`, id))
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %q", ErrNoSuchProposal, id)
		} else if err != nil {
			return err
		}
		before = p
		if !slices.Contains(from, p.State) {
			return fmt.Errorf("%w: %s is %s", ErrProposalState, id, p.State)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE proposals SET state = ?, reason = ?, updated_at = ? WHERE id = ? AND state = ?`,
			to, reason, now.UnixNano(), id, p.State); err != nil {
			return err
		}
		return addProposalEvents(ctx, tx, []ProposalEvent{{ProposalID: id, At: now, Event: to, Detail: reason}})
	})
	if err != nil {
		return before, fmt.Errorf("store: proposal %s → %s: %w", id, to, err)
	}
	return before, nil
}

// LastUsedIndex returns the highest index on the wallet's derivation branch whose script has a
// history (chainwatch's verified status is not null), and false when none has.
func (db *DB) LastUsedIndex(ctx context.Context, branch uint32) (uint32, bool, error) {
	var n sql.NullInt64
	if err := db.SQL.QueryRowContext(ctx, `SELECT max(idx) FROM chainwatch_scripts WHERE branch = ? AND status IS NOT NULL AND status != ''`, branch).Scan(&n); err != nil {
		return 0, false, fmt.Errorf("store: last used index: %w", err)
	}
	return uint32(n.Int64), n.Valid, nil
}

// RenewProposalCosigner gives a co-signer of proposal c.ProposalID a new request id (with its
// state and detail) while the proposal is in state from: after a refusal that depended on the
// co-signer's view of the chain at the time (it had not seen the coin yet), the same request
// would be answered the same way again; nothing was signed under the old id. Errors:
// ErrProposalState, ErrNoSuchProposal (wrapped), the database's.
func (db *DB) RenewProposalCosigner(ctx context.Context, from string, c ProposalCosigner, events ...ProposalEvent) error {
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = time.Now()
	}
	if c.RequestID == "" {
		return fmt.Errorf("store: proposal %s cosigner %s: empty request id", c.ProposalID, c.Cosigner)
	}
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		if err := requireProposalState(ctx, tx, c.ProposalID, from); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE proposal_cosigners SET request_id = ?, state = ?, detail = ?, updated_at = ?
			WHERE proposal_id = ? AND cosigner = ?`, c.RequestID, c.State, c.Detail, c.UpdatedAt.UnixNano(), c.ProposalID, c.Cosigner)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("no co-signer %s on the proposal", c.Cosigner)
		}
		return addProposalEvents(ctx, tx, withProposal(c.ProposalID, c.UpdatedAt, events))
	})
	if err != nil {
		return fmt.Errorf("store: proposal %s cosigner %s: %w", c.ProposalID, c.Cosigner, err)
	}
	return nil
}

// requireProposalState returns nil when proposal id is in state from, else ErrNoSuchProposal or
// ErrProposalState (wrapped, naming the state it is in).
func requireProposalState(ctx context.Context, tx *sql.Tx, id, from string) error {
	var state string
	if err := tx.QueryRowContext(ctx, `SELECT state FROM proposals WHERE id = ?`, id).Scan(&state); errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", ErrNoSuchProposal, id)
	} else if err != nil {
		return err
	}
	if state != from {
		return fmt.Errorf("%w: %s is %s, not %s", ErrProposalState, id, state, from)
	}
	return nil
}
