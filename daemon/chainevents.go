package daemon

import (
	"context"
	"log/slog"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/psbtflow"
)

// ChainSubscriber is one entry of the daemon's chain-event subscriber list. Handle is called
// with every chain event, in the order the watcher delivers them; it returns nil once what the
// event means to it is persisted, or an error, and then the event is not acknowledged: it is
// delivered again after a restart (chainwatch.Watcher.Events), so Handle must be idempotent.
// Name identifies the subscriber in the log.
type ChainSubscriber struct {
	Name   string
	Handle func(ctx context.Context, ev chainwatch.Event) error
}

// chainSubscribers is the daemon's subscriber list, in order: the log, the spend exposure
// (psbtflow ledger), the automations engine.
func (d *Daemon) chainSubscribers() []ChainSubscriber {
	return []ChainSubscriber{
		{Name: "log", Handle: logChainEvent(d.log.With("component", "chainwatch"))},
		{Name: "spend exposure", Handle: exposureSubscriber(d.flow)},
		// The proposals the event fires are stored before it is acknowledged: a crash in
		// between re-delivers the event, which finds them (one per trigger key).
		{Name: "automations", Handle: d.engine.HandleEvent},
	}
}

// chainRouter hands each chain event to the subscribers in order and acknowledges it to the
// watcher only after every subscriber returned nil. At the first subscriber that fails, the
// event goes no further and is not acknowledged (it comes back after a restart).
type chainRouter struct {
	subscribers []ChainSubscriber
	ack         func(ctx context.Context, id uint64) error // chainwatch.Watcher.Ack
	log         *slog.Logger
}

// run routes the events until the channel closes or ctx ends.
func (r chainRouter) run(ctx context.Context, events <-chan chainwatch.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			r.route(ctx, ev)
		}
	}
}

// route delivers ev to every subscriber and acknowledges it if all of them returned nil; it
// reports whether the event was acknowledged.
func (r chainRouter) route(ctx context.Context, ev chainwatch.Event) bool {
	for _, s := range r.subscribers {
		if err := s.Handle(ctx, ev); err != nil {
			if ctx.Err() == nil {
				r.log.Error("chain event not handled; it is kept for the next start", "subscriber", s.Name, "id", ev.EventID(), "error", err)
			}
			return false
		}
	}
	if err := r.ack(ctx, ev.EventID()); err != nil {
		if ctx.Err() == nil {
			r.log.Warn("could not acknowledge chain event", "id", ev.EventID(), "err", err)
		}
		return false
	}
	return true
}

// exposureSubscriber keeps the spend exposure (psbtflow's ledger) in step with the chain:
// psbtflow.Service.HandleChainEvent notes coins spent by known transactions and moves only the
// entries the event can affect, on the watcher's proven facts (the event itself is never taken
// as a fact).
func exposureSubscriber(flow *psbtflow.Service) func(context.Context, chainwatch.Event) error {
	return flow.HandleChainEvent
}

// logChainEvent reports the wallet's chain events in words; it never fails.
func logChainEvent(log *slog.Logger) func(context.Context, chainwatch.Event) error {
	return func(_ context.Context, ev chainwatch.Event) error {
		switch e := ev.(type) {
		case chainwatch.FundingSeen:
			log.Info("funding seen", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String(), "branch", e.UTXO.Branch, "index", e.UTXO.Index, "height", e.UTXO.Height)
		case chainwatch.FundingConfirmed:
			log.Info("funding confirmed", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String(), "confirmations", e.Confs)
		case chainwatch.Spent:
			by := ""
			if e.SpentBy != nil {
				by = e.SpentBy.String()
			}
			log.Info("coin spent", "outpoint", e.OutPoint.String(), "value", e.UTXO.Value.String(), "spent_by", by)
		case chainwatch.FundingDropped:
			log.Warn("funding dropped (evicted, replaced or reorged out)", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String())
		case chainwatch.FundingReorged:
			log.Warn("funding reorged out: unconfirmed until proven in the new chain", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String(), "was_height", e.UTXO.Height)
		case chainwatch.FundingMatured:
			log.Info("coinbase output matured: spendable from the next block", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String(), "height", e.Tip.Height)
		case chainwatch.FundingImmature:
			log.Warn("coinbase output immature again (reorg): not spendable", "outpoint", e.UTXO.OutPoint.String(), "value", e.UTXO.Value.String())
		case chainwatch.NewTip:
			if e.Reorged {
				log.Warn("chain reorganised", "fork", e.Fork, "height", e.Tip.Height, "hash", e.Tip.Hash.String())
			} else {
				log.Debug("new tip", "height", e.Tip.Height, "hash", e.Tip.Hash.String())
			}
		}
		return nil
	}
}
