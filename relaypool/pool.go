package relaypool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// ErrNoRelays is returned by New when the relay list is empty.
var ErrNoRelays = errors.New("relaypool: no relays configured")

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
	Logger      *slog.Logger
}

// Pool is a set of relays used as one. Create it with New, start subscriptions with Subscribe,
// and Close it when done; it is safe for concurrent use.
type Pool struct {
	urls []string
	opts Options
	log  *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	relays map[string]*relayState

	seenMu sync.Mutex
	seen   map[string]time.Time
}

type relayState struct {
	relay     *nostr.Relay // nil while disconnected
	connected bool
	lastErr   string
	since     time.Time // connected since, or disconnected since
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
func New(urls []string, opts Options) (*Pool, error) {
	if len(urls) == 0 {
		return nil, ErrNoRelays
	}
	var norm []string
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "ws" && pu.Scheme != "wss") || pu.Host == "" {
			return nil, fmt.Errorf("relaypool: relay URL %q is not a ws:// or wss:// URL", u)
		}
		n := nostr.NormalizeURL(u)
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
	if opts.PublishTimeout <= 0 {
		opts.PublishTimeout = 7 * time.Second
	}
	if opts.SeenTTL <= 0 {
		opts.SeenTTL = 10 * time.Minute
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 256
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Pool{
		urls:   norm,
		opts:   opts,
		log:    opts.Logger.With("component", "relaypool"),
		ctx:    ctx,
		cancel: cancel,
		relays: make(map[string]*relayState, len(norm)),
		seen:   make(map[string]time.Time),
	}
	for _, u := range norm {
		p.relays[u] = &relayState{since: time.Now()}
	}
	return p, nil
}

// URLs returns the normalised relay URLs (a copy).
func (p *Pool) URLs() []string { return slices.Clone(p.urls) }

// Close stops every subscription loop, closes the connections and waits for the goroutines.
func (p *Pool) Close() {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, st := range p.relays {
		if st.relay != nil {
			st.relay.Close()
			st.relay = nil
			st.connected = false
		}
	}
}

// Health reports each relay's connection state.
func (p *Pool) Health() []RelayHealth {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]RelayHealth, 0, len(p.urls))
	for _, u := range p.urls {
		st := p.relays[u]
		out = append(out, RelayHealth{URL: u, Connected: st.connected, Since: st.since, LastError: st.lastErr})
	}
	return out
}

// connect returns a live connection to url, dialing if needed.
func (p *Pool) connect(ctx context.Context, u string) (*nostr.Relay, error) {
	p.mu.Lock()
	st := p.relays[u]
	if st.relay != nil && st.relay.IsConnected() {
		r := st.relay
		p.mu.Unlock()
		return r, nil
	}
	p.mu.Unlock()

	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := nostr.RelayConnect(dctx, u)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		if st.connected || st.lastErr == "" {
			st.since = time.Now()
		}
		st.connected = false
		st.lastErr = err.Error()
		return nil, err
	}
	if st.relay != nil && st.relay.IsConnected() { // lost a race with another dialer
		r.Close()
		return st.relay, nil
	}
	st.relay, st.connected, st.lastErr, st.since = r, true, "", time.Now()
	return r, nil
}

func (p *Pool) markDown(u string, r *nostr.Relay, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.relays[u]
	if st.relay == r {
		st.relay = nil
		st.connected = false
		st.since = time.Now()
		if err != nil {
			st.lastErr = err.Error()
		}
	}
}

// firstSeen records id and reports whether it had not been seen within SeenTTL.
func (p *Pool) firstSeen(id string, now time.Time) bool {
	p.seenMu.Lock()
	defer p.seenMu.Unlock()
	if t, ok := p.seen[id]; ok && now.Sub(t) < p.opts.SeenTTL {
		return false
	}
	p.seen[id] = now
	if len(p.seen) > 4096 { // prune expired ids now and then
		for k, t := range p.seen {
			if now.Sub(t) >= p.opts.SeenTTL {
				delete(p.seen, k)
			}
		}
	}
	return true
}

// Subscribe opens the filter on every relay and returns one buffered channel (capacity
// Options.EventBuffer) of events, each event id delivered once however many relays carry it.
// Each relay's subscription is re-opened after a disconnect with growing, jittered backoff, with
// Since moved to one minute before the drop so that stored events missed meanwhile are fetched
// (duplicates are dropped by id). The channel is closed when ctx is done or the Pool is closed.
func (p *Pool) Subscribe(ctx context.Context, filter nostr.Filter) <-chan Event {
	out := make(chan Event, p.opts.EventBuffer)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, u := range p.urls {
		wg.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer wg.Done()
			p.subscribeLoop(ctx, u, filter, out)
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		select {
		case <-ctx.Done():
		case <-p.ctx.Done():
		}
		cancel()
		wg.Wait()
		close(out)
	}()
	return out
}

func (p *Pool) subscribeLoop(ctx context.Context, u string, filter nostr.Filter, out chan<- Event) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // tie this loop to the pool's lifetime too
		select {
		case <-p.ctx.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	backoff := p.opts.MinBackoff
	f := filter // our own copy; the caller's filter is never changed
	for ctx.Err() == nil {
		r, err := p.connect(ctx, u)
		if err == nil {
			var sub *nostr.Subscription
			sub, err = r.Subscribe(ctx, nostr.Filters{f})
			if err == nil {
				p.log.Info("subscribed", "relay", u)
				backoff = p.opts.MinBackoff
				err = p.pump(ctx, u, sub, out)
				sub.Unsub()
			}
			p.markDown(u, r, err)
			if ctx.Err() != nil {
				return
			}
			since := nostr.Timestamp(time.Now().Add(-time.Minute).Unix())
			if f.Since == nil || *f.Since < since {
				f.Since = &since
			}
		}
		p.log.Warn("relay unavailable, will retry", "relay", u, "error", err, "retry_in", backoff.Round(time.Millisecond))
		jitter := time.Duration((rand.Float64()*0.4 - 0.2) * float64(backoff))
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff + jitter):
		}
		backoff = min(time.Duration(float64(backoff)*1.7), p.opts.MaxBackoff)
	}
}

// pump forwards one subscription's events until it ends; it returns why.
func (p *Pool) pump(ctx context.Context, u string, sub *nostr.Subscription, out chan<- Event) error {
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case reason := <-sub.ClosedReason:
			return fmt.Errorf("relay closed the subscription: %s", reason)
		case <-sub.Relay.Context().Done():
			return fmt.Errorf("connection lost: %w", context.Cause(sub.Relay.Context()))
		case ev, ok := <-sub.Events:
			if !ok {
				return errors.New("connection lost")
			}
			if !p.firstSeen(ev.ID, time.Now()) {
				continue
			}
			select {
			case out <- Event{Event: ev, Relay: u}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// Publish sends ev to every relay in parallel and returns one PublishResult per relay, in the
// order of URLs(). A relay that is down is dialed once; it does not delay the others.
func (p *Pool) Publish(ctx context.Context, ev nostr.Event) []PublishResult {
	res := make([]PublishResult, len(p.urls))
	var wg sync.WaitGroup
	for i, u := range p.urls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = PublishResult{Relay: u}
			r, err := p.connect(ctx, u)
			if err != nil {
				res[i].Err = err
				return
			}
			pctx, cancel := context.WithTimeout(ctx, p.opts.PublishTimeout)
			defer cancel()
			if err := r.Publish(pctx, ev); err != nil {
				res[i].Err = err
			}
		}()
	}
	wg.Wait()
	return res
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
