package outbound

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/store"
)

// TestCancel: an operator's cancel abandons a proposal only before it is finalized, in the
// store's one guarded transaction; later it is refused and nothing changes.
func TestCancel(t *testing.T) {
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	now := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		state   ProposalState
		wantErr error
	}{
		{StateProposed, nil},
		{StateAwaitingCosigners, nil},
		{StateFinalized, ErrProposalFinalized},
		{StateBroadcast, ErrProposalFinalized},
		{StateConfirmed, ErrProposalFinalized},
		{StateAbandoned, store.ErrProposalState},
	} {
		t.Run(string(tc.state), func(t *testing.T) {
			id := "p-" + string(tc.state)
			if _, _, err := db.CreateProposal(ctx, store.Proposal{ID: id, Automation: "a", TriggerKey: id, State: string(tc.state), Reason: "x"}, ""); err != nil {
				t.Fatal(err)
			}
			p, err := Cancel(ctx, db, id, ReasonCancelled, now)
			if !errors.Is(err, tc.wantErr) || tc.wantErr == nil && err != nil {
				t.Fatalf("cancel from %s: %v, want %v", tc.state, err, tc.wantErr)
			}
			got, _ := db.GetProposal(ctx, id)
			if tc.wantErr == nil {
				if p.State != string(StateAbandoned) || got.State != string(StateAbandoned) || got.Reason != ReasonCancelled {
					t.Fatalf("after cancel: %+v", got)
				}
			} else if got.State != string(tc.state) {
				t.Fatalf("refused cancel changed the state to %s", got.State)
			}
		})
	}
	if _, err := Cancel(ctx, db, "missing", "x", now); !errors.Is(err, store.ErrNoSuchProposal) {
		t.Fatalf("missing: %v", err)
	}
}
