package nip46e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/nbd-wtf/go-nostr"
)

// hostileRelay is a test double for a misbehaving third-party relay (the only relay in these
// tests that the project wrote): it speaks enough NIP-01 to be used (EOSE for every REQ, OK
// true for every EVENT, which it then drops: it lies), and on Blast it pushes to every open
// subscription whatever a test hands it — garbage frames, oversized events, forged or
// replayed events. It is quiet otherwise.
type hostileRelay struct {
	ln  net.Listener
	srv *http.Server

	mu    sync.Mutex
	subs  map[*hostileConn]map[string]bool // open subscription ids per connection
	subCh chan struct{}                    // signalled on every new subscription
	wg    sync.WaitGroup
}

type hostileConn struct {
	ws *websocket.Conn
	mu sync.Mutex // serialises writes
}

func (c *hostileConn) write(ctx context.Context, typ websocket.MessageType, b []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.ws.Write(ctx, typ, b)
}

func startHostileRelay() (*hostileRelay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &hostileRelay{ln: ln, subs: map[*hostileConn]map[string]bool{}, subCh: make(chan struct{}, 1)}
	h.srv = &http.Server{Handler: http.HandlerFunc(h.serve), ReadHeaderTimeout: 5 * time.Second}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		_ = h.srv.Serve(ln)
	}()
	return h, nil
}

func (h *hostileRelay) URL() string { return "ws://" + h.ln.Addr().String() }

func (h *hostileRelay) Close() {
	_ = h.srv.Close()
	h.mu.Lock()
	for c := range h.subs {
		_ = c.ws.CloseNow()
	}
	h.mu.Unlock()
	h.wg.Wait()
}

func (h *hostileRelay) serve(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(4 << 20)
	c := &hostileConn{ws: ws}
	h.mu.Lock()
	h.subs[c] = map[string]bool{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.subs, c)
		h.mu.Unlock()
		_ = ws.CloseNow()
	}()
	ctx := r.Context()
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			return
		}
		var arr []json.RawMessage
		if json.Unmarshal(msg, &arr) != nil || len(arr) < 2 {
			continue
		}
		var typ, id string
		_ = json.Unmarshal(arr[0], &typ)
		switch typ {
		case "REQ":
			_ = json.Unmarshal(arr[1], &id)
			h.mu.Lock()
			h.subs[c][id] = true
			h.mu.Unlock()
			select {
			case h.subCh <- struct{}{}:
			default:
			}
			eose, _ := json.Marshal([]any{"EOSE", id})
			_ = c.write(ctx, websocket.MessageText, eose)
		case "CLOSE":
			_ = json.Unmarshal(arr[1], &id)
			h.mu.Lock()
			delete(h.subs[c], id)
			h.mu.Unlock()
		case "EVENT":
			var ev nostr.Event
			if json.Unmarshal(arr[1], &ev) == nil {
				ok, _ := json.Marshal([]any{"OK", ev.ID, true, ""})
				_ = c.write(ctx, websocket.MessageText, ok)
			}
		}
	}
}

// WaitSubscribed waits until some connection has an open subscription.
func (h *hostileRelay) WaitSubscribed(ctx context.Context) error {
	for {
		h.mu.Lock()
		n := 0
		for _, s := range h.subs {
			n += len(s)
		}
		h.mu.Unlock()
		if n > 0 {
			return nil
		}
		select {
		case <-h.subCh:
		case <-ctx.Done():
			return fmt.Errorf("hostile relay: nobody subscribed: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// blastItem is one thing the hostile relay sends: Raw is written as is (a text frame, or a
// binary one if Binary); Event is wrapped as ["EVENT", <subscription id>, event] for each open
// subscription.
type blastItem struct {
	Raw    []byte
	Binary bool
	Event  *nostr.Event
}

// Blast sends every item to every open subscription and returns how many frames were written.
func (h *hostileRelay) Blast(ctx context.Context, items []blastItem) int {
	h.mu.Lock()
	type target struct {
		c   *hostileConn
		ids []string
	}
	var targets []target
	for c, s := range h.subs {
		t := target{c: c}
		for id := range s {
			t.ids = append(t.ids, id)
		}
		targets = append(targets, t)
	}
	h.mu.Unlock()
	n := 0
	for _, t := range targets {
		for _, it := range items {
			switch {
			case it.Event != nil:
				for _, id := range t.ids {
					b, _ := json.Marshal([]any{"EVENT", id, it.Event})
					if t.c.write(ctx, websocket.MessageText, b) == nil {
						n++
					}
				}
			case it.Binary:
				if t.c.write(ctx, websocket.MessageBinary, it.Raw) == nil {
					n++
				}
			default:
				if t.c.write(ctx, websocket.MessageText, it.Raw) == nil {
					n++
				}
			}
		}
	}
	return n
}
