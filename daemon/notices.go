package daemon

import (
	"context"
	"log/slog"

	"github.com/custodyagents/cosigner/notify"
	"github.com/custodyagents/cosigner/outbound"
)

// dmNotifier adapts NIP-17 direct messages (notify.DM) to the automations engine's
// outbound.Notifier: each notice is one message to the operators (COSIGNER_NOTIFY_NPUB), queued
// for delivery so that the engine never waits for the relays.
type dmNotifier struct {
	dm  *notify.DM
	log *slog.Logger
}

func (n dmNotifier) Notify(ctx context.Context, x outbound.Notice) {
	if err := n.dm.Send(ctx, "cosigner: "+x.Text); err != nil {
		n.log.Warn("operator notice not sent", "kind", x.Kind, "proposal", x.ProposalID, "error", err)
	}
}
