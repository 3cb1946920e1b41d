package relaypool

// pool_test.go — the Pool against real relays of the local test network (internal/devnet:
// @nostr-relay/core processes), plus helpers shared with hostile_test.go.

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/devnet"
)

// startRelays starts a local test network with three relays (and no blocks) for t.
func startRelays(t *testing.T) *devnet.Network {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the local test network's relays (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), InitialBlocks: -1, Logger: testLogger(t, nil)})
	if err != nil {
		if errors.Is(err, devnet.ErrToolMissing) {
			t.Fatalf("%v (run scripts/install-tools.sh)", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("devnet Close: %v", err)
		}
	})
	return n
}

// logRecorder keeps every log record's message and attributes as one line, for assertions.
type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (r *logRecorder) has(substrs ...string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.lines {
		all := true
		for _, s := range substrs {
			all = all && strings.Contains(l, s)
		}
		if all {
			return true
		}
	}
	return false
}

type recordingHandler struct {
	slog.Handler
	rec   *logRecorder
	attrs []slog.Attr
}

func (h recordingHandler) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	for _, a := range h.attrs {
		b.WriteString(" " + a.String())
	}
	r.Attrs(func(a slog.Attr) bool { b.WriteString(" " + a.String()); return true })
	h.rec.mu.Lock()
	h.rec.lines = append(h.rec.lines, b.String())
	h.rec.mu.Unlock()
	return h.Handler.Handle(ctx, r)
}

func (h recordingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return recordingHandler{h.Handler.WithAttrs(as), h.rec, append(h.attrs[:len(h.attrs):len(h.attrs)], as...)}
}

// testLogger logs to t's output at debug level, and into rec when it is not nil.
func testLogger(t *testing.T, rec *logRecorder) *slog.Logger {
	var h slog.Handler = slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})
	if rec != nil {
		h = recordingHandler{Handler: h, rec: rec}
	}
	return slog.New(h)
}

// collector reads a subscription channel into a list.
type collector struct {
	mu     sync.Mutex
	events []Event
	done   chan struct{} // closed when the channel is closed
}

func collect(ch <-chan Event) *collector {
	c := &collector{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for ev := range ch {
			c.mu.Lock()
			c.events = append(c.events, ev)
			c.mu.Unlock()
		}
	}()
	return c
}

// received is the Received time of the first delivery of id (zero if none).
func (c *collector) received(id string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.events {
		if ev.ID == id {
			return ev.Received
		}
	}
	return time.Time{}
}

func (c *collector) all() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

func (c *collector) count(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ev := range c.events {
		if ev.ID == id {
			n++
		}
	}
	return n
}

func (c *collector) ids() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, ev := range c.events {
		out = append(out, ev.ID)
	}
	return out
}

func (c *collector) relayOf(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ev := range c.events {
		if ev.ID == id {
			return ev.Relay
		}
	}
	return ""
}

// await waits up to d for event id, and fails t if it does not come.
func (c *collector) await(t *testing.T, id, what string, d time.Duration) {
	t.Helper()
	waitFor(t, d, what+" delivered", func() bool { return c.count(id) > 0 })
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// poolGoroutines returns the stacks of live goroutines running the Pool's code.
func poolGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	ours := regexp.MustCompile(`relaypool\.\(\*(Pool|conn|relay|relaySubscription)\)`)
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if ours.MatchString(g) {
			out = append(out, g)
		}
	}
	return out
}

// assertNoPoolGoroutines fails t unless every Pool goroutine is gone (within a short grace
// period, for goroutines that are returning).
func assertNoPoolGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		left := poolGoroutines()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d Pool goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func assertAllOK(t *testing.T, res []PublishResult, urls []string) {
	t.Helper()
	if len(res) != len(urls) {
		t.Fatalf("%d results for %d relays", len(res), len(urls))
	}
	for i, r := range res {
		if r.Relay != urls[i] || r.Err != nil {
			t.Fatalf("result %d = %+v, want OK from %s (all: %+v)", i, r, urls[i], res)
		}
	}
}

