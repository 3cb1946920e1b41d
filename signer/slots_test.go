package signer

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
)

// stuckPool delivers the events the test feeds it and holds every Publish until released (a
// relay that is slow to answer OK), whatever the caller's context says.
type stuckPool struct {
	events  chan relaypool.Event
	release chan struct{}
	done    chan struct{} // one value per Publish that returned accepted

	mu        sync.Mutex
	published []nostr.Event
}

func (p *stuckPool) Subscribe(ctx context.Context, f nostr.Filter) <-chan relaypool.Event {
	return p.events
}

func (p *stuckPool) Publish(ctx context.Context, ev nostr.Event) []relaypool.PublishResult {
	<-p.release // even past ctx's deadline: the test decides when the relays answer
	p.mu.Lock()
	p.published = append(p.published, ev)
	p.mu.Unlock()
	p.done <- struct{}{}
	return []relaypool.PublishResult{{Relay: "stuck://"}}
}

func (p *stuckPool) URLs() []string { return []string{"ws://127.0.0.1:1"} }

// TestSlowRelaysDoNotHoldHandling: while the relays have not confirmed any answer, the remote
// signer goes on handling requests — more than its maxHandling handling slots — because an
// answer waiting for the relays gives its handling slot up; once the relays answer, every
// request has been answered.
func TestSlowRelaysDoNotHoldHandling(t *testing.T) {
	h := newHarness(t)
	h.connectWith("sign_psbt", "")
	pool := &stuckPool{events: make(chan relaypool.Event), release: make(chan struct{}), done: make(chan struct{}, 64)}
	rs, err := NewRemoteSigner(h.rs.sk, pool, h.db, quietLog(), WithRateLimit(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	called := make(chan string, 64)
	if err := rs.Handle(nip46.MethodSignPSBT, func(_ context.Context, r nip46.Call) (string, error) {
		called <- r.ID
		return "signed", nil
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { rs.Run(ctx); close(ran) }()
	defer func() { cancel(); close(pool.release); <-ran }()

	n := maxHandling + 8
	go func() { // the relay delivering requests; owned by the test (it ends once all are taken)
		for i := range n {
			select {
			case pool.events <- relaypool.Event{Event: h.request(fmt.Sprint("r", i), "sign_psbt", "cHNidP8"), Relay: "stuck://"}:
			case <-ctx.Done():
				return
			}
		}
	}()
	// A bound only for the failure: without the trade of slots the count stops at maxHandling.
	deadline := time.After(time.Minute)
	for got := 0; got < n; got++ {
		select {
		case <-called:
		case <-deadline:
			t.Fatalf("only %d of %d requests were handled while their answers waited for the relays", got, n)
		}
	}
	for range n { // the relays answer now
		pool.release <- struct{}{}
		<-pool.done
	}
	pool.mu.Lock()
	defer pool.mu.Unlock()
	seen := map[string]bool{}
	for _, ev := range pool.published {
		seen[ev.ID] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct answers published, want %d", len(seen), n)
	}
}
