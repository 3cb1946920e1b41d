package relaypool

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nbd-wtf/go-nostr"
)

func TestEphemeralUnackedBySoftware(t *testing.T) {
	for _, c := range []struct {
		software, version string
		want              bool
	}{
		{"https://git.sr.ht/~gheartsfield/nostr-rs-relay", "0.8.12", true},
		{"https://github.com/scsibug/nostr-rs-relay", "v0.8.9", true},
		{"git+https://git.sr.ht/~gheartsfield/nostr-rs-relay", "0.9.0", false},
		{"https://git.sr.ht/~gheartsfield/nostr-rs-relay", "1.0.0", false},
		{"https://git.sr.ht/~gheartsfield/nostr-rs-relay", "", false},
		{"https://git.sr.ht/~gheartsfield/nostr-rs-relay", "unknown", false},
		{"git+https://github.com/hoytech/strfry.git", "0.8.1", false},
		{"", "", false},
	} {
		if got := ephemeralUnackedBySoftware(c.software, c.version); got != c.want {
			t.Errorf("ephemeralUnackedBySoftware(%q, %q) = %v, want %v", c.software, c.version, got, c.want)
		}
	}
}

// noEphemeralOKRelay is a scripted relay that behaves as nostr-rs-relay 0.8.12 does: it answers
// every EVENT with an OK except ephemeral ones, which it takes silently. software, if not
// empty, is served as its NIP-11 document's software (version 0.8.12). It records the ids of
// the events it gets, in order.
type noEphemeralOKRelay struct {
	url string
	mu  sync.Mutex
	got []string
}

func startNoEphemeralOKRelay(t *testing.T, software string, ackEphemeral bool) *noEphemeralOKRelay {
	r := &noEphemeralOKRelay{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.Contains(req.Header.Get("Accept"), "application/nostr+json") {
			if software == "" {
				http.NotFound(w, req)
				return
			}
			w.Header().Set("Content-Type", "application/nostr+json")
			_ = json.NewEncoder(w).Encode(map[string]any{"software": software, "version": "0.8.12", "supported_nips": []int{1, 11}})
			return
		}
		ws, err := websocket.Accept(w, req, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer ws.CloseNow()
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				return
			}
			env, ok := nostr.ParseMessage(b).(*nostr.EventEnvelope)
			if !ok {
				continue
			}
			r.mu.Lock()
			r.got = append(r.got, env.Event.ID)
			r.mu.Unlock()
			if isEphemeral(env.Event.Kind) && !ackEphemeral {
				continue
			}
			out, _ := json.Marshal([]any{"OK", env.Event.ID, true, ""})
			_ = ws.Write(ctx, websocket.MessageText, out)
		}
	}))
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
	})
	r.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return r
}

// copies is how many times the relay got event id.
func (r *noEphemeralOKRelay) copies(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, g := range r.got {
		if g == id {
			n++
		}
	}
	return n
}

// okRelay answers every EVENT with OK true.
func okRelay(ctx context.Context, ws *websocket.Conn) {
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return
		}
		if env, ok := nostr.ParseMessage(b).(*nostr.EventEnvelope); ok {
			out, _ := json.Marshal([]any{"OK", env.Event.ID, true, ""})
			_ = ws.Write(ctx, websocket.MessageText, out)
		}
	}
}

