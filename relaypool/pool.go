package relaypool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Options tune a Pool. The zero value gives the defaults documented on each field.
type Options struct {
	// MinBackoff is the first reconnect delay after a relay drops (default 500ms); each further
	// failure multiplies it by 1.7 up to MaxBackoff (default 30s); every delay gets ±20% jitter.
	MinBackoff, MaxBackoff time.Duration
	// PublishTimeout bounds the wait for one relay's OK to a published event (default 7s).
	PublishTimeout time.Duration
	// SeenTTL is how long an event id is remembered for de-duplication (default 10m).
	SeenTTL time.Duration
	// EventBuffer is the capacity of the channel returned by Subscribe (default 256).
	EventBuffer int
	// ExtraRelayLimit bounds how many relays outside the pool PublishTo keeps connections to at
	// once (default 16); ExtraRelayIdle is how long such a relay stays connected after its last
	// publish (default 2m).
	ExtraRelayLimit int
	ExtraRelayIdle  time.Duration
	Logger          *slog.Logger
}

// Pool is a set of relays used as one. Create it with New, start subscriptions with Subscribe,
// and Close it when done; it is safe for concurrent use.
//
// Each relay has at most one WebSocket connection, shared by all subscriptions and publishes.
// Every goroutine the Pool starts is tied to its context and counted in wg: Close cancels and
// waits for all of them.
type Pool struct {
	urls   []string
	relays []*relay // in urls order
	opts   Options
	log    *slog.Logger

	keepalive struct{ interval, timeout time.Duration } // WebSocket pings; see conn.supervise

	ctx    context.Context // cancelled with cause ErrClosed by Close
	cancel context.CancelCauseFunc

	extra extraRelays // relays outside the pool that PublishTo reached (extra.go)

	lifeMu sync.Mutex // guards closed and wg.Add from a zero count
	closed bool
	wg     sync.WaitGroup
}

// Event is an event received from one of the relays, delivered once per event id.
type Event struct {
	*nostr.Event
	Relay string // URL of the first relay that delivered it
}

// PublishResult is one relay's answer to a published event: Err is nil when the relay said
// OK true (NIP-01), and otherwise holds its reason, a connection error, or a timeout.
type PublishResult struct {
	Relay string
	Err   error
}

// RelayHealth is the state of one relay connection, as reported by Health.
type RelayHealth struct {
	URL       string    `json:"url"`
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"`
	LastError string    `json:"last_error,omitempty"`
}

// New validates the relay URLs (ws:// or wss://, duplicates removed after normalisation) and
// returns a Pool that has not connected yet; connections are made by Subscribe and Publish.
// It returns ErrNoRelays for an empty list and an error wrapping ErrBadRelayURL, naming the
// URL, for a bad one.
func New(urls []string, opts Options) (*Pool, error) {
	if len(urls) == 0 {
		return nil, ErrNoRelays
	}
	var norm []string
	for _, u := range urls {
		n, err := normalizeURL(u)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(norm, n) {
			norm = append(norm, n)
		}
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = 500 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = 7 * time.Second
	}
	if opts.SeenTTL <= 0 {
		opts.SeenTTL = 10 * time.Minute
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 256
	}
	if opts.ExtraRelayLimit <= 0 {
		opts.ExtraRelayLimit = 16
	}
	if opts.ExtraRelayIdle <= 0 {
		opts.ExtraRelayIdle = 2 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	p := &Pool{
		urls:   norm,
		opts:   opts,
		log:    opts.Logger.With("component", "relaypool"),
		ctx:    ctx,
		cancel: cancel,
	}
	p.keepalive.interval, p.keepalive.timeout = defaultPingInterval, defaultPingTimeout
	for _, u := range norm {
		p.relays = append(p.relays, newRelay(p, u))
	}
	return p, nil
}

// normalizeURL checks that u is a ws:// or wss:// URL with a host and returns it normalised
// (nostr.NormalizeURL); otherwise an error wrapping ErrBadRelayURL.
func normalizeURL(u string) (string, error) {
	pu, err := url.Parse(u)
	if err != nil || (pu.Scheme != "ws" && pu.Scheme != "wss") || pu.Host == "" {
		return "", fmt.Errorf("%w: %q", ErrBadRelayURL, u)
	}
	return nostr.NormalizeURL(u), nil
}

// URLs returns the normalised relay URLs (a copy).
func (p *Pool) URLs() []string { return slices.Clone(p.urls) }

// Close ends every subscription (their channels are closed), closes every relay connection
// (WebSocket close handshake, all in parallel, given at most a second) and waits for all the Pool's goroutines to return. Publish calls in flight return
// ErrClosed. Close is idempotent.
func (p *Pool) Close() {
	p.lifeMu.Lock()
	p.closed = true
	p.lifeMu.Unlock()
	p.cancel(ErrClosed)
	p.wg.Wait()
}

// Health reports each relay's connection state, in URLs() order.
func (p *Pool) Health() []RelayHealth {
	out := make([]RelayHealth, 0, len(p.relays))
	for _, r := range p.relays {
		out = append(out, r.health())
	}
	return out
}

// spawn runs each f in its own goroutine owned by the Pool (Close waits for it). It starts
// none and returns false once the Pool is closed.
func (p *Pool) spawn(fs ...func()) bool {
	p.lifeMu.Lock()
	defer p.lifeMu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(len(fs))
	for _, f := range fs {
		go func() {
			defer p.wg.Done()
			f()
		}()
	}
	return true
}

// Published reports whether at least one relay accepted the event, and joins the errors of the
// relays that did not.
func Published(res []PublishResult) (int, error) {
	ok := 0
	var errs []error
	for _, r := range res {
		if r.Err == nil {
			ok++
		} else {
			errs = append(errs, fmt.Errorf("%s: %w", r.Relay, r.Err))
		}
	}
	return ok, errors.Join(errs...)
}
