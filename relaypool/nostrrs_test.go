package relaypool

import (
	"context"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/devnet"
)

// TestNostrRsRelayPublish: the network's nostr-rs-relay 0.8.12 sends no OK for kind 24133.
// Publishing to it and two Node relays with a quorum of all three and a 60 s OK timeout, under
// a 30 s deadline, returns in time — which it could only do by not waiting for nostr-rs-relay's
// OK — with the two Node relays' OKs and nostr-rs-relay's delivery unconfirmed; a subscriber
// listening on nostr-rs-relay alone gets the event.
func TestNostrRsRelayPublish(t *testing.T) {
	n := startRelays(t)
	urls := n.RelayURLs()
	if n.RelaySoftware(0) != devnet.RelayNostrRs || n.RelaySoftware(1) != devnet.RelayNode {
		t.Fatalf("relays run %q, %q; want nostr-rs-relay first, then the Node relay", n.RelaySoftware(0), n.RelaySoftware(1))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	rcpt := freshPubKey(t)
	sub, err := New(urls[:1], Options{Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := collect(sub.Subscribe(ctx, nostr.Filter{Kinds: []int{24133, 1}, Tags: nostr.TagMap{"p": {rcpt}}}))

	const timeout = time.Minute
	pool, err := New(urls, Options{Quorum: len(urls), PublishTimeout: timeout, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// A stored kind 1 probe shows the subscription is open (nostr-rs-relay OKs stored events).
	probe := signed(t, 1, rcpt, "probe")
	assertAllOK(t, pool.Publish(ctx, probe), urls)
	got.await(t, probe.ID, "probe through nostr-rs-relay", 20*time.Second)

	for round := range 3 {
		pctx, pcancel := context.WithTimeout(ctx, timeout/2)
		ev := signed(t, 24133, rcpt, "nip-46")
		res := pool.Publish(pctx, ev)
		late := pctx.Err() != nil
		pcancel()
		if late {
			t.Fatalf("round %d: Publish returned only at the caller's deadline: %+v", round, res)
		}
		if res[0].Err != nil || !res[0].Unconfirmed {
			t.Fatalf("round %d: nostr-rs-relay: %+v, want delivered but unconfirmed", round, res[0])
		}
		for _, r := range res[1:] {
			if r.Err != nil || r.Unconfirmed {
				t.Fatalf("round %d: Node relay %+v, want OK", round, r)
			}
		}
		got.await(t, ev.ID, "kind 24133 through nostr-rs-relay", 20*time.Second)
	}
	if h := pool.Health()[0]; !h.EphemeralUnacked || h.PublishFailed != 0 {
		t.Fatalf("nostr-rs-relay's health %+v, want marked (NIP-11) and no failed publish", h)
	}
}
