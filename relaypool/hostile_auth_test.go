package relaypool

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// startScriptedRelay serves each WebSocket connection with script until t ends, and returns the
// relay's ws:// URL.
func startScriptedRelay(t *testing.T, script func(ctx context.Context, ws *websocket.Conn)) string {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		wg.Add(1)
		defer wg.Done()
		defer ws.CloseNow()
		script(ctx, ws)
	}))
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		srv.Close()
	})
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// TestHostileAuthAndNotice: a relay that challenges, refuses our AUTH, and answers an event with
// a NOTICE instead of an OK.
func TestHostileAuthAndNotice(t *testing.T) {
	auths := make(chan nostr.Event, 8)
	url := startScriptedRelay(t, func(ctx context.Context, ws *websocket.Conn) {
		send := func(msg ...any) {
			b, _ := json.Marshal(msg)
			_ = ws.Write(ctx, websocket.MessageText, b)
		}
		send("AUTH", "challenge-1")
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				return
			}
			switch env := nostr.ParseMessage(b).(type) {
			case *nostr.AuthEnvelope:
				auths <- env.Event
				send("OK", env.Event.ID, false, "invalid: wrong key")
			case *nostr.EventEnvelope:
				if strings.HasPrefix(env.Event.Content, "silent") {
					send("NOTICE", "error: storage full")
				} else {
					send("OK", env.Event.ID, false, "auth-required: sign in first")
				}
			}
		}
	})
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	pool, err := New([]string{url}, Options{MinBackoff: 50 * time.Millisecond, PublishTimeout: time.Second, Logger: testLogger(t, nil),
		AuthSigner: func(_ context.Context, ev *nostr.Event) error { return ev.Sign(sk) }})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	res := pool.Publish(ctx, signed(t, 1, "", "first"))
	if !errors.Is(res[0].Err, ErrAuthFailed) || !strings.Contains(res[0].Err.Error(), "invalid: wrong key") {
		t.Fatalf("Publish after a refused AUTH = %+v, want ErrAuthFailed with the relay's reason", res[0])
	}
	t.Log("the AUTH event: kind 22242, this relay's URL, the challenge, signed by the signer's key")
	ev := <-auths
	ok, _ := ev.CheckSignature()
	if ev.Kind != 22242 || ev.PubKey != pk || !ok || ev.GetID() != ev.ID ||
		ev.Tags.GetFirst([]string{"relay", pool.URLs()[0]}) == nil || ev.Tags.GetFirst([]string{"challenge", "challenge-1"}) == nil {
		t.Fatalf("AUTH event %+v: want kind 22242 by %s with relay and challenge tags, validly signed", ev, pk)
	}
	if h := pool.Health()[0]; h.State != StateAuthRequired || h.AuthPubKey != "" {
		t.Fatalf("health %+v after a refused AUTH, want auth-required", h)
	}
	select {
	case again := <-auths:
		t.Fatalf("the same challenge was answered twice: %+v", again)
	default:
	}

	t.Log("a NOTICE instead of an OK is reported with ErrNoOK")
	res = pool.Publish(ctx, signed(t, 1, "", "silent please"))
	if !errors.Is(res[0].Err, ErrNoOK) || !strings.Contains(res[0].Err.Error(), "error: storage full") {
		t.Fatalf("Publish answered by a NOTICE = %+v, want ErrNoOK naming the notice", res[0])
	}
	if n := pool.Health()[0].LastNotice; n != "error: storage full" {
		t.Fatalf("LastNotice %q", n)
	}
	pool.Close()
	assertNoPoolGoroutines(t)
}

// FuzzHandle feeds arbitrary relay messages to a connection's reader: it must never panic or
// block, whatever a relay sends.
func FuzzHandle(f *testing.F) {
	for _, s := range []string{`["EVENT","sub1",{"id":"00","kind":1}]`, `["OK","00",true,""]`, `["EOSE","sub1"]`,
		`["CLOSED","sub1","auth-required: x"]`, `["NOTICE","hi"]`, `["AUTH","c"]`, `["AUTH",""]`, `["AUTH",{"kind":22242}]`, `[`, `{}`, `["COUNT","x",{"count":1}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		c := testConn()
		c.addRoute("sub1", 1)
		c.expectOK("00")
		c.handle(msg)
		c.handle(msg) // twice: full buffers must not block
	})
}

// TestQuorumReturnsEarly: with a quorum of two, Publish returns once two relays said OK, while a
// third that never answers is still pending (its PublishTimeout is far away), and the background
// attempt on it ends with Close.
func TestQuorumReturnsEarly(t *testing.T) {
	answering := func(ctx context.Context, ws *websocket.Conn) {
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
	got := make(chan string, 4)
	silent := func(ctx context.Context, ws *websocket.Conn) {
		for {
			_, b, err := ws.Read(ctx)
			if err != nil {
				return
			}
			if env, ok := nostr.ParseMessage(b).(*nostr.EventEnvelope); ok {
				got <- env.Event.ID
			}
		}
	}
	urls := []string{startScriptedRelay(t, answering), startScriptedRelay(t, silent), startScriptedRelay(t, answering)}
	pool, err := New(urls, Options{Quorum: 2, PublishTimeout: time.Hour, Logger: testLogger(t, nil)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if q := pool.Quorum(); q != 2 {
		t.Fatalf("Quorum() = %d", q)
	}
	ev := signed(t, 1, "", "quorum")
	res := pool.Publish(context.Background(), ev)
	if res[0].Err != nil || res[2].Err != nil || !errors.Is(res[1].Err, ErrPending) {
		t.Fatalf("Publish = %+v, want OK, pending, OK", res)
	}
	if ok, err := Published(res); ok != 2 || err != nil {
		t.Fatalf("Published = %d, %v", ok, err)
	}
	if id := <-got; id != ev.ID {
		t.Fatalf("silent relay got %s, want %s", id, ev.ID)
	}
	pool.Close()
	assertNoPoolGoroutines(t)
}