// TestSilentRelayDoesNotSlowPublish: a relay that never sends an OK for ephemeral events (and
// says it is nostr-rs-relay 0.8.12 in its NIP-11 document) does not hold Publish up even when
// the quorum is every relay and the OK timeout is a minute: Publish returns with the other two
// relays' OKs and the silent relay's event delivered but unconfirmed, before the caller's 30 s
// deadline — which it could not have done had it waited for the silent relay's timeout. The
// event is sent to the silent relay once, not retried.
func TestSilentRelayDoesNotSlowPublish(t *testing.T) {
	silent := startNoEphemeralOKRelay(t, "https://git.sr.ht/~gheartsfield/nostr-rs-relay", false)
	urls := []string{startScriptedRelay(t, okRelay), silent.url, startScriptedRelay(t, okRelay)}
	const timeout = time.Minute
	pool, err := New(urls, Options{Quorum: len(urls), PublishTimeout: timeout, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout/2)
	defer cancel()

	for round := range 3 {
		ev := signed(t, 24133, freshPubKey(t), "nip-46 response")
		res := pool.Publish(ctx, ev)
		if ctx.Err() != nil {
			t.Fatalf("round %d: Publish returned only when the caller's deadline ended: %+v", round, res)
		}
		if res[0].Err != nil || res[2].Err != nil || res[0].Unconfirmed || res[2].Unconfirmed {
			t.Fatalf("round %d: the answering relays: %+v, want OK", round, res)
		}
		if res[1].Err != nil || !res[1].Unconfirmed {
			t.Fatalf("round %d: the silent relay: %+v, want delivered but unconfirmed", round, res[1])
		}
		if n, err := Published(res); n != 3 || err != nil {
			t.Fatalf("round %d: Published = %d, %v; want 3 (two OKs, one unconfirmed)", round, n, err)
		}
		// A kind 1 event after it on the same connection is answered by the silent relay: it
		// has read the ephemeral one by then.
		if res := pool.Publish(ctx, signed(t, 1, "", "after")); res[1].Err != nil || res[1].Unconfirmed {
			t.Fatalf("round %d: kind 1 to the silent relay: %+v, want OK", round, res[1])
		}
		if c := silent.copies(ev.ID); c != 1 {
			t.Fatalf("round %d: the silent relay got the event %d times, want once", round, c)
		}
	}
	h := pool.Health()[1]
	if !h.EphemeralUnacked || h.Unconfirmed != 0 || h.PublishFailed != 0 {
		// Unconfirmed is counted when the background wait for an OK ends (after the timeout).
		t.Fatalf("Health of the silent relay = %+v, want marked, no failures", h)
	}
	pool.Close()
	if h := pool.Health()[1]; h.PublishFailed != 0 {
		t.Fatalf("the silent relay counted %d failed publishes after Close", h.PublishFailed)
	}
	assertNoPoolGoroutines(t)
}

// TestSilentRelayLearned: a relay that serves no NIP-11 document and never OKs ephemeral
// events is learned from its behaviour: the first ephemeral event waits for the (short) OK
// timeout, a ping shows the connection alive, and the relay is marked; that event and the next
// are delivered but unconfirmed, each sent once, and the failed-publish counter stays 0.
func TestSilentRelayLearned(t *testing.T) {
	silent := startNoEphemeralOKRelay(t, "", false)
	pool, err := New([]string{silent.url}, Options{PublishTimeout: 300 * time.Millisecond, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for round := range 2 {
		ev := signed(t, 24133, freshPubKey(t), "request")
		res := pool.Publish(ctx, ev)
		if res[0].Err != nil || !res[0].Unconfirmed {
			t.Fatalf("round %d: %+v, want delivered but unconfirmed", round, res[0])
		}
		if n, err := Published(res); n != 1 || err != nil {
			t.Fatalf("round %d: Published = %d, %v; a pool whose only relay sends no ephemeral OKs still publishes", round, n, err)
		}
		if res := pool.Publish(ctx, signed(t, 1, "", "after")); res[0].Err != nil {
			t.Fatal(res[0].Err)
		}
		if c := silent.copies(ev.ID); c != 1 {
			t.Fatalf("round %d: the relay got the event %d times, want once", round, c)
		}
	}
	if h := pool.Health()[0]; !h.EphemeralUnacked || h.PublishFailed != 0 {
		t.Fatalf("Health = %+v, want marked, no failures", h)
	}
	pool.Close()
	assertNoPoolGoroutines(t)
}

// TestUnackedMarkCleared: a relay whose NIP-11 document names nostr-rs-relay 0.8.12 but which
// does OK ephemeral events loses the mark at its first OK, and is then waited for again.
func TestUnackedMarkCleared(t *testing.T) {
	r := startNoEphemeralOKRelay(t, "https://git.sr.ht/~gheartsfield/nostr-rs-relay", true)
	pool, err := New([]string{r.url}, Options{PublishTimeout: time.Minute, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res := pool.Publish(ctx, signed(t, 24133, freshPubKey(t), "first")); res[0].Err != nil || !res[0].Unconfirmed {
		t.Fatalf("first publish %+v, want unconfirmed (marked by NIP-11)", res[0])
	}
	waitFor(t, 10*time.Second, "the mark cleared by the relay's OK", func() bool { return !pool.Health()[0].EphemeralUnacked })
	if res := pool.Publish(ctx, signed(t, 24133, freshPubKey(t), "second")); res[0].Err != nil || res[0].Unconfirmed {
		t.Fatalf("second publish %+v, want OK", res[0])
	}
	if h := pool.Health()[0]; h.Published != 2 || h.EphemeralUnacked {
		t.Fatalf("Health = %+v, want 2 published and no mark", h)
	}
}

// TestSilentQuorumFromOKs: the unconfirmed relay does not count towards the quorum. With a
// quorum of two out of [silent, answering, down], Publish reports one OK, one unconfirmed and
// one failure — it does not claim a quorum the OKs did not give.
func TestSilentQuorumFromOKs(t *testing.T) {
	silent := startNoEphemeralOKRelay(t, "https://git.sr.ht/~gheartsfield/nostr-rs-relay", false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "ws://" + ln.Addr().String()
	ln.Close()
	pool, err := New([]string{silent.url, startScriptedRelay(t, okRelay), down}, Options{Quorum: 2, PublishTimeout: time.Minute, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := pool.Publish(ctx, signed(t, 24133, freshPubKey(t), "x"))
	if !res[0].Unconfirmed || res[0].Err != nil || res[1].Err != nil || res[1].Unconfirmed || res[2].Err == nil || errors.Is(res[2].Err, ErrPending) {
		t.Fatalf("Publish = %+v, want unconfirmed, OK, and the down relay's error", res)
	}
}
