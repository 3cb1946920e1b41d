package signer

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
)

// An authorized client over its rate limit stays limited however many fresh pubkeys send
// events meanwhile: strangers' buckets live in their own LRU and never evict a client's.
// (Before: one map of 20,000 buckets, cleared when full — 20,000 fresh keys reset every
// client's bucket.)
func TestRateLimitSurvivesFreshKeyFlood(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := newRateLimits(1, 5)
	const client = "c1"
	for i := range 5 {
		if ok, _ := r.allowClient(client, now); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if ok, answer := r.allowClient(client, now); ok || !answer {
		t.Fatalf("over the limit: allowed %v, answered %v", ok, answer)
	}
	for i := range 20_000 {
		if !r.allowUnknown(fmt.Sprintf("fresh-%05d", i), now) {
			t.Fatalf("fresh key %d refused its first event", i)
		}
	}
	if ok, answer := r.allowClient(client, now); ok || answer {
		t.Fatalf("after 20,000 fresh keys the over-limit client is allowed %v (answered %v)", ok, answer)
	}
	if n := r.unknown.Len(); n != maxUnknownBuckets {
		t.Fatalf("%d stranger buckets kept, want the LRU's %d", n, maxUnknownBuckets)
	}
	// One token a second later, and the rate_limited answers are spaced a second apart.
	now = now.Add(time.Second)
	if ok, _ := r.allowClient(client, now); !ok {
		t.Fatal("refill after a second not applied")
	}
	if ok, answer := r.allowClient(client, now); ok || !answer {
		t.Fatalf("over the limit again: allowed %v, answered %v", ok, answer)
	}
}

// The clients' map sweeps only buckets that have refilled (carry no debt): an indebted client
// survives any number of other clients coming and going.
func TestClientBucketsSweepOnlyFullOnes(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := newRateLimits(1, 2)
	for i := range 2 * maxClientBuckets { // one token each: full again a second later
		r.allowClient(fmt.Sprintf("early-%05d", i), now)
	}
	now = now.Add(10 * time.Second)
	r.allowClient("debtor", now)
	r.allowClient("debtor", now)
	for i := range 2 * maxClientBuckets {
		r.allowClient(fmt.Sprintf("late-%05d", i), now)
	}
	if _, ok := r.clients["early-00000"]; ok || len(r.clients) > 2*maxClientBuckets+1 {
		t.Fatalf("%d client buckets kept; the refilled ones were not swept", len(r.clients))
	}
	if ok, _ := r.allowClient("debtor", now); ok {
		t.Fatal("the indebted client's bucket was reset")
	}
}

// A key that becomes a client brings its stranger bucket (and debt) along.
func TestStrangerDebtCarriesOver(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	r := newRateLimits(1, 2)
	r.allowUnknown("k", now)
	r.allowUnknown("k", now)
	if ok, _ := r.allowClient("k", now); ok {
		t.Fatal("the new client's debt was forgotten")
	}
}

// The in-memory replay set keeps at most its size, least recently added forgotten first, and
// refuses a replay within the ttl.
func TestSeenIDsBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := newSeenIDs(time.Minute, 3)
	for _, id := range []string{"a", "b", "c"} {
		if !s.first(id, now) {
			t.Fatalf("%s not new", id)
		}
	}
	if s.first("b", now.Add(time.Second)) {
		t.Fatal("replay within the ttl accepted")
	}
	s.first("d", now)
	if s.seen.Len() != 3 || s.seen.Contains("a") {
		t.Fatalf("set not bounded: %v", s.seen.Keys())
	}
	if !s.first("c", now.Add(2*time.Minute)) {
		t.Fatal("an id past the ttl still refused")
	}
}

// A method handler that panics is answered "internal: …" (no panic value, no stack) and the
// remote signer keeps serving the same client. (Before: the panic ended the process.)
func TestPanickingHandlerAnswersInternal(t *testing.T) {
	h := newHarness(t)
	if err := h.rs.Handle("boom", func(ctx context.Context, r nip46.Call) (string, error) {
		var m map[string]int
		m["secret-"+r.Params[0]] = 1 // assignment to a nil map: a runtime panic
		return "", nil
	}); err != nil {
		t.Fatal(err)
	}
	h.connectWith("boom", "")
	r := h.one(h.request("b1", "boom", "hunter2"))
	if !strings.HasPrefix(r.Error, "internal: ") || strings.Contains(r.Error, "hunter2") || strings.Contains(r.Error, "nil map") ||
		strings.Contains(r.Error, "goroutine") || r.Result != "" {
		t.Fatalf("panicking handler answered %+v", r)
	}
	if r := h.one(h.request("b2", "ping")); r.Result != "pong" {
		t.Fatalf("ping after the panic: %+v", r)
	}
}

// Over its limit, a client gets one rate_limited answer per second; the rest are dropped
// unanswered (each answer is a signed event on every relay) and counted.
func TestRateLimitedAnswersSpaced(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := newHarness(t, WithRateLimit(1, 1), WithClock(func() time.Time { return now }))
	ev := func(id, method string, params ...string) *nostr.Event {
		e := h.request(id, method, params...)
		e.CreatedAt = nostr.Timestamp(now.Unix())
		e.Sign(h.clientSK)
		return e
	}
	h.db.AddConnectSecret(context.Background(), "s")
	if r := h.one(ev("1", "connect", h.rs.PublicKey(), "s")); r.Result != "ack" {
		t.Fatal(r)
	}
	if r := h.one(ev("2", "ping")); !strings.HasPrefix(r.Error, "rate_limited: ") {
		t.Fatalf("first request over the limit: %+v", r)
	}
	for i := range 5 {
		if rs := h.send(ev(fmt.Sprint("x", i), "ping")); len(rs) != 0 {
			t.Fatalf("request %d over the limit answered: %+v", i, rs)
		}
	}
	if d := h.rs.Drops(); d.OverLimit != 5 {
		t.Fatalf("drops %+v", d)
	}
}
