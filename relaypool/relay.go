package relaypool

// relay.go — one relay: its state, its current connection, the single dial in flight, its
// backoff, its NIP-11 limits and its health counters.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
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

	mu       sync.Mutex
	conn     *conn     // the live connection, or nil
	dialing  *dialCall // the dial in flight, or nil
	state    State
	since    time.Time // when state last changed
	lastErr  string
	failures int       // consecutive failures (dials, and connections lost before they worked)
	retryAt  time.Time // the next dial waits until then (StateBackingOff, StateFailed)
	// holdUntil, when set (by tests only), keeps every retryAt at least this late.
	holdUntil time.Time
	wake      chan struct{} // closed and replaced by kick: callers waiting out a backoff look again
	limits    Limits        // from the NIP-11 document, if any
	infoAt    time.Time     // when limits were fetched (zero: never)
	subs      int           // REQs open or being opened on this relay (for max_subscriptions)
	subFree   chan struct{}
	stats     relayStats
	// ephemeralUnacked: the relay sends no OK for ephemeral events; ephemeralAnswered: it has
	// sent an OK (true or false) for one, so silence is not learned from it (ephemeral.go).
	ephemeralUnacked, ephemeralAnswered bool
}

// relayStats are the health counters of one relay.
type relayStats struct {
	connects, disconnects           uint64
	published, publishFailed        uint64
	eventsReceived, eventsDropped   uint64
	authOK, authFailed              uint64
	unconfirmed                     uint64
	lastOKLatency                   time.Duration
	lastOKAt, lastEventAt, lastAuth time.Time
	lastNotice                      string
	authPubKey                      string
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
	return &relay{url: url, pool: p, ctx: ctx, cancel: cancel, since: time.Now(), subFree: make(chan struct{}), wake: make(chan struct{})}
}

// setStateLocked moves to s (r.mu held), recording when.
func (r *relay) setStateLocked(s State) {
	if r.state != s {
		r.state, r.since = s, time.Now()
	}
}

func (r *relay) health() RelayHealth {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := RelayHealth{
		URL: r.url, State: r.state, Connected: r.state == StateConnected || r.state == StateAuthRequired,
		Since: r.since, LastError: r.lastErr, Failures: r.failures, Limits: r.limits,
		Connects: r.stats.connects, Disconnects: r.stats.disconnects,
		Published: r.stats.published, PublishFailed: r.stats.publishFailed,
		Unconfirmed: r.stats.unconfirmed, EphemeralUnacked: r.ephemeralUnacked,
		EventsReceived: r.stats.eventsReceived, EventsDropped: r.stats.eventsDropped,
		AuthPubKey: r.stats.authPubKey, LastNotice: r.stats.lastNotice,
		LastOKLatency: r.stats.lastOKLatency, LastOKAt: r.stats.lastOKAt, LastEventAt: r.stats.lastEventAt,
	}
	if r.state == StateBackingOff || r.state == StateFailed {
		h.RetryAt = r.retryAt
	}
	if r.ctx.Err() != nil && r.conn == nil {
		h.State, h.Connected = StateIdle, false
	}
	return h
}

