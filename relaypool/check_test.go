package relaypool

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// signed returns an event of kind kind p-tagged to pTag, signed by a fresh key.
func signed(t testing.TB, kind int, pTag, content string) nostr.Event {
	t.Helper()
	ev := nostr.Event{
		CreatedAt: nostr.Now(),
		Kind:      kind,
		Tags:      nostr.Tags{{"p", pTag}},
		Content:   content,
	}
	if err := ev.Sign(nostr.GeneratePrivateKey()); err != nil {
		t.Fatal(err)
	}
	return ev
}

func freshPubKey(t testing.TB) string {
	t.Helper()
	pk, err := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// forgedSig is ev with the signature of another event: the id is right, the signature is not.
func forgedSig(t testing.TB, ev nostr.Event) nostr.Event {
	other := signed(t, ev.Kind, "00", "other")
	ev.Sig = other.Sig
	return ev
}

// forgedContent is ev with its content changed after signing: id and signature no longer fit.
func forgedContent(ev nostr.Event) nostr.Event {
	ev.Content += " (changed)"
	return ev
}

func TestCheckEvent(t *testing.T) {
	rcpt := freshPubKey(t)
	good := signed(t, 24133, rcpt, "hello")
	ts := func(d time.Duration) *nostr.Timestamp { x := nostr.Timestamp(time.Now().Add(d).Unix()); return &x }
	filter := nostr.Filter{Kinds: []int{24133}, Tags: nostr.TagMap{"p": {rcpt}}, Since: ts(-time.Hour)}

	withID := forgedContent(good)
	withID.ID = withID.GetID() // id recomputed, signature still over the old id
	badHex := good
	badHex.Sig = "zz"
	badPub := good
	badPub.PubKey = "not-a-key"

	tests := []struct {
		name   string
		filter nostr.Filter
		ev     nostr.Event
		want   error
	}{
		{"valid", filter, good, nil},
		{"valid, empty filter", nostr.Filter{}, good, nil},
		{"forged signature", filter, forgedSig(t, good), ErrBadSignature},
		{"content changed after signing", filter, forgedContent(good), ErrBadEventID},
		{"id recomputed after change", filter, withID, ErrBadSignature},
		{"signature not hex", filter, badHex, ErrBadSignature},
		{"pubkey not a key", nostr.Filter{Kinds: []int{24133}}, badPub, ErrBadEventID},
		{"other kind", nostr.Filter{Kinds: []int{1}}, good, ErrFilterMismatch},
		{"other p tag", nostr.Filter{Tags: nostr.TagMap{"p": {freshPubKey(t)}}}, good, ErrFilterMismatch},
		{"before since", nostr.Filter{Since: ts(time.Hour)}, good, ErrFilterMismatch},
		{"after until", nostr.Filter{Until: ts(-time.Hour)}, good, ErrFilterMismatch},
		{"other author", nostr.Filter{Authors: []string{rcpt}}, good, ErrFilterMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := tc.ev
			err := checkEvent(tc.filter, &ev)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("checkEvent = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	min, max := 500*time.Millisecond, 30*time.Second
	var got []time.Duration
	for d := min; len(got) < 12; d = nextBackoff(d, max) {
		got = append(got, d)
	}
	want := []time.Duration{500 * time.Millisecond, 850 * time.Millisecond, 1445 * time.Millisecond}
	for i, w := range want {
		if got[i] != w {
			t.Fatalf("step %d: %v, want %v (all: %v)", i, got[i], w, got)
		}
	}
	if got[len(got)-1] != max {
		t.Fatalf("backoff does not reach the cap: %v", got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] < got[i-1] || got[i] > max {
			t.Fatalf("backoff not growing up to the cap: %v", got)
		}
	}

	for _, tc := range []struct {
		u    float64
		want time.Duration
	}{{0, 800 * time.Millisecond}, {0.5, time.Second}, {0.999999, 1200 * time.Millisecond}} {
		got := jittered(time.Second, tc.u)
		if d := got - tc.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("jittered(1s, %v) = %v, want %v", tc.u, got, tc.want)
		}
	}
}

func TestLookbackKeepsTheCallersWindow(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tenMin := nostr.Timestamp(now.Add(-10 * time.Minute).Unix())
	recent := nostr.Timestamp(now.Add(-5 * time.Second).Unix())
	if got := lookback(nostr.Filter{Since: &tenMin}, now); got != 10*time.Minute {
		t.Fatalf("lookback with a 10-minute window = %v", got)
	}
	if got := lookback(nostr.Filter{Since: &recent}, now); got != time.Minute {
		t.Fatalf("lookback with a 5-second window = %v, want the 1-minute floor", got)
	}
	if got := lookback(nostr.Filter{}, now); got != time.Minute {
		t.Fatalf("lookback without Since = %v", got)
	}
	later := now.Add(time.Hour)
	got := resumeSince(nostr.Filter{Since: &tenMin}, 10*time.Minute, later)
	if want := nostr.Timestamp(later.Add(-10 * time.Minute).Unix()); *got != want {
		t.Fatalf("resumed Since = %v, want %v (ten minutes before the interruption)", *got, want)
	}
}

func TestResumeSince(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	minuteBefore := nostr.Timestamp(now.Add(-time.Minute).Unix())
	old := nostr.Timestamp(now.Add(-time.Hour).Unix())
	later := nostr.Timestamp(now.Add(-time.Second).Unix())
	for _, tc := range []struct {
		name  string
		since *nostr.Timestamp
		want  nostr.Timestamp
	}{
		{"no since", nil, minuteBefore},
		{"older since moves forward", &old, minuteBefore},
		{"later since is kept", &later, later},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := nostr.Filter{Since: tc.since}
			var before nostr.Timestamp
			if tc.since != nil {
				before = *tc.since
			}
			got := resumeSince(f, time.Minute, now)
			if got == nil || *got != tc.want {
				t.Fatalf("resumeSince = %v, want %v", got, tc.want)
			}
			if tc.since != nil && *tc.since != before {
				t.Fatal("resumeSince changed the filter's own Since")
			}
		})
	}
}

func TestSeenSet(t *testing.T) {
	s := newSeenSet(time.Minute, 100)
	t0 := time.Unix(1_700_000_000, 0)
	if !s.firstSeen("a", t0) {
		t.Fatal("new id reported as seen")
	}
	if s.firstSeen("a", t0.Add(59*time.Second)) || !s.has("a", t0.Add(59*time.Second)) {
		t.Fatal("id within ttl reported as new")
	}
	if s.has("a", t0.Add(2*time.Minute)) || !s.firstSeen("a", t0.Add(2*time.Minute)) {
		t.Fatal("id past ttl reported as seen")
	}

	t.Run("expired ids are forgotten", func(t *testing.T) {
		s := newSeenSet(time.Minute, 1_000_000)
		for i := range 5000 {
			s.firstSeen(fmt.Sprint("old", i), t0)
		}
		later := t0.Add(2 * time.Minute)
		s.firstSeen("x", later)
		if n := s.len(); n != 1 {
			t.Fatalf("after expiry %d ids remain, want 1", n)
		}
		if s.firstSeen("x", later) {
			t.Fatal("live id lost by pruning")
		}
	})

	t.Run("memory is bounded: the oldest go first", func(t *testing.T) {
		const max = 1000
		s := newSeenSet(time.Hour, max)
		for i := range 50 * max {
			s.firstSeen(fmt.Sprint("id", i), t0.Add(time.Duration(i)*time.Millisecond))
			if n := s.len(); n > max {
				t.Fatalf("after %d ids the set holds %d, over its bound %d", i+1, n, max)
			}
		}
		if len(s.order)-s.head > 2*max || cap(s.order) > 8*max {
			t.Fatalf("queue holds %d live entries (cap %d) for a bound of %d", len(s.order)-s.head, cap(s.order), max)
		}
		now := t0.Add(50 * max * time.Millisecond)
		if s.has("id0", now) || !s.has(fmt.Sprint("id", 50*max-1), now) || !s.has(fmt.Sprint("id", 49*max), now) {
			t.Fatal("the bound did not keep the newest ids")
		}
	})

	t.Run("re-seen after expiry keeps its new time", func(t *testing.T) {
		s := newSeenSet(time.Minute, 10)
		s.firstSeen("a", t0)
		s.firstSeen("a", t0.Add(time.Minute)) // expired: recorded again
		s.firstSeen("b", t0.Add(90*time.Second))
		if !s.has("a", t0.Add(90*time.Second)) {
			t.Fatal("the expired first entry took the renewed id with it")
		}
	})
}

func TestSubscriptionID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := newSubscriptionID(0)
		if len(id) != 16 || len(id) > 64 {
			t.Fatalf("subscription id %q: want 16 characters", id)
		}
		if seen[id] {
			t.Fatalf("subscription id %q repeated", id)
		}
		seen[id] = true
	}
	for _, tc := range []struct{ max, want int }{{64, 16}, {16, 16}, {10, 10}, {3, 8}} {
		if id := newSubscriptionID(tc.max); len(id) != tc.want {
			t.Errorf("newSubscriptionID(%d) = %q, want %d characters", tc.max, id, tc.want)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	lo, hi := 500*time.Millisecond, 30*time.Second
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{{0, lo}, {1, lo}, {2, 850 * time.Millisecond}, {3, 1445 * time.Millisecond}, {50, hi}} {
		if got := backoffDelay(tc.failures, lo, hi); got != tc.want {
			t.Errorf("backoffDelay(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
	for _, tc := range []struct {
		failures int
		want     State
	}{{1, StateBackingOff}, {failAfter - 1, StateBackingOff}, {failAfter, StateFailed}, {100, StateFailed}} {
		if got := failedState(tc.failures); got != tc.want {
			t.Errorf("failedState(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

func TestQuorumOf(t *testing.T) {
	for _, tc := range []struct{ q, n, want int }{
		{0, 1, 1}, {0, 2, 2}, {0, 3, 2}, {0, 4, 3}, {0, 5, 3}, // majority by default
		{-1, 3, 2}, {1, 3, 1}, {3, 3, 3}, {5, 3, 3}, {2, 0, 0},
	} {
		if got := quorumOf(tc.q, tc.n); got != tc.want {
			t.Errorf("quorumOf(%d, %d) = %d, want %d", tc.q, tc.n, got, tc.want)
		}
	}
}

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{ErrClosed, false},
		{ErrIdle, false},
		{fmt.Errorf("%w: too big", ErrRelayLimit), false},
		{&rejection{"blocked: not on the list"}, false},
		{&rejection{"invalid: bad signature"}, false},
		{&rejection{"pow: difficulty 20 required"}, false},
		{&rejection{"no prefix at all"}, false},
		{&rejection{"rate-limited: slow down"}, true},
		{&rejection{"error: could not save"}, true},
		{&rejection{"auth-required: who are you"}, true},
		{fmt.Errorf("%w within 7s", ErrNoOK), true},
		{fmt.Errorf("%w (no AuthSigner configured)", ErrAuthRequired), false},
		{fmt.Errorf("%w: relay said: invalid: bad challenge", ErrAuthFailed), true},
		{fmt.Errorf("%w: EOF", ErrConnectionLost), true},
		{fmt.Errorf("%w: next attempt in 3s", ErrBackingOff), true},
		{errors.New("dial tcp: connection refused"), true},
	} {
		if got := retryable(tc.err); got != tc.want {
			t.Errorf("retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	for _, tc := range []struct {
		env  nostr.OKEnvelope
		want bool
	}{
		{nostr.OKEnvelope{OK: true}, true},
		{nostr.OKEnvelope{OK: true, Reason: "duplicate: have it"}, true},
		{nostr.OKEnvelope{OK: false, Reason: "duplicate: already have this event"}, true},
		{nostr.OKEnvelope{OK: false, Reason: "blocked: no"}, false},
	} {
		if got := okAccepted(tc.env); got != tc.want {
			t.Errorf("okAccepted(%+v) = %v, want %v", tc.env, got, tc.want)
		}
	}
	if err := okErr(nostr.OKEnvelope{Reason: "blocked: no"}); !errors.Is(err, ErrRejected) || err.Error() != "relaypool: relay rejected the event: blocked: no" {
		t.Errorf("okErr = %v", err)
	}
}

func TestCheckEventOnce(t *testing.T) {
	ev := signed(t, 1, "00", "x")
	f := nostr.Filter{Kinds: []int{1}}
	seen := newSeenSet(time.Minute, 10)
	now := time.Now()
	if err := checkEventOnce(f, &ev, seen, now); err != nil {
		t.Fatal(err)
	}
	seen.firstSeen(ev.ID, now)
	// A copy with a bad signature but the same id names the same, already verified content.
	forged := forgedSig(t, ev)
	if err := checkEventOnce(f, &forged, seen, now); !errors.Is(err, errDuplicate) {
		t.Fatalf("forged copy of a delivered event: %v, want errDuplicate", err)
	}
	// A forged event not yet seen still fails its signature check, and changed content its id.
	other := forgedSig(t, signed(t, 1, "00", "y"))
	if err := checkEventOnce(f, &other, seen, now); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged new event: %v, want ErrBadSignature", err)
	}
	changed := forgedContent(ev)
	if err := checkEventOnce(f, &changed, seen, now); !errors.Is(err, ErrBadEventID) {
		t.Fatalf("changed content: %v, want ErrBadEventID", err)
	}
}

// testConn is a conn with no socket, for the reader's routing (handle).
func testConn() *conn {
	p := &Pool{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return &conn{
		relay:  &relay{url: "ws://relay.invalid", pool: p},
		auth:   authState{challenged: make(chan struct{})},
		routes: make(map[string]*route),
		oks:    make(map[string][]chan nostr.OKEnvelope),
	}
}

func TestHandleRoutes(t *testing.T) {
	c := testConn()
	rt := c.addRoute("sub1", 2)
	ev := signed(t, 1, "00", "x")
	evMsg := func(sub string) []byte {
		b, err := nostr.EventEnvelope{SubscriptionID: &sub, Event: ev}.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	c.handle(evMsg("other")) // unknown subscription: dropped
	if len(rt.events) != 0 {
		t.Fatal("event for an unknown subscription was routed")
	}
	for range 5 { // more than the buffer: the reader drops, never blocks
		c.handle(evMsg("sub1"))
	}
	if len(rt.events) != 2 {
		t.Fatalf("routed %d events, want the buffer's 2", len(rt.events))
	}
	if got := <-rt.events; got.ID != ev.ID || got.Sig != ev.Sig {
		t.Fatalf("routed event %+v, want %+v", got, ev)
	}

	c.handle([]byte(`["EOSE","sub1"]`))
	c.handle([]byte(`["EOSE","sub1"]`))
	if len(rt.eose) != 1 {
		t.Fatal("EOSE not routed")
	}
	c.handle([]byte(`["CLOSED","sub1","error: shutting down"]`))
	if r := <-rt.closed; r != "error: shutting down" {
		t.Fatalf("CLOSED reason %q", r)
	}

	a, b := c.expectOK(ev.ID), c.expectOK(ev.ID)
	c.handle([]byte(`["OK","` + ev.ID + `",false,"blocked: no"]`))
	for _, ch := range []chan nostr.OKEnvelope{a, b} {
		got := <-ch
		if got.OK || got.Reason != "blocked: no" {
			t.Fatalf("OK routed as %+v", got)
		}
		if err := okErr(got); !errors.Is(err, ErrRejected) {
			t.Fatalf("okErr = %v", err)
		}
	}
	c.forgetOK(ev.ID, a)
	c.forgetOK(ev.ID, b)
	if len(c.oks) != 0 {
		t.Fatalf("OK waiters left: %v", c.oks)
	}

	<-rt.events // empty the buffer
	c.removeRoute("sub1")
	c.handle(evMsg("sub1"))
	if len(rt.events) != 0 {
		t.Fatal("event routed after the subscription was removed")
	}
	// Garbage and other messages are ignored without panicking.
	for _, m := range []string{``, `[`, `["NOTICE","hi"]`, `["AUTH","challenge"]`, `["EVENT"]`, `["OK"]`, `{"a":1}`, `["COUNT","x",{"count":1}]`} {
		c.handle([]byte(m))
	}
}
