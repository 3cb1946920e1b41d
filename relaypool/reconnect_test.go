package relaypool

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// TestRestartedRelay kills and restarts a real relay of the local test network:
//   - a subscription resumes with Since and receives an event stored on the relay while the
//     Pool was not connected to it (nothing missed);
//   - a publish that reached its quorum without that relay goes on in the background and lands
//     on it once it is back.
func TestRestartedRelay(t *testing.T) {
	n := startRelays(t)
	urls := n.RelayURLs()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rcpt := freshPubKey(t)

	sub, err := New(urls[:1], Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	got := collect(sub.Subscribe(ctx, nostr.Filter{Kinds: []int{1}, Tags: nostr.TagMap{"p": {rcpt}}}))
	writer, err := New(urls[:1], Options{MinBackoff: 50 * time.Millisecond, PublishTimeout: 5 * time.Second, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	probe := signed(t, 1, rcpt, "probe")
	assertAllOK(t, writer.Publish(ctx, probe), urls[:1])
	got.await(t, probe.ID, "probe", 10*time.Second)

	// A pool of all three relays that needs one OK: it returns without relay 0.
	pool, err := New(urls, Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PublishTimeout: 3 * time.Second, Quorum: 1, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()

	t.Log("relay 0 stops; the subscriber is kept from reconnecting until told")
	r := sub.relays[0]
	r.mu.Lock()
	r.holdUntil = time.Now().Add(time.Hour)
	r.mu.Unlock()
	if err := n.StopRelay(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "subscriber sees relay 0 down", func() bool {
		s := sub.Health()[0].State
		return s == StateBackingOff || s == StateFailed
	})

	t.Log("a publish while relay 0 is down reaches its quorum of 1 on the others")
	late := signed(t, 1, rcpt, "for relay 0 once it is back")
	res := pool.Publish(ctx, late)
	if ok, _ := Published(res); ok < 1 || res[0].Err == nil {
		t.Fatalf("Publish with relay 0 down = %+v, want at least one OK and none from relay 0", res)
	}

	if err := n.StartRelay(0); err != nil {
		t.Fatal(err)
	}
	missed := signed(t, 1, rcpt, "stored while the subscriber was away")
	assertAllOK(t, writer.Publish(ctx, missed), urls[:1])
	if h := sub.Health()[0]; h.Connected {
		t.Fatalf("subscriber reconnected during the hold: %+v", h)
	}

	t.Log("the subscriber reconnects: the REQ with Since brings the stored event")
	r.kick()
	got.await(t, missed.ID, "event stored while the subscriber was away", 20*time.Second)

	t.Log("the background retry puts the quorum publish on relay 0 too")
	got.await(t, late.ID, "the publish retried onto relay 0", 30*time.Second)
	if rl := got.relayOf(late.ID); rl != urls[0] {
		t.Fatalf("late event delivered by %s, want relay 0 (%s)", rl, urls[0])
	}
	waitFor(t, 10*time.Second, "relay 0's publish counted", func() bool { return pool.Health()[0].Published >= 1 })
	h := pool.Health()[0]
	if h.State != StateConnected || h.PublishFailed < 1 || h.Connects != 1 {
		t.Fatalf("relay 0 health after the retry: %+v", h)
	}
	for _, id := range []string{probe.ID, missed.ID, late.ID} {
		if c := got.count(id); c != 1 {
			t.Fatalf("event %s delivered %d times, want once", id, c)
		}
	}
}

// TestStreamWhileRelaysRestart publishes a stream of NIP-46-like ephemeral events through three
// real relays to a subscriber while two of the relays are killed and later restarted: every
// event that reached at least one relay is delivered, exactly once.
func TestStreamWhileRelaysRestart(t *testing.T) {
	n := startRelays(t)
	urls := n.RelayURLs()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opts := Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PublishTimeout: 5 * time.Second, Logger: testLogger(t, nil)}
	sub, err := New(urls, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	pub, err := New(urls, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	rcpt := freshPubKey(t)
	got := collect(sub.Subscribe(ctx, nostr.Filter{Kinds: []int{24133, 1}, Tags: nostr.TagMap{"p": {rcpt}}}))
	for i := range urls { // every relay's subscription is open: a stored probe comes through each
		one, err := New(urls[i:i+1], opts)
		if err != nil {
			t.Fatal(err)
		}
		probe := signed(t, 1, rcpt, "probe")
		assertAllOK(t, one.Publish(ctx, probe), urls[i:i+1])
		got.await(t, probe.ID, "probe on "+urls[i], 20*time.Second)
		one.Close()
	}

	const total, killAt, restartAt = 90, 30, 60
	var sent []string
	for i := range total {
		switch i {
		case killAt:
			t.Log("relays 0 and 1 stop")
			for _, k := range []int{0, 1} {
				if err := n.StopRelay(k); err != nil {
					t.Fatal(err)
				}
			}
		case restartAt:
			t.Log("relays 0 and 1 start again")
			for _, k := range []int{0, 1} {
				if err := n.StartRelay(k); err != nil {
					t.Fatal(err)
				}
			}
		}
		ev := signed(t, 24133, rcpt, "request")
		if ok, err := Published(pub.Publish(ctx, ev)); ok == 0 {
			t.Fatalf("event %d reached no relay: %v", i, err)
		}
		sent = append(sent, ev.ID)
	}
	t.Log("all published; waiting for delivery")
	for i, id := range sent {
		got.await(t, id, fmt.Sprint("event ", i), 30*time.Second)
	}
	waitFor(t, 30*time.Second, "subscriber reconnected to every relay", func() bool {
		for _, h := range sub.Health() {
			if h.State != StateConnected {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second) // late copies from the restarted relays would arrive meanwhile
	for i, id := range sent {
		if c := got.count(id); c != 1 {
			t.Fatalf("event %d delivered %d times, want once", i, c)
		}
	}
	for i, h := range sub.Health()[:2] {
		if h.Disconnects < 1 || h.Connects < 2 {
			t.Fatalf("relay %d health %+v: want a reconnect counted", i, h)
		}
	}
}
