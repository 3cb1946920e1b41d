package electrum

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"
)

// Defaults for PoolOptions.
const (
	DefaultBackoffMin  = 500 * time.Millisecond
	DefaultBackoffMax  = 30 * time.Second
	DefaultStableAfter = time.Minute
	DefaultDialTimeout = 10 * time.Second
)

// PoolOptions tune a Pool. The zero value means every default.
type PoolOptions struct {
	// Options are used for every connection (their Logger also gets the pool's records).
	Options Options
	// BackoffMin and BackoffMax bound how long a server that failed is left alone before it is
	// tried again: the wait doubles from Min with each failure in a row, up to Max, with ±50 %
	// jitter.
	BackoffMin, BackoffMax time.Duration
	// StableAfter is how long a connection must last for its server's backoff to start again
	// from BackoffMin when it ends (so a server that accepts and drops at once backs off).
	StableAfter time.Duration
	// DialTimeout bounds one attempt (TCP dial, TLS handshake, server.version), so that a
	// server which accepts and then says nothing does not hold Connect.
	DialTimeout time.Duration
}

// ServerHealth is one server's health as a Pool sees it, a value safe to keep and print (for
// `cosigner status`).
type ServerHealth struct {
	Server         string        `json:"server"`
	Connected      bool          `json:"connected"`
	Software       string        `json:"software,omitempty"` // server.version's first answer
	Protocol       string        `json:"protocol,omitempty"` // negotiated protocol version
	Latency        time.Duration `json:"latency_ns"`         // last handshake or ping round trip
	ConnectedSince time.Time     `json:"connected_since,omitzero"`
	Connects       int           `json:"connects"`             // successful handshakes
	Failures       int           `json:"failures"`             // failed dials and dropped connections
	FailuresInRow  int           `json:"failures_in_row"`      // since the last successful handshake
	LastError      string        `json:"last_error,omitempty"` // the latest failure, for people
	LastErrorAt    time.Time     `json:"last_error_at,omitzero"`
	RetryAfter     time.Time     `json:"retry_after,omitzero"` // not tried again before this
}

// connState is one connection's life as the pool sees it; guarded by Pool.mu.
type connState struct {
	up    bool // the handshake completed and the pool counted the connection
	began time.Time
}

type serverState struct {
	health    ServerHealth
	level     int // backoff level: failures since the last stable connection
	connected int // live connections from this pool
}

// Pool connects to one of several Electrum servers and fails over between them. It owns no
// goroutine: Connect dials, and each Client it returns reports its latency and its end back to
// the pool. Safe for concurrent use.
//
// Electrum subscriptions live and die with a connection, so every Client from Connect is a
// fresh session: the caller resubscribes everything on it. That is how a switch of server
// reaches the caller: a new Client (whose Server may differ from the last one's; Connect logs
// the switch and Health shows it).
type Pool struct {
	opts    PoolOptions
	log     *slog.Logger
	urls    []string
	mu      sync.Mutex
	servers []*serverState
	last    string // server of the last successful Connect
	now     func() time.Time
}

// NewPool returns a pool over servers (URLs as Dial takes them, in order of preference). Errors
// wrap ErrBadURL / ErrUnsupportedScheme (naming the URL), or ErrBadURL for an empty or
// duplicated list.
func NewPool(servers []string, opts PoolOptions) (*Pool, error) {
	if len(servers) == 0 {
		return nil, fmt.Errorf("%w: no Electrum server given", ErrBadURL)
	}
	seen := map[string]bool{}
	p := &Pool{opts: opts, now: time.Now}
	for _, s := range servers {
		a, err := ParseServer(s)
		if err != nil {
			return nil, err
		}
		if seen[a.String()] {
			return nil, fmt.Errorf("%w: %s is listed twice", ErrBadURL, a)
		}
		seen[a.String()] = true
		p.urls = append(p.urls, a.String())
		p.servers = append(p.servers, &serverState{health: ServerHealth{Server: a.String()}})
	}
	if p.opts.BackoffMin <= 0 {
		p.opts.BackoffMin = DefaultBackoffMin
	}
	if p.opts.BackoffMax < p.opts.BackoffMin {
		p.opts.BackoffMax = max(DefaultBackoffMax, p.opts.BackoffMin)
	}
	if p.opts.DialTimeout <= 0 {
		p.opts.DialTimeout = DefaultDialTimeout
	}
	if p.opts.StableAfter <= 0 {
		p.opts.StableAfter = DefaultStableAfter
	}
	p.log = p.opts.Options.Logger
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	return p, nil
}

// Servers returns the server URLs in order of preference (canonical form).
func (p *Pool) Servers() []string { return append([]string(nil), p.urls...) }

// Health returns each server's health, in the order of Servers.
func (p *Pool) Health() []ServerHealth {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ServerHealth, len(p.servers))
	for i, s := range p.servers {
		out[i] = s.health
	}
	return out
}

