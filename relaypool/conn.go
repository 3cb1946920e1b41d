package relaypool

// conn.go — one WebSocket connection to a relay, shared by every subscription and publish on
// that relay. Two goroutines own it: the reader, which parses each NIP-01 message and routes it
// without ever blocking on a consumer, and the supervisor, which pings while the connection is
// up and closes it when its context ends. Writes are serialised by writeLock.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/nbd-wtf/go-nostr"
)

const (
	// maxMessageBytes bounds one message from a relay; a larger one drops the connection.
	// NIP-46 requests are at most about 90 KiB of content; relays commonly cap events far lower.
	maxMessageBytes = 512 << 10
	// writeTimeout bounds one message write; a write that takes longer drops the connection.
	writeTimeout = 10 * time.Second
	// defaultPingInterval and defaultPingTimeout: a WebSocket ping every interval, and a
	// connection that gives no pong within the timeout is dropped (a relay or a network path
	// gone silent). Pool.keepalive holds the values in use.
	defaultPingInterval = 29 * time.Second
	defaultPingTimeout  = 10 * time.Second
	// closeGrace bounds the WebSocket close handshake when the Pool closes.
	closeGrace = time.Second
)

type conn struct {
	relay *relay
	ws    *websocket.Conn

	// ctx ends when the connection does; context.Cause(ctx) says why (ErrClosed when the Pool
	// closed, ErrIdle when an idle extra relay was retired, else an error wrapping ErrConnectionLost or ErrMessageTooLarge).
	ctx    context.Context
	cancel context.CancelCauseFunc

	readCtx    context.Context // the reader's; cancelling it closes ws at once
	readCancel context.CancelFunc
	readerDone chan struct{}
	down       chan struct{} // closed after relay.connDown has recorded the end
	writeLock  chan struct{} // capacity 1: held while writing one message
	worked     atomic.Bool   // the relay has answered something on this connection

	auth authState // NIP-42 (auth.go)

	mu     sync.Mutex
	routes map[string]*route                  // by subscription id
	oks    map[string][]chan nostr.OKEnvelope // by event id, publishes waiting for OK
}

// route is where the reader puts what a relay sends for one subscription id. The channels are
// buffered and never closed; the reader drops what does not fit instead of waiting.
type route struct {
	events chan *nostr.Event // capacity Options.EventBuffer
	eose   chan struct{}     // capacity 1
	closed chan string       // capacity 1: the reason of a CLOSED
}

func newConn(r *relay, ws *websocket.Conn) *conn {
	ws.SetReadLimit(maxMessageBytes)
	ctx, cancel := context.WithCancelCause(r.ctx)
	readCtx, readCancel := context.WithCancel(context.Background())
	return &conn{
		relay: r, ws: ws, ctx: ctx, cancel: cancel, readCtx: readCtx, readCancel: readCancel,
		readerDone: make(chan struct{}),
		down:       make(chan struct{}),
		auth:       authState{challenged: make(chan struct{})},
		writeLock:  make(chan struct{}, 1),
		routes:     make(map[string]*route),
		oks:        make(map[string][]chan nostr.OKEnvelope),
	}
}

// start runs the reader and the supervisor. It is called from a Pool goroutine (the dial), so
// the WaitGroup count is positive and Add is safe even while Close waits.
func (c *conn) start() {
	p := c.relay.pool
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		c.read()
	}()
	go func() {
		defer p.wg.Done()
		c.supervise()
	}()
}

// fail ends the connection with cause (only the first cause is kept).
func (c *conn) fail(cause error) { c.cancel(cause) }

// cause is why the connection ended, or nil while it is up.
func (c *conn) cause() error {
	if c.ctx.Err() == nil {
		return nil
	}
	return context.Cause(c.ctx)
}

func (c *conn) read() {
	defer close(c.readerDone)
	for {
		// The supervisor closes ws when ctx ends, which ends this Read.
		typ, msg, err := c.ws.Read(c.readCtx)
		if err != nil {
			if errors.Is(err, websocket.ErrMessageTooBig) {
				c.fail(fmt.Errorf("%w: over %d bytes", ErrMessageTooLarge, maxMessageBytes))
			} else {
				c.fail(fmt.Errorf("%w: %v", ErrConnectionLost, err))
			}
			return
		}
		if typ != websocket.MessageText {
			c.relay.pool.log.Debug("ignored binary message", "relay", c.relay.url, "bytes", len(msg))
			continue
		}
		c.handle(msg)
	}
}

