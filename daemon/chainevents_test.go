package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"

	"github.com/custodyagents/cosigner/chainwatch"
)

// journal records, in order, what the fake subscribers persisted and what was acknowledged.
type journal struct{ entries []string }

func (j *journal) add(format string, args ...any) {
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
}

// persisting is a fake subscriber that persists every event it handles, except while fail is
// set: then it persists nothing and returns an error.
type persisting struct {
	name string
	j    *journal
	fail bool
}

func (p *persisting) subscriber() ChainSubscriber {
	return ChainSubscriber{Name: p.name, Handle: func(_ context.Context, ev chainwatch.Event) error {
		if p.fail {
			return errors.New(p.name + ": disk full")
		}
		p.j.add("%s persisted %d", p.name, ev.EventID())
		return nil
	}}
}

func newRouter(j *journal, subs ...*persisting) chainRouter {
	r := chainRouter{log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		ack: func(_ context.Context, id uint64) error { j.add("ack %d", id); return nil }}
	for _, s := range subs {
		r.subscribers = append(r.subscribers, s.subscriber())
	}
	return r
}

// TestChainRouterAcksOnlyAfterEverySubscriberPersisted: an event is acknowledged to the watcher
// after every subscriber, in order, returned nil (persisted). A subscriber that fails stops the
// event there: the later subscribers do not see it and it is not acknowledged, so the watcher
// delivers it again (after a restart); redelivered, it goes through all of them and is acked.
func TestChainRouterAcksOnlyAfterEverySubscriberPersisted(t *testing.T) {
	ctx := context.Background()
	j := &journal{}
	ledger, engine := &persisting{name: "ledger", j: j}, &persisting{name: "engine", j: j}
	r := newRouter(j, ledger, engine)

	if !r.route(ctx, chainwatch.NewTip{ID: 1}) {
		t.Fatal("event 1 not acknowledged though every subscriber persisted it")
	}
	engine.fail = true
	if r.route(ctx, chainwatch.FundingConfirmed{ID: 2}) {
		t.Fatal("event 2 acknowledged though the engine failed to persist it")
	}
	engine.fail = false
	if !r.route(ctx, chainwatch.FundingConfirmed{ID: 2}) { // redelivered
		t.Fatal("redelivered event 2 not acknowledged")
	}
	ledger.fail = true
	if r.route(ctx, chainwatch.Spent{ID: 3}) {
		t.Fatal("event 3 acknowledged though the ledger failed to persist it")
	}
	want := []string{
		"ledger persisted 1", "engine persisted 1", "ack 1",
		"ledger persisted 2", // the engine failed: no ack
		"ledger persisted 2", "engine persisted 2", "ack 2",
		// the ledger failed: the engine never saw event 3, and it is not acked
	}
	if !slices.Equal(j.entries, want) {
		t.Fatalf("journal:\n%q\nwant:\n%q", j.entries, want)
	}
}

// TestChainRouterRunDrainsInOrder: run routes every event of the channel, in order, until the
// channel closes; an event a subscriber failed is left unacknowledged and the next is routed.
func TestChainRouterRunDrainsInOrder(t *testing.T) {
	j := &journal{}
	failing := &persisting{name: "exposure", j: j}
	r := newRouter(j, &persisting{name: "log", j: j}, failing)
	// The second subscriber fails event 2 only.
	inner := r.subscribers[1].Handle
	r.subscribers[1].Handle = func(ctx context.Context, ev chainwatch.Event) error {
		failing.fail = ev.EventID() == 2
		return inner(ctx, ev)
	}
	events := make(chan chainwatch.Event, 3)
	events <- chainwatch.FundingSeen{ID: 1}
	events <- chainwatch.Spent{ID: 2}
	events <- chainwatch.NewTip{ID: 3}
	close(events)
	r.run(context.Background(), events)
	want := []string{
		"log persisted 1", "exposure persisted 1", "ack 1",
		"log persisted 2",
		"log persisted 3", "exposure persisted 3", "ack 3",
	}
	if !slices.Equal(j.entries, want) {
		t.Fatalf("journal:\n%q\nwant:\n%q", j.entries, want)
	}
}