// TestPoolAgainstRelays subscribes and publishes through three real relays while one of them
// goes away and comes back.
func TestPoolAgainstRelays(t *testing.T) {
	n := startRelays(t)
	urls := n.RelayURLs()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	before := runtime.NumGoroutine()
	rec := &logRecorder{}
	pool, err := New(urls, Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, PublishTimeout: 3 * time.Second, Quorum: len(urls), Logger: testLogger(t, rec)})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			pool.Close()
		}
	}()
	if got := pool.URLs(); !equal(got, urls) {
		t.Fatalf("URLs() = %v, want %v", got, urls)
	}

	// NIP-46-like traffic: ephemeral kind 24133 p-tagged to the recipient; kind 1 probes with
	// the same tag are stored by the relays and show that a relay's subscription is open.
	rcpt := freshPubKey(t)
	filter := nostr.Filter{Kinds: []int{24133, 1}, Tags: nostr.TagMap{"p": {rcpt}}}
	filterCopy := filter
	got := collect(pool.Subscribe(ctx, filter))

	// Single-relay pools publish to one relay only.
	only := make([]*Pool, len(urls))
	for i, u := range urls {
		only[i], err = New([]string{u}, Options{PublishTimeout: 3 * time.Second, Logger: testLogger(t, nil)})
		if err != nil {
			t.Fatal(err)
		}
		defer only[i].Close()
	}
	probe := func(i int) {
		t.Helper()
		ev := signed(t, 1, rcpt, "probe")
		assertAllOK(t, only[i].Publish(ctx, ev), urls[i:i+1])
		got.await(t, ev.ID, "probe through relay "+urls[i], 20*time.Second)
	}
	for i := range urls {
		probe(i)
	}
	for i, h := range pool.Health() {
		if h.URL != urls[i] || !h.Connected || h.LastError != "" {
			t.Fatalf("Health()[%d] = %+v, want connected %s", i, h, urls[i])
		}
	}

	t.Log("publish on all three relays: three OKs, delivered once")
	e1 := signed(t, 24133, rcpt, "one")
	sent := time.Now()
	assertAllOK(t, pool.Publish(ctx, e1), urls)
	got.await(t, e1.ID, "e1", 10*time.Second)
	if r := got.received(e1.ID); r.Before(sent) || r.After(time.Now()) {
		t.Fatalf("e1 Received = %v, want between its publishing (%v) and now", r, sent)
	}
	time.Sleep(500 * time.Millisecond) // the other two relays' copies arrive meanwhile
	if c := got.count(e1.ID); c != 1 {
		t.Fatalf("e1 delivered %d times, want once", c)
	}
	for _, ev := range got.all() {
		if !ev.Verified() {
			t.Fatalf("event %s out of Subscribe reports Verified() false", ev.ID)
		}
	}
	if (Event{Event: &e1}).Verified() {
		t.Fatal("an Event made outside the pool reports Verified() true")
	}
	if delivered := got.all(); len(delivered) > 0 {
		swapped := delivered[0]
		other := *swapped.Event
		swapped.Event = &other
		if swapped.Verified() {
			t.Fatal("a delivered Event whose Event was replaced still reports Verified() true")
		}
	}

	t.Log("relay 0 stops: its publish fails, the others accept, delivery goes on")
	if err := n.StopRelay(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "relay 0 reported down", func() bool { return !pool.Health()[0].Connected })
	waitFor(t, time.Second, "the loss logged", func() bool { return rec.has("relay connection lost", urls[0], "component=relaypool") })
	e2 := signed(t, 24133, rcpt, "two")
	res := pool.Publish(ctx, e2)
	if res[0].Relay != urls[0] || res[0].Err == nil {
		t.Fatalf("publish to the stopped relay: %+v, want an error", res[0])
	}
	assertAllOK(t, res[1:], urls[1:])
	if ok, err := Published(res); ok != 2 || err == nil || !strings.Contains(err.Error(), urls[0]) {
		t.Fatalf("Published = %d, %v; want 2 and an error naming %s", ok, err, urls[0])
	}
	got.await(t, e2.ID, "e2 with relay 0 down", 10*time.Second)
	if h := pool.Health()[0]; h.Connected || h.LastError == "" {
		t.Fatalf("Health()[0] = %+v, want disconnected with an error", h)
	}

	t.Log("relay 0 comes back: reconnected, and events sent only to it are delivered")
	if err := n.StartRelay(0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "relay 0 reconnected", func() bool {
		h := pool.Health()[0]
		return h.Connected && h.LastError == ""
	})
	probe(0)
	e3 := signed(t, 24133, rcpt, "three, live, relay 0 only")
	assertAllOK(t, only[0].Publish(ctx, e3), urls[:1])
	got.await(t, e3.ID, "e3 through relay 0 only", 10*time.Second)
	if r := got.relayOf(e3.ID); r != urls[0] {
		t.Fatalf("e3 delivered by %s, want %s", r, urls[0])
	}
	assertAllOK(t, pool.Publish(ctx, signed(t, 24133, rcpt, "four")), urls)

	for _, id := range []string{e1.ID, e2.ID, e3.ID} {
		if c := got.count(id); c != 1 {
			t.Fatalf("event %s delivered %d times, want once", id, c)
		}
	}
	if !filterEqual(filter, filterCopy) {
		t.Fatal("Subscribe changed the caller's filter")
	}

	t.Log("Close: the subscription channel closes and no goroutine is left")
	if len(poolGoroutines()) == 0 {
		t.Fatal("no Pool goroutines found while running: the leak check would prove nothing")
	}
	for _, o := range only {
		o.Close()
	}
	pool.Close()
	closed = true
	select {
	case <-got.done:
	case <-time.After(time.Second):
		t.Fatal("subscription channel not closed by Close")
	}
	assertNoPoolGoroutines(t)
	waitFor(t, 5*time.Second, "goroutine count back to where it was", func() bool { return runtime.NumGoroutine() <= before+2 })
	for _, h := range pool.Health() {
		if h.Connected {
			t.Fatalf("after Close, Health says %s is connected", h.URL)
		}
	}

	// After Close: publishes fail with ErrClosed and subscriptions end at once.
	for _, r := range pool.Publish(ctx, e1) {
		if !errors.Is(r.Err, ErrClosed) {
			t.Fatalf("Publish after Close: %+v, want ErrClosed", r)
		}
	}
	if _, ok := <-pool.Subscribe(ctx, filter); ok {
		t.Fatal("Subscribe after Close delivered an event")
	}
	pool.Close() // idempotent
}

