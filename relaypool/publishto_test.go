package relaypool

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// TestPublishToExtraRelays publishes through a one-relay pool to two more real relays named by
// the caller: each gets the event, the connections are bounded, and they end when idle.
func TestPublishToExtraRelays(t *testing.T) {
	n := startRelays(t)
	urls := n.RelayURLs()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := New(urls[:1], Options{PublishTimeout: 5 * time.Second, ExtraRelayLimit: 2, ExtraRelayIdle: 300 * time.Millisecond, Quorum: 10, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// A reader on all three relays, to see where events were stored.
	reader, err := New(urls, Options{Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	rcpt := freshPubKey(t)

	t.Log("pool relay, two extra relays, a duplicate of the pool's relay, a bad URL")
	ev := signed(t, 1, rcpt, "to the client's relays")
	res := pool.PublishTo(ctx, ev, []string{urls[1], urls[0], urls[2] + "/", urls[1], "http://relay.example"})
	if len(res) != 4 {
		t.Fatalf("PublishTo gave %d results, want 4 (pool, two extras, bad URL): %+v", len(res), res)
	}
	assertAllOK(t, res[:3], urls)
	if res[3].Relay != "http://relay.example" || !errors.Is(res[3].Err, ErrBadRelayURL) {
		t.Fatalf("result for the bad URL = %+v, want ErrBadRelayURL", res[3])
	}
	if got, want := pool.extraURLs(), slices.Sorted(slices.Values(urls[1:])); !equal(got, want) {
		t.Fatalf("extra relays kept = %v, want %v", got, want)
	}
	for _, u := range urls {
		one, err := New([]string{u}, Options{Logger: testLogger(t, nil)})
		if err != nil {
			t.Fatal(err)
		}
		got := collect(one.Subscribe(ctx, nostr.Filter{IDs: []string{ev.ID}}))
		got.await(t, ev.ID, "event stored on relay "+u, 10*time.Second)
		one.Close()
	}

	t.Log("idle extra relays are disconnected and forgotten")
	pool.extra.mu.Lock()
	var extras []*relay
	for _, e := range pool.extra.byURL {
		extras = append(extras, e.r)
	}
	pool.extra.mu.Unlock()
	waitFor(t, 10*time.Second, "idle extra relays retired", func() bool { return len(pool.extraURLs()) == 0 })
	for _, r := range extras {
		waitFor(t, 10*time.Second, "connection to "+r.url+" closed", func() bool {
			h := r.health()
			return !h.Connected && strings.Contains(h.LastError, ErrIdle.Error())
		})
	}

	t.Log("at most ExtraRelayLimit extra relays at once: with a limit of 1, the second is refused")
	small, err := New(urls[:1], Options{PublishTimeout: 5 * time.Second, ExtraRelayLimit: 1, Quorum: 10, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer small.Close()
	ev2 := signed(t, 1, rcpt, "bounded")
	res = small.PublishTo(ctx, ev2, urls[1:])
	assertAllOK(t, res[:2], urls[:2])
	if res[2].Relay != urls[2] || !errors.Is(res[2].Err, ErrTooManyRelays) {
		t.Fatalf("third result = %+v, want ErrTooManyRelays for %s", res[2], urls[2])
	}
	t.Log("the idle one makes room for the next")
	// PublishTo returns at the quorum's answers; each relay's delivery releases its relay
	// outside the pool when it ends, which may be just after that (a loaded machine showed
	// it): the relay is idle only once released.
	waitFor(t, 10*time.Second, "the first publish released its relay outside the pool", func() bool {
		small.extra.mu.Lock()
		defer small.extra.mu.Unlock()
		for _, e := range small.extra.byURL {
			if e.users != 0 {
				return false
			}
		}
		return true
	})
	assertAllOK(t, small.PublishTo(ctx, ev2, urls[2:]), []string{urls[0], urls[2]})
	if got := small.extraURLs(); !equal(got, urls[2:]) {
		t.Fatalf("extra relays kept = %v, want %v", got, urls[2:])
	}
	// Publish is unchanged: the pool's relays only.
	assertAllOK(t, small.Publish(ctx, ev2), urls[:1])

	pool.Close()
	small.Close()
	reader.Close()
	assertNoPoolGoroutines(t)
	for _, r := range pool.PublishTo(ctx, ev, urls[1:2]) {
		if !errors.Is(r.Err, ErrClosed) {
			t.Fatalf("PublishTo after Close: %+v, want ErrClosed", r)
		}
	}
}
