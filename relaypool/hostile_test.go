package relaypool

// hostile_test.go — a relay that breaks the rules on purpose. Real relays check signatures and
// filters themselves, so only a misbehaving (or malicious) relay can show that the Pool checks
// them too: forged events, events for unknown or stale subscription ids, events outside the
// filter, oversized messages, CLOSED, and OK false or no OK at all.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nbd-wtf/go-nostr"
)

type hostileRelay struct {
	srv   *httptest.Server
	url   string
	conns chan *hostileConn // each accepted connection, in order
	stop  chan struct{}
	wg    sync.WaitGroup
	// silent makes new connections never read: no message and no ping is answered.
	silent atomic.Bool
}

type hostileConn struct {
	ws     *websocket.Conn
	reqs   chan nostr.ReqEnvelope
	events chan nostr.Event
	closes chan string
}

type hostileReq = nostr.ReqEnvelope

func startHostileRelay(t *testing.T) *hostileRelay {
	h := &hostileRelay{conns: make(chan *hostileConn, 16), stop: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		ws.SetReadLimit(1 << 20)
		hc := &hostileConn{ws: ws, reqs: make(chan nostr.ReqEnvelope, 64), events: make(chan nostr.Event, 64), closes: make(chan string, 64)}
		h.wg.Add(1)
		defer h.wg.Done()
		stop := context.AfterFunc(ctxOf(h.stop), func() { ws.CloseNow() })
		defer stop()
		defer ws.CloseNow()
		h.conns <- hc
		if h.silent.Load() {
			<-h.stop
			return
		}
		for {
			_, msg, err := ws.Read(context.Background())
			if err != nil {
				return
			}
			switch env := nostr.ParseMessage(msg).(type) {
			case *nostr.ReqEnvelope:
				hc.reqs <- *env
			case *nostr.EventEnvelope:
				hc.events <- env.Event
			case *nostr.CloseEnvelope:
				hc.closes <- string(*env)
			}
		}
	}))
	h.url = "ws" + strings.TrimPrefix(h.srv.URL, "http")
	t.Cleanup(func() {
		close(h.stop)
		h.wg.Wait()
		h.srv.Close()
	})
	return h
}

// ctxOf is a context cancelled when done is closed.
func ctxOf(done chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-done; cancel() }()
	return ctx
}

func (h *hostileRelay) next(t *testing.T) *hostileConn {
	t.Helper()
	select {
	case hc := <-h.conns:
		return hc
	case <-time.After(10 * time.Second):
		t.Fatal("no connection to the hostile relay")
		return nil
	}
}

func (hc *hostileConn) req(t *testing.T) hostileReq {
	t.Helper()
	select {
	case r := <-hc.reqs:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no REQ at the hostile relay")
		return hostileReq{}
	}
}

func (hc *hostileConn) event(t *testing.T) nostr.Event {
	t.Helper()
	select {
	case ev := <-hc.events:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no EVENT at the hostile relay")
		return nostr.Event{}
	}
}

func (hc *hostileConn) send(t *testing.T, msg ...any) {
	t.Helper()
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	hc.sendRaw(t, b)
}

func (hc *hostileConn) sendRaw(t *testing.T, b []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hc.ws.Write(ctx, websocket.MessageText, b); err != nil {
		t.Fatalf("hostile relay write: %v", err)
	}
}

