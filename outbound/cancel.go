package outbound

// Cancel: the operator abandons a proposal (`cosigner proposals cancel`), from another process
// than the daemon's engine, which sees it at its next step.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/custodyagents/cosigner/store"
)

// ErrProposalFinalized means a cancel came after the proposal was finalized: the transaction
// may already be on the network, so it is not cancelled.
var ErrProposalFinalized = errors.New("outbound: proposal already finalized")

// cancellable are the states an operator may cancel a proposal in: only before it is
// finalized (after that the transaction may already be on the network).
var cancellable = []ProposalState{StateProposed, StateAwaitingCosigners}

// Cancellable reports whether an operator may still cancel a proposal in state s.
func Cancellable(s ProposalState) bool { return slices.Contains(cancellable, s) }

// Mover moves a proposal between states in one guarded transaction: satisfied by *store.DB.
type Mover interface {
	MoveProposal(ctx context.Context, id string, from []string, to, reason string, now time.Time) (store.Proposal, error)
}

// Cancel abandons proposal id with reason if it is Cancellable, in one transaction with its
// "abandoned" timeline entry, and returns it as abandoned. Errors: store.ErrNoSuchProposal;
// ErrProposalFinalized when it is finalized or later; store.ErrProposalState when it already
// ended; the database's. All wrapped.
func Cancel(ctx context.Context, db Mover, id, reason string, now time.Time) (store.Proposal, error) {
	from := make([]string, len(cancellable))
	for i, s := range cancellable {
		from[i] = string(s)
	}
	p, err := db.MoveProposal(ctx, id, from, string(StateAbandoned), reason, now)
	switch {
	case errors.Is(err, store.ErrProposalState) && ProposalState(p.State) == StateAbandoned:
		return store.Proposal{}, fmt.Errorf("outbound: cancel proposal: %w: %s is already abandoned (%s)", store.ErrProposalState, id, p.Reason)
	case errors.Is(err, store.ErrProposalState):
		return store.Proposal{}, fmt.Errorf("outbound: cancel proposal: %w: %s is %s: its transaction may already be on the network, so it cannot be cancelled",
			ErrProposalFinalized, id, p.State)
	case err != nil:
		return store.Proposal{}, fmt.Errorf("outbound: cancel proposal: %w", err)
	}
	p.State, p.Reason, p.UpdatedAt = string(StateAbandoned), reason, now.UTC()
	return p, nil
}