// Connect returns a connection (handshake done) to the healthiest server that is not backing
// off: servers with fewer failures in a row first, then in the order given. A server whose dial
// or handshake fails is left alone for its backoff and the next one is tried; when all are
// backing off, Connect waits for the first to come due. It returns when one connects or ctx
// ends; then the error wraps ErrNoServers and ctx's error and names each server's last error.
// Pin mismatches (ErrCertificateMismatch) count as failures like any other, so a server whose
// certificate changed is not used while another works.
func (p *Pool) Connect(ctx context.Context) (*Client, error) {
	for {
		order, wait := p.candidates()
		for _, i := range order {
			c, err := p.dial(ctx, i)
			if err == nil {
				return c, nil
			}
			if ctx.Err() != nil {
				return nil, p.noServers(ctx.Err())
			}
		}
		if len(order) > 0 {
			continue // every due server failed just now: recompute (they are backing off now)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, p.noServers(ctx.Err())
		case <-t.C:
		}
	}
}

// candidates returns the servers due for a try, best first, or how long until the next is due.
func (p *Pool) candidates() ([]int, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	var due []int
	var wait time.Duration = -1
	for i, s := range p.servers {
		if d := s.health.RetryAfter.Sub(now); d > 0 {
			if wait < 0 || d < wait {
				wait = d
			}
			continue
		}
		due = append(due, i)
	}
	sort.SliceStable(due, func(a, b int) bool {
		return p.servers[due[a]].health.FailuresInRow < p.servers[due[b]].health.FailuresInRow
	})
	return due, max(wait, 0)
}

func (p *Pool) dial(ctx context.Context, i int) (*Client, error) {
	url := p.urls[i]
	opts := p.opts.Options
	st := &connState{}
	opts.hooks = &hooks{
		latency: func(d time.Duration) {
			p.mu.Lock()
			p.servers[i].health.Latency = d
			p.mu.Unlock()
		},
		ended: func(err error) { p.ended(i, st, err) },
	}
	dctx, cancel := context.WithTimeout(ctx, p.opts.DialTimeout)
	c, err := Dial(dctx, url, opts)
	cancel()
	if err != nil {
		if ctx.Err() == nil { // not the caller giving up
			p.failed(i, err)
		}
		p.log.Warn("electrum server unavailable", "server", url, "err", err)
		return nil, err
	}
	p.mu.Lock()
	s := p.servers[i]
	select {
	case <-c.Done():
		// Ended between the handshake and now; its end was not counted as a drop.
		p.mu.Unlock()
		c.Close()
		err := fmt.Errorf("electrum: %s: connection ended right after the handshake: %w", url, c.closedErr())
		p.failed(i, err)
		return nil, err
	default:
	}
	st.up = true
	st.began = p.now()
	s.connected++
	s.health.Connected = true
	s.health.Software, s.health.Protocol = c.ServerSoftware, c.Protocol
	s.health.Latency = c.Latency()
	s.health.ConnectedSince = st.began
	s.health.Connects++
	s.health.FailuresInRow = 0
	s.health.RetryAfter = time.Time{}
	prev := p.last
	p.last = url
	p.mu.Unlock()
	if prev != "" && prev != url {
		p.log.Warn("electrum server switched", "from", prev, "to", url, "protocol", c.Protocol)
	} else {
		p.log.Debug("electrum server connected", "server", url, "protocol", c.Protocol)
	}
	return c, nil
}

// ended is the Client's end hook: a connection that was up went down.
func (p *Pool) ended(i int, st *connState, err error) {
	p.mu.Lock()
	if !st.up {
		p.mu.Unlock()
		return // a handshake that failed; Dial's error is counted by dial
	}
	st.up = false
	s := p.servers[i]
	s.connected--
	s.health.Connected = s.connected > 0
	if s.connected == 0 {
		s.health.ConnectedSince = time.Time{}
	}
	stable := p.now().Sub(st.began) >= p.opts.StableAfter
	if stable {
		s.level = 0
	}
	p.mu.Unlock()
	if errors.Is(err, ErrClosed) || errors.Is(err, ErrNotificationBacklog) {
		return // closed by its owner, or its owner fell behind: not the server's fault
	}
	p.failed(i, err)
}

// failed records a failure of server i and schedules its next try.
func (p *Pool) failed(i int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.servers[i]
	now := p.now()
	s.health.Failures++
	s.health.FailuresInRow++
	s.health.LastError = err.Error()
	s.health.LastErrorAt = now
	s.level++
	s.health.RetryAfter = now.Add(p.backoff(s.level))
}

// backoff returns BackoffMin·2^(level−1), capped at BackoffMax, with ±50 % jitter.
func (p *Pool) backoff(level int) time.Duration {
	d := p.opts.BackoffMin
	for i := 1; i < level && d < p.opts.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, p.opts.BackoffMax)
	return d/2 + rand.N(d+1)
}

func (p *Pool) noServers(cause error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var parts []string
	for _, s := range p.servers {
		last := s.health.LastError
		if last == "" {
			last = "not tried"
		}
		parts = append(parts, fmt.Sprintf("%s: %s", s.health.Server, last))
	}
	return fmt.Errorf("%w (%s): %w", ErrNoServers, strings.Join(parts, "; "), cause)
}