// TestForgedEventFromRawClient sends an event with a bad signature to a real relay from a raw
// WebSocket client: the subscriber never gets it.
func TestForgedEventFromRawClient(t *testing.T) {
	n := startRelays(t)
	urls := n.RelayURLs()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := New(urls, Options{MinBackoff: 50 * time.Millisecond, Quorum: len(urls), Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rcpt := freshPubKey(t)
	got := collect(pool.Subscribe(ctx, nostr.Filter{Kinds: []int{1}, Tags: nostr.TagMap{"p": {rcpt}}}))
	probe := signed(t, 1, rcpt, "probe")
	assertAllOK(t, pool.Publish(ctx, probe), urls)
	got.await(t, probe.ID, "probe", 20*time.Second)

	ws, _, err := websocket.Dial(ctx, urls[1], nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	send := func(ev nostr.Event) nostr.OKEnvelope {
		t.Helper()
		b, _ := json.Marshal(nostr.EventEnvelope{Event: ev})
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
		for {
			_, msg, err := ws.Read(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if ok, is := nostr.ParseMessage(msg).(*nostr.OKEnvelope); is && ok.EventID == ev.ID {
				return *ok
			}
		}
	}
	forged := forgedSig(t, signed(t, 1, rcpt, "forged"))
	ok := send(forged)
	t.Logf("relay's answer to the forged event: %+v", ok)
	after := signed(t, 1, rcpt, "after")
	if ok := send(after); !ok.OK {
		t.Fatalf("relay refused a good event: %+v", ok)
	}
	got.await(t, after.ID, "good event after the forged one", 10*time.Second)
	time.Sleep(300 * time.Millisecond)
	if c := got.count(forged.ID); c != 0 {
		t.Fatalf("forged event delivered %d times", c)
	}
}

func equal(a, b []string) bool { return strings.Join(a, "\n") == strings.Join(b, "\n") }

func filterEqual(a, b nostr.Filter) bool {
	return nostr.FilterEqual(a, b) && a.Since == b.Since
}