// connect returns the relay's live connection, dialing if there is none. Concurrent callers
// share one dial; a caller whose ctx ends stops waiting but the dial goes on (bounded by
// dialTimeout) and its connection is kept. While the relay backs off, connect waits until its
// retry time if that is within maxWait, and otherwise returns an error wrapping ErrBackingOff at
// once. It returns ErrClosed after Close (ErrIdle for a retired extra relay).
func (r *relay) connect(ctx context.Context, maxWait time.Duration) (*conn, error) {
	for {
		r.mu.Lock()
		if c := r.conn; c != nil {
			r.mu.Unlock()
			if c.ctx.Err() == nil {
				return c, nil
			}
			// Ended, but not yet recorded by connDown: wait for that, then look again.
			select {
			case <-c.down:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if r.ctx.Err() != nil {
			r.mu.Unlock()
			return nil, context.Cause(r.ctx)
		}
		call := r.dialing
		if call == nil {
			if wait := time.Until(r.retryAt); wait > 0 {
				last, wake := r.lastErr, r.wake
				r.mu.Unlock()
				if wait > maxWait {
					return nil, fmt.Errorf("%w: next attempt in %s; last error: %s", ErrBackingOff, wait.Round(time.Millisecond), last)
				}
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-wake:
					t.Stop()
				case <-r.ctx.Done():
					t.Stop()
				case <-ctx.Done():
					t.Stop()
					return nil, ctx.Err()
				}
				continue
			}
			call = &dialCall{done: make(chan struct{})}
			if !r.pool.spawn(func() { r.dial(call) }) {
				r.mu.Unlock()
				return nil, ErrClosed
			}
			r.dialing = call
			r.setStateLocked(StateConnecting)
		}
		r.mu.Unlock()
		select {
		case <-call.done:
			return call.c, call.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// dial runs in a Pool goroutine: it fetches the NIP-11 document when it has none or an old one,
// dials, records the outcome and starts the connection's goroutines.
func (r *relay) dial(call *dialCall) {
	defer close(call.done)
	p := r.pool
	r.mu.Lock()
	needInfo := r.infoAt.IsZero() || time.Since(r.infoAt) > infoTTL
	r.mu.Unlock()
	if needInfo {
		l, sw, reached, err := fetchInfo(r.ctx, p.httpClient, r.url)
		r.mu.Lock()
		if reached { // a relay without a document is not asked again for infoTTL
			r.infoAt = time.Now()
		}
		if err == nil {
			r.limits = l
		}
		r.mu.Unlock()
		if err == nil && ephemeralUnackedBySoftware(sw.Software, sw.Version) {
			r.markEphemeralUnacked("NIP-11: "+sw.Software+" "+sw.Version, false)
		}
		if err != nil {
			p.log.Debug("no NIP-11 relay information document", "relay", r.url, "error", err)
		} else if l != (Limits{}) {
			p.log.Info("relay limits (NIP-11)", "relay", r.url, "limits", fmt.Sprintf("%+v", l))
		}
	}

	ctx, cancel := context.WithTimeout(r.ctx, dialTimeout)
	ws, _, err := websocket.Dial(ctx, r.url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled, HTTPClient: p.httpClient})
	cancel()
	if err != nil && r.ctx.Err() != nil {
		err = context.Cause(r.ctx) // ErrClosed, or ErrIdle
	}

	r.mu.Lock()
	r.dialing = nil
	if err != nil {
		call.err = err
		r.lastErr = err.Error()
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrIdle) {
			r.setStateLocked(StateIdle)
		} else {
			r.failLocked()
		}
		r.mu.Unlock()
		return
	}
	c := newConn(r, ws)
	// Recorded before the connection's goroutines start, so that connDown always finds it.
	r.conn, r.lastErr = c, ""
	r.retryAt = time.Time{}
	r.stats.connects++
	r.setStateLocked(StateConnected)
	r.mu.Unlock()
	p.log.Info("relay connected", "relay", r.url)
	c.start()
	call.c = c
}

// failLocked counts one more consecutive failure and schedules the next attempt (r.mu held).
func (r *relay) failLocked() {
	r.failures++
	o := r.pool.opts
	r.retryAt = time.Now().Add(jittered(backoffDelay(r.failures, o.MinBackoff, o.MaxBackoff), rand.Float64()))
	if r.retryAt.Before(r.holdUntil) {
		r.retryAt = r.holdUntil
	}
	r.setStateLocked(failedState(r.failures))
}

// kick ends the relay's backoff (and any hold): the next connect dials at once.
func (r *relay) kick() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.retryAt, r.holdUntil = time.Time{}, time.Time{}
	close(r.wake)
	r.wake = make(chan struct{})
}

// working records that the relay answered on the current connection (EOSE, OK, an event), so
// the next loss starts the backoff from MinBackoff again.
func (r *relay) working() {
	r.mu.Lock()
	r.failures = 0
	r.mu.Unlock()
}

// connDown records that c has ended with cause; it is called once per connection, after its
// reader has returned.
func (r *relay) connDown(c *conn, cause error) {
	r.mu.Lock()
	if r.conn == c {
		r.conn = nil
		r.lastErr = cause.Error()
		r.stats.disconnects++
		r.stats.authPubKey = ""
		if errors.Is(cause, ErrClosed) || errors.Is(cause, ErrIdle) {
			r.setStateLocked(StateIdle)
		} else {
			r.failLocked()
		}
	}
	r.mu.Unlock()
	if errors.Is(cause, ErrClosed) || errors.Is(cause, ErrIdle) {
		r.pool.log.Debug("relay connection closed", "relay", r.url, "reason", cause)
	} else {
		r.pool.log.Warn("relay connection lost", "relay", r.url, "reason", cause)
	}
}

// currentLimits returns the relay's NIP-11 limits (zero when unknown).
func (r *relay) currentLimits() Limits {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.limits
}

// acquireSub takes one of the relay's subscription slots, waiting while max_subscriptions
// (NIP-11) REQs are already open on it; release it with releaseSub.
func (r *relay) acquireSub(ctx context.Context) error {
	for {
		r.mu.Lock()
		if r.limits.MaxSubscriptions <= 0 || r.subs < r.limits.MaxSubscriptions {
			r.subs++
			r.mu.Unlock()
			return nil
		}
		free := r.subFree
		r.mu.Unlock()
		r.pool.log.Debug("waiting for a subscription slot (NIP-11 max_subscriptions)", "relay", r.url)
		select {
		case <-free:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (r *relay) releaseSub() {
	r.mu.Lock()
	r.subs--
	close(r.subFree)
	r.subFree = make(chan struct{})
	r.mu.Unlock()
}

// recordPublish counts one publish outcome; latency is the time from send to OK.
func (r *relay) recordPublish(err error, latency time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if errors.Is(err, errUnconfirmed) {
		r.stats.unconfirmed++
		return
	}
	if err == nil {
		r.stats.published++
		r.stats.lastOKLatency = latency
		r.stats.lastOKAt = time.Now()
	} else {
		r.stats.publishFailed++
	}
}

// recordEvent counts an incoming event: delivered or dropped as invalid.
func (r *relay) recordEvent(valid bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if valid {
		r.stats.eventsReceived++
		r.stats.lastEventAt = time.Now()
	} else {
		r.stats.eventsDropped++
	}
}

// recordAuth records a NIP-42 AUTH outcome: the pubkey it authenticated, or err.
func (r *relay) recordAuth(pubkey string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.lastAuth = time.Now()
	if err == nil {
		r.stats.authOK++
		r.stats.authPubKey = pubkey
		if r.state == StateAuthRequired {
			r.setStateLocked(StateConnected)
		}
		return
	}
	r.stats.authFailed++
	r.lastErr = err.Error()
	if r.conn != nil {
		r.setStateLocked(StateAuthRequired)
	}
}

// authRequired records that the relay refused us for want of NIP-42 AUTH we could not give.
func (r *relay) authRequired(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr = err.Error()
	if r.conn != nil {
		r.setStateLocked(StateAuthRequired)
	}
}

func (r *relay) recordNotice(n string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stats.lastNotice = n
}
