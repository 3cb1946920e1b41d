package relaypool

// relay.go — one relay: its current connection, the single dial in flight, and its health.

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// dialTimeout bounds one WebSocket dial (TCP, TLS, HTTP upgrade).
const dialTimeout = 10 * time.Second

type relay struct {
	url  string
	pool *Pool
	// ctx is the relay's life: a child of the Pool's, cancelled on its own (with cause ErrIdle)
	// when an extra relay of PublishTo is retired. Connections and dials derive from it.
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu      sync.Mutex
	conn    *conn     // the live connection, or nil
	dialing *dialCall // the dial in flight, or nil
	// health
	connected bool
	since     time.Time // connected since, or disconnected since
	lastErr   string
}

// dialCall is one dial; its result is readable once done is closed.
type dialCall struct {
	done chan struct{}
	c    *conn
	err  error
}

// newRelay returns relay url of p, not connected yet, alive until p closes or cancel is called.
func newRelay(p *Pool, url string) *relay {
	ctx, cancel := context.WithCancelCause(p.ctx)
	return &relay{url: url, pool: p, ctx: ctx, cancel: cancel, since: time.Now()}
}

func (r *relay) health() RelayHealth {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RelayHealth{URL: r.url, Connected: r.connected, Since: r.since, LastError: r.lastErr}
}

// connect returns the relay's live connection, dialing if there is none. Concurrent callers
// share one dial; a caller whose ctx ends stops waiting but the dial goes on (bounded by
// dialTimeout) and its connection is kept. It returns ErrClosed after Close.
func (r *relay) connect(ctx context.Context) (*conn, error) {
	r.mu.Lock()
	if r.conn != nil && r.conn.ctx.Err() == nil {
		c := r.conn
		r.mu.Unlock()
		return c, nil
	}
	call := r.dialing
	if call == nil {
		call = &dialCall{done: make(chan struct{})}
		if !r.pool.spawn(func() { r.dial(call) }) {
			r.mu.Unlock()
			return nil, ErrClosed
		}
		r.dialing = call
	}
	r.mu.Unlock()
	select {
	case <-call.done:
		return call.c, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dial runs in a Pool goroutine: it dials, records the outcome and starts the connection's
// goroutines.
func (r *relay) dial(call *dialCall) {
	defer close(call.done)
	p := r.pool
	ctx, cancel := context.WithTimeout(r.ctx, dialTimeout)
	ws, _, err := websocket.Dial(ctx, r.url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	cancel()
	if err != nil && r.ctx.Err() != nil {
		err = context.Cause(r.ctx) // ErrClosed, or ErrIdle
	}

	r.mu.Lock()
	r.dialing = nil
	if err != nil {
		if r.connected || r.lastErr == "" {
			r.since = time.Now()
		}
		r.connected, r.lastErr = false, err.Error()
		r.mu.Unlock()
		call.err = err
		return
	}
	c := newConn(r, ws)
	// Recorded before the connection's goroutines start, so that connDown always finds it.
	r.conn, r.connected, r.lastErr, r.since = c, true, "", time.Now()
	r.mu.Unlock()
	p.log.Info("relay connected", "relay", r.url)
	c.start()
	call.c = c
}

// connDown records that c has ended with cause; it is called once per connection, after its
// reader has returned.
func (r *relay) connDown(c *conn, cause error) {
	r.mu.Lock()
	if r.conn == c {
		r.conn = nil
		r.connected = false
		r.since = time.Now()
		r.lastErr = cause.Error()
	}
	r.mu.Unlock()
	if errors.Is(cause, ErrClosed) || errors.Is(cause, ErrIdle) {
		r.pool.log.Debug("relay connection closed", "relay", r.url, "reason", cause)
	} else {
		r.pool.log.Warn("relay connection lost", "relay", r.url, "reason", cause)
	}
}
