package psbtflow

import (
	"context"
	"time"

	"github.com/custodyagents/cosigner/store"
)

// Store is what the Service keeps, in the store's records (satisfied by *store.DB, whose
// methods document the semantics): the spend ledger and the requests with their holds and
// approvals.
type Store interface {
	Ledger
	Requests
}

// Ledger is the spend ledger: one reservation per signed transaction, moved by the proven chain
// facts (exposure.go). A Service keeps the counted part of it in memory too (exposure_book.go),
// so it must be the only writer of the ledger it is given.
type Ledger interface {
	// Exposure returns what the velocity windows count: every outstanding entry and the
	// confirmed ones that count at or after since.
	Exposure(ctx context.Context, since time.Time) ([]store.Reservation, error)
	// LedgerEntry returns the entry of txid (any state, with its inputs); found is false when
	// there is none.
	LedgerEntry(ctx context.Context, txid string) (r store.Reservation, found bool, err error)
	// LedgerSpending returns the entries (any state) that spend outpoint ("txid:vout").
	LedgerSpending(ctx context.Context, outpoint string) ([]store.Reservation, error)
	Reservations(ctx context.Context, states ...string) ([]store.Reservation, error)
	// SettledAbove returns the confirmed and invalidated entries whose fact is in a block at
	// or above height (those a reorg could undo).
	SettledAbove(ctx context.Context, height int32) ([]store.Reservation, error)
	// SettledFactsAbove is SettledAbove without the inputs.
	SettledFactsAbove(ctx context.Context, height int32) ([]store.Reservation, error)
	ConfirmEntry(ctx context.Context, txid string, height int32, hash string, at time.Time) error
	InvalidateEntry(ctx context.Context, txid, by string, height int32, hash string) error
	ReopenEntry(ctx context.Context, txid string) error
}

// Requests are the signing requests (one row per client and id), their decisions with the
// audit log, and the held requests with their approvals.
type Requests interface {
	BeginSignRequest(ctx context.Context, r store.SignRequest) (existing store.SignRequest, existed bool, err error)
	SignRequestRow(ctx context.Context, client, requestID string) (store.SignRequest, bool, error)
	FindSignRequests(ctx context.Context, client, id string) ([]store.SignRequest, error)
	CountRequests(ctx context.Context, client string, since time.Time) (int, error)
	// FinishDecision writes a decision, its ledger reservation, hold and audit entry in one
	// transaction.
	FinishDecision(ctx context.Context, d store.Decided) error
	AppendDecisionAudit(ctx context.Context, a store.AuditEntry, policyHash, explanation string) error

	FindHold(ctx context.Context, client, requestID string) (store.Hold, error)
	Holds(ctx context.Context, states ...string) ([]store.Hold, error)
	HoldsByRequestID(ctx context.Context, id string) ([]store.Hold, error)
	HoldsForApproval(ctx context.Context, id string) ([]store.Hold, error)
	UnrespondedHolds(ctx context.Context) ([]store.Hold, error)
	CountWaitingHolds(ctx context.Context, client string) (mine, all int, err error)
	MarkHoldResponded(ctx context.Context, client, requestID string) error
	AddApproval(ctx context.Context, a store.Approval) error
	Approvals(ctx context.Context, client, requestID string) ([]store.Approval, error)
}

var _ Store = (*store.DB)(nil)
