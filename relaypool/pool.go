package relaypool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
	// Quorum is how many relays must accept a published event before Publish returns success
	// (default, and any value ≤ 0: a majority, n/2+1 of the n relays published to; a value over
	// n means all). The others go on being tried in the background.
	Quorum int
	// PublishRetry is how long a relay that has not accepted a published event is retried in
	// the background (default 2m).
	PublishRetry time.Duration
	// AuthSigner, if set, answers relays' NIP-42 AUTH challenges (see AuthSigner). Without it,
	// a relay that requires AUTH refuses us (ErrAuthRequired, state auth-required).
	AuthSigner AuthSigner
	// SeenTTL is how long an event id is remembered for de-duplication (default 10m), and
	// SeenMax how many at most per Subscribe call (default 100000, about 15 MB; the oldest are
	// forgotten first).
	SeenTTL time.Duration
	SeenMax int
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

	httpClient *http.Client  // WebSocket dials and NIP-11 fetches
	retrySlots chan struct{} // bounds background publish retries (maxBackgroundRetries)

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
	// Received is when the pool took the event from that relay's connection, before checking
	// it: where a consumer's handling time of the event starts.
	Received time.Time
	// verified is set only by the pool: the event it checked (id and signature).
	verified *nostr.Event
}

// Verified reports whether the pool checked the id and BIP-340 signature (VerifyEvent) of
// e.Event before delivering it: true for every event out of Subscribe, false for an Event made
// anywhere else (a test's fake pool, a literal) and for a delivered Event whose Event field was
// replaced since; a consumer must then check it itself. A consumer that checks "Verified() ||
// VerifyEvent(ev.Event) == nil" verifies each event exactly once and cannot skip the check by
// mistake. The event must not be modified after delivery.
func (e Event) Verified() bool { return e.verified != nil && e.verified == e.Event }

// PublishResult is one relay's answer to a published event: Err is nil when the relay said
// OK true (NIP-01), and otherwise holds its reason, a connection error, or a timeout.
//
// Unconfirmed (with Err nil) means the event was delivered but not acknowledged: it is an
// ephemeral event (kind 20000–29999, such as NIP-46's 24133) written to the connection of a
// relay that sends no OK for ephemeral events (see RelayHealth.EphemeralUnacked). It does not
// count towards the quorum.
type PublishResult struct {
	Relay       string
	Err         error
	Unconfirmed bool
}

// RelayHealth is the state of one relay connection and its counters since New, as reported by
// Health.
type RelayHealth struct {
	URL   string `json:"url"`
	Extra bool   `json:"extra,omitempty"` // a relay outside the pool, reached by PublishTo
	State State  `json:"state"`
	// Connected is true in StateConnected and StateAuthRequired.
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since"` // when State last changed
	LastError string    `json:"last_error,omitempty"`
	// Failures counts consecutive failed attempts; RetryAt is the next dial while backing off.
	Failures int       `json:"failures"`
	RetryAt  time.Time `json:"retry_at,omitzero"`
	// Connects and Disconnects count WebSocket connections made and ended.
	Connects    uint64 `json:"connects"`
	Disconnects uint64 `json:"disconnects"`
	// Published and PublishFailed count publish attempts answered OK and not (per attempt,
	// background retries included); LastOKLatency is the time from sending the last accepted
	// event to its OK, at LastOKAt.
	Published     uint64 `json:"published"`
	PublishFailed uint64 `json:"publish_failed"`
	// Unconfirmed counts ephemeral events delivered to this relay without an OK, because it
	// is marked EphemeralUnacked: it sends no OK for ephemeral events (NIP-11 names a release
	// known for that, or one such event got no OK while the connection answered pings).
	Unconfirmed      uint64        `json:"unconfirmed"`
	EphemeralUnacked bool          `json:"ephemeral_unacked,omitempty"`
	LastOKLatency    time.Duration `json:"last_ok_latency_ns"`
	LastOKAt         time.Time     `json:"last_ok_at,omitzero"`
	// EventsReceived counts valid events received on subscriptions (before de-duplication),
	// the last at LastEventAt; EventsDropped counts those dropped for a bad id or signature.
	EventsReceived uint64    `json:"events_received"`
	EventsDropped  uint64    `json:"events_dropped"`
	LastEventAt    time.Time `json:"last_event_at,omitzero"`
	// AuthPubKey is the pubkey authenticated on the current connection (NIP-42), if any.
	AuthPubKey string `json:"auth_pubkey,omitempty"`
	LastNotice string `json:"last_notice,omitempty"`
	// Limits are the relay's NIP-11 limits in force (zero: none announced or no document).
	Limits Limits `json:"limits"`
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
	if opts.SeenMax <= 0 {
		opts.SeenMax = defaultSeenMax
	}
	if opts.PublishRetry <= 0 {
		opts.PublishRetry = 2 * time.Minute
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

		httpClient: &http.Client{Transport: newTransport()},
		retrySlots: make(chan struct{}, maxBackgroundRetries),
	}
	p.keepalive.interval, p.keepalive.timeout = defaultPingInterval, defaultPingTimeout
	for _, u := range norm {
		p.relays = append(p.relays, newRelay(p, u))
	}
	return p, nil
}

// newTransport is http.DefaultTransport with a dialer that turns Nagle's algorithm off
// (TCP_NODELAY) on every relay connection: NIP-46 messages are small writes that must leave at
// once, not wait for the previous segment's ACK (a delayed ACK stalls them by up to ~40 ms).
// Go's net package sets TCP_NODELAY on new TCP connections already; this keeps it so whatever
// the defaults. A relay's own side is up to the relay (nostr-rs-relay 0.8.12 leaves it off).
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	t.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if tc, ok := c.(*net.TCPConn); ok {
			if err := tc.SetNoDelay(true); err != nil {
				c.Close()
				return nil, fmt.Errorf("relaypool: setting TCP_NODELAY: %w", err)
			}
		}
		return c, nil
	}
	return t
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

// Health reports each relay's state and counters: the pool's relays in URLs() order, then the
// relays outside the pool that PublishTo currently keeps (Extra set), by URL.
func (p *Pool) Health() []RelayHealth {
	out := make([]RelayHealth, 0, len(p.relays))
	for _, r := range p.relays {
		out = append(out, r.health())
	}
	p.extra.mu.Lock()
	extras := make([]*relay, 0, len(p.extra.byURL))
	for _, e := range p.extra.byURL {
		extras = append(extras, e.r)
	}
	p.extra.mu.Unlock()
	slices.SortFunc(extras, func(a, b *relay) int { return strings.Compare(a.url, b.url) })
	for _, r := range extras {
		h := r.health()
		h.Extra = true
		out = append(out, h)
	}
	return out
}

// Quorum is the number of relays that must accept an event Publish sends to the pool's relays
// (Options.Quorum resolved for len(URLs())).
func (p *Pool) Quorum() int { return quorumOf(p.opts.Quorum, len(p.relays)) }

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

// Published counts the relays that accepted the event — OK true, or delivered but unconfirmed
// (PublishResult.Unconfirmed) — and joins the errors of the relays that did not. Relays still
// being tried in the background (ErrPending: the quorum was reached before they answered) are
// neither counted nor errors; the background attempt logs its outcome.
func Published(res []PublishResult) (int, error) {
	ok := 0
	var errs []error
	for _, r := range res {
		switch {
		case r.Err == nil:
			ok++
		case errors.Is(r.Err, ErrPending):
		default:
			errs = append(errs, fmt.Errorf("%s: %w", r.Relay, r.Err))
		}
	}
	return ok, errors.Join(errs...)
}