// handle routes one relay message (NIP-01 relay-to-client messages). It never blocks.
func (c *conn) handle(msg []byte) {
	log := c.relay.pool.log
	env := nostr.ParseMessage(msg)
	switch env.(type) {
	case *nostr.EventEnvelope, *nostr.OKEnvelope, *nostr.EOSEEnvelope:
		if c.worked.CompareAndSwap(false, true) {
			c.relay.working()
		}
	}
	switch env := env.(type) {
	case *nostr.EventEnvelope:
		if env.SubscriptionID == nil {
			log.Debug("dropped event: no subscription id", "relay", c.relay.url)
			return
		}
		rt := c.route(*env.SubscriptionID)
		if rt == nil {
			log.Debug("dropped event: unknown subscription id", "relay", c.relay.url, "subscription", *env.SubscriptionID, "event", env.Event.ID)
			return
		}
		ev := env.Event
		select {
		case rt.events <- &ev:
		default:
			log.Warn("dropped event: subscription backlog full (consumer too slow)", "relay", c.relay.url, "subscription", *env.SubscriptionID, "event", ev.ID)
		}
	case *nostr.OKEnvelope:
		c.mu.Lock()
		for _, ch := range c.oks[env.EventID] {
			select {
			case ch <- *env:
			default:
			}
		}
		c.mu.Unlock()
	case *nostr.EOSEEnvelope:
		if rt := c.route(string(*env)); rt != nil {
			select {
			case rt.eose <- struct{}{}:
			default:
			}
		}
	case *nostr.ClosedEnvelope:
		if rt := c.route(env.SubscriptionID); rt != nil {
			select {
			case rt.closed <- env.Reason:
			default:
			}
		}
	case *nostr.NoticeEnvelope:
		log.Info("notice from relay", "relay", c.relay.url, "notice", string(*env))
		c.relay.recordNotice(string(*env))
	case *nostr.AuthEnvelope:
		if env.Challenge == nil || *env.Challenge == "" {
			log.Debug("ignored AUTH without a challenge", "relay", c.relay.url)
			return
		}
		c.onChallenge(*env.Challenge)
	case nil:
		log.Debug("ignored unparseable message", "relay", c.relay.url, "bytes", len(msg))
	default:
		log.Debug("ignored message", "relay", c.relay.url, "type", env.Label())
	}
}

func (c *conn) route(id string) *route {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.routes[id]
}

// addRoute registers subscription id; its buffers are as documented on route.
func (c *conn) addRoute(id string, buffer int) *route {
	rt := &route{
		events: make(chan *nostr.Event, buffer),
		eose:   make(chan struct{}, 1),
		closed: make(chan string, 1),
	}
	c.mu.Lock()
	c.routes[id] = rt
	c.mu.Unlock()
	return rt
}

func (c *conn) removeRoute(id string) {
	c.mu.Lock()
	delete(c.routes, id)
	c.mu.Unlock()
}

// expectOK registers a wait for the relay's OK to event id; call it before sending the event,
// and forgetOK when done.
func (c *conn) expectOK(id string) chan nostr.OKEnvelope {
	ch := make(chan nostr.OKEnvelope, 1)
	c.mu.Lock()
	c.oks[id] = append(c.oks[id], ch)
	c.mu.Unlock()
	return ch
}

func (c *conn) forgetOK(id string, ch chan nostr.OKEnvelope) {
	c.mu.Lock()
	defer c.mu.Unlock()
	waiters := c.oks[id]
	if i := slices.Index(waiters, ch); i >= 0 {
		waiters = append(waiters[:i:i], waiters[i+1:]...)
	}
	if len(waiters) == 0 {
		delete(c.oks, id)
	} else {
		c.oks[id] = waiters
	}
}

// send writes one text message. ctx bounds the wait for the write lock; the write itself is
// bounded by writeTimeout and, when it fails, ends the connection (the stream would be broken).
func (c *conn) send(ctx context.Context, msg []byte) error {
	select {
	case c.writeLock <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return context.Cause(c.ctx)
	}
	defer func() { <-c.writeLock }()
	if err := c.cause(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
	defer cancel()
	if err := c.ws.Write(wctx, websocket.MessageText, msg); err != nil {
		if cause := c.cause(); cause != nil {
			return cause
		}
		// The reader may have closed the connection for what it read (a message over the
		// limit) and not yet recorded why: end it and let the reader's cause come first.
		_ = c.ws.CloseNow()
		<-c.readerDone
		if cause := c.cause(); cause != nil {
			return cause
		}
		err = fmt.Errorf("%w: write: %v", ErrConnectionLost, err)
		c.fail(err)
		return err
	}
	return nil
}

// supervise pings the relay every keepalive interval until the connection's context ends, then
// closes the WebSocket (with the close handshake when the Pool is closing, at once otherwise),
// waits for the reader and reports the end to the relay.
func (c *conn) supervise() {
	interval, timeout := c.relay.pool.keepalive.interval, c.relay.pool.keepalive.timeout
	t := time.NewTicker(interval)
	defer t.Stop()
loop:
	for {
		select {
		case <-c.ctx.Done():
			break loop
		case <-t.C:
			pctx, cancel := context.WithTimeout(c.ctx, timeout)
			err := c.ws.Ping(pctx)
			cancel()
			if err != nil && c.ctx.Err() == nil {
				c.fail(fmt.Errorf("%w: no pong within %s: %v", ErrConnectionLost, timeout, err))
			}
		}
	}
	cause := context.Cause(c.ctx)
	if errors.Is(cause, ErrClosed) || errors.Is(cause, ErrIdle) {
		// The close handshake, for at most closeGrace: then the reader's context closes ws.
		t := time.AfterFunc(closeGrace, c.readCancel)
		_ = c.ws.Close(websocket.StatusNormalClosure, "")
		t.Stop()
	} else {
		// Lost, or broken by us (too large: the library has already sent close code 1009).
		_ = c.ws.CloseNow()
	}
	c.readCancel()
	<-c.readerDone
	c.relay.connDown(c, cause)
	close(c.down)
}