func TestHostileRelay(t *testing.T) {
	h := startHostileRelay(t)
	rec := &logRecorder{}
	pool, err := New([]string{h.url}, Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PublishTimeout: 300 * time.Millisecond, Logger: testLogger(t, rec)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	url := pool.URLs()[0]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rcpt := freshPubKey(t)
	got := collect(pool.Subscribe(ctx, nostr.Filter{Kinds: []int{24133}, Tags: nostr.TagMap{"p": {rcpt}}}))

	hc := h.next(t)
	r1 := hc.req(t)
	if len(r1.Filters) != 1 || r1.Filters[0].Since != nil || !r1.Filters[0].Matches(ptr(signed(t, 24133, rcpt, ""))) {
		t.Fatalf("first REQ %v: want the caller's filter", r1)
	}

	t.Log("only valid events under a known subscription id that match the filter get through, once")
	g1, g2 := signed(t, 24133, rcpt, "good 1"), signed(t, 24133, rcpt, "good 2")
	bad := map[string]nostr.Event{
		"unknown subscription": signed(t, 24133, rcpt, "unknown sub"),
		"forged signature":     forgedSig(t, signed(t, 24133, rcpt, "forged sig")),
		"changed content":      forgedContent(signed(t, 24133, rcpt, "changed")),
		"other kind":           signed(t, 1, rcpt, "kind 1"),
		"other recipient":      signed(t, 24133, freshPubKey(t), "not for rcpt"),
	}
	hc.send(t, "EVENT", "nobody", bad["unknown subscription"])
	hc.send(t, "EVENT", r1.SubscriptionID, bad["forged signature"])
	hc.send(t, "EVENT", r1.SubscriptionID, bad["changed content"])
	hc.send(t, "EVENT", r1.SubscriptionID, bad["other kind"])
	hc.send(t, "EVENT", r1.SubscriptionID, bad["other recipient"])
	hc.send(t, "EVENT", r1.SubscriptionID, g1)
	hc.send(t, "EVENT", r1.SubscriptionID, g1)
	hc.send(t, "EOSE", r1.SubscriptionID)
	hc.send(t, "EVENT", r1.SubscriptionID, g2) // in order after all the above
	got.await(t, g2.ID, "g2", 5*time.Second)
	if ids := got.ids(); len(ids) != 2 || ids[0] != g1.ID || ids[1] != g2.ID {
		badIDs := map[string]string{}
		for name, ev := range bad {
			badIDs[name] = ev.ID
		}
		t.Fatalf("delivered %v, want only g1 %s then g2 %s (bad ones: %v)", ids, g1.ID, g2.ID, badIDs)
	}
	for _, reason := range []string{ErrBadSignature.Error(), ErrBadEventID.Error()} {
		if !rec.has("dropped event", reason, url) {
			t.Errorf("no log line for a dropped event (%s)", reason)
		}
	}

	t.Log("publish: OK false is the relay's reason, silence is ErrNoOK")
	p1, p2 := signed(t, 24133, rcpt, "publish 1"), signed(t, 24133, rcpt, "publish 2")
	done := make(chan []PublishResult, 1)
	go func() { done <- pool.Publish(ctx, p1) }()
	if ev := hc.event(t); ev.ID != p1.ID || ev.Sig != p1.Sig {
		t.Fatalf("relay got %v, want p1", ev)
	}
	hc.send(t, "OK", p1.ID, false, "blocked: not today")
	if res := <-done; !errors.Is(res[0].Err, ErrRejected) || !strings.Contains(res[0].Err.Error(), "blocked: not today") || res[0].Relay != url {
		t.Fatalf("Publish = %+v, want ErrRejected with the relay's reason", res)
	}
	res := pool.Publish(ctx, p2)
	if !errors.Is(res[0].Err, ErrNoOK) {
		t.Fatalf("Publish with no OK = %+v, want ErrNoOK", res)
	}
	hc.event(t)

	t.Log("a message over 512 KiB drops the connection; it is re-dialed and the REQ re-sent with Since")
	hc.sendRaw(t, []byte(`["NOTICE","`+strings.Repeat("x", 520<<10)+`"]`))
	hc2 := h.next(t)
	r2 := hc2.req(t)
	if r2.SubscriptionID == r1.SubscriptionID {
		t.Fatal("same subscription id re-used for a new REQ")
	}
	if s := r2.Filters[0].Since; s == nil || s.Time().Before(time.Now().Add(-2*time.Minute)) || s.Time().After(time.Now()) {
		t.Fatalf("re-sent REQ has Since %v, want about a minute ago", s)
	}
	// The loss is logged by the old connection's goroutine, which may run after the re-dial.
	if !eventually(10*time.Second, func() bool { return rec.has("relay connection lost", ErrMessageTooLarge.Error(), url) }) {
		rec.mu.Lock()
		lines := slices.Clone(rec.lines)
		rec.mu.Unlock() // the Pool's goroutines still log while Close stops them
		t.Fatalf("dropping the connection for a large message was not logged with its reason; log: %q", lines)
	}

	t.Log("CLOSED from the relay is retried on the same connection")
	hc2.send(t, "CLOSED", r2.SubscriptionID, "error: shutting down idle subscriptions")
	r3 := hc2.req(t)
	if r3.SubscriptionID == r2.SubscriptionID {
		t.Fatal("same subscription id re-used after CLOSED")
	}
	select {
	case <-h.conns:
		t.Fatal("a new connection was dialed for CLOSED")
	default:
	}
	if !rec.has("relay closed the subscription", "error: shutting down idle subscriptions") {
		t.Fatal("CLOSED not logged")
	}
	g3, stale, g4 := signed(t, 24133, rcpt, "good 3"), signed(t, 24133, rcpt, "stale"), signed(t, 24133, rcpt, "good 4")
	hc2.send(t, "EVENT", r3.SubscriptionID, g3)
	hc2.send(t, "EVENT", r2.SubscriptionID, stale)
	hc2.send(t, "EVENT", r1.SubscriptionID, stale)
	hc2.send(t, "EVENT", r3.SubscriptionID, g4)
	got.await(t, g4.ID, "g4", 5*time.Second)
	if ids := got.ids(); len(ids) != 4 || ids[2] != g3.ID || ids[3] != g4.ID {
		t.Fatalf("delivered %v, want g1 g2 g3 g4", ids)
	}

	// (The lost connection above is paced by the relay's own backoff, not the subscription's.)
	t.Log("CLOSED after EOSE still grows the backoff (50ms after the first CLOSED, then 85ms ± 20%)")
	hc2.send(t, "EOSE", r3.SubscriptionID)
	closedAt := time.Now()
	hc2.send(t, "CLOSED", r3.SubscriptionID, "rate-limited: slow down")
	r4 := hc2.req(t)
	if gap := time.Since(closedAt); gap < 65*time.Millisecond {
		t.Fatalf("REQ re-sent %v after CLOSED, want the grown backoff (over 68ms, not 50ms ± 20%%)", gap)
	}

	t.Log("ending the subscription sends CLOSE")
	cancel()
	select {
	case id := <-hc2.closes:
		if id != r4.SubscriptionID {
			t.Fatalf("CLOSE for %q, want %q", id, r4.SubscriptionID)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no CLOSE after the subscription's context ended")
	}
	<-got.done
	pool.Close()
	assertNoPoolGoroutines(t)
}

// TestKeepalive drops a connection whose relay stops answering pings, and keeps one that answers.
func TestKeepalive(t *testing.T) {
	h := startHostileRelay(t)
	rec := &logRecorder{}
	pool, err := New([]string{h.url}, Options{MinBackoff: 50 * time.Millisecond, Logger: testLogger(t, rec)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pool.keepalive.interval, pool.keepalive.timeout = 50*time.Millisecond, 200*time.Millisecond
	url := pool.URLs()[0]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := collect(pool.Subscribe(ctx, nostr.Filter{Kinds: []int{24133}}))

	hc := h.next(t)
	hc.req(t)
	select { // ten pings answered: the connection stays
	case <-h.conns:
		t.Fatal("a connection that answers pings was dropped")
	case <-time.After(500 * time.Millisecond):
	}
	if !pool.Health()[0].Connected {
		t.Fatal("not connected")
	}

	h.silent.Store(true)
	hc.ws.CloseNow()
	h.next(t) // the re-dial, to a relay that now answers nothing
	h.next(t) // and the one after the missing pong
	waitFor(t, 10*time.Second, "the missing pong logged as the reason", func() bool { return rec.has("relay connection lost", "no pong within 200ms", url) })
	h.next(t) // connected again (to the silent relay)
	waitFor(t, 5*time.Second, "connected", func() bool { return pool.Health()[0].Connected })
	began := time.Now()
	pool.Close() // the relay answers no close frame either
	d := time.Since(began)
	t.Logf("Close took %v with a silent relay", d)
	if d > closeGrace+time.Second {
		t.Fatal("Close waited too long")
	}
	<-got.done
	assertNoPoolGoroutines(t)
}

func ptr[T any](v T) *T { return &v }

// eventually polls cond until it holds or d has passed.
func eventually(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}
