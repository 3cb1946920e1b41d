package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/relaypool"
)

// Publisher is what a DM needs of the relay pool: publish an event to the pool's relays
// (Publish) or to them and a few others (PublishTo: an operator's kind 10050 DM relays), and
// subscribe to the operators' kind 10050 lists. *relaypool.Pool implements it.
type Publisher interface {
	Publish(ctx context.Context, ev nostr.Event) []relaypool.PublishResult
	PublishTo(ctx context.Context, ev nostr.Event, urls []string) []relaypool.PublishResult
	Subscribe(ctx context.Context, filter nostr.Filter) <-chan relaypool.Event
}

var _ Publisher = (*relaypool.Pool)(nil)

// Option tunes a DM; the defaults are documented on each.
type Option func(*options)

type options struct {
	lookupWait     time.Duration
	attempts       int
	backoff        time.Duration
	attemptTimeout time.Duration
	queue          int
	selfCopy       bool
}

func defaultOptions() options {
	return options{lookupWait: 5 * time.Second, attempts: 3, backoff: 5 * time.Second,
		attemptTimeout: 20 * time.Second, queue: 64, selfCopy: true}
}

// WithLookupWait bounds how long the first message waits for the operators' kind 10050 lists
// after New (default 5s); a list that arrives later is used from then on.
func WithLookupWait(d time.Duration) Option { return func(o *options) { o.lookupWait = max(d, 0) } }

// WithRetry sets how many times a gift wrap no relay accepted is published (default 3), the
// first delay between attempts (default 5s; doubled after each, ±20% jitter), and the bound
// on one attempt (default 20s). Each attempt also has the relay pool's own background retries.
func WithRetry(attempts int, backoff, attemptTimeout time.Duration) Option {
	return func(o *options) {
		o.attempts = max(attempts, 1)
		if backoff > 0 {
			o.backoff = backoff
		}
		if attemptTimeout > 0 {
			o.attemptTimeout = attemptTimeout
		}
	}
}

// WithQueueSize sets how many messages Send queues at most (default 64); Send refuses more
// with ErrQueueFull.
func WithQueueSize(n int) Option { return func(o *options) { o.queue = max(n, 1) } }

// WithoutSelfCopy stops wrapping a copy of each message to the sender's own pubkey (NIP-17
// allows it for messages that should not be kept: "by not generating a gift wrap to the
// sender's public key").
func WithoutSelfCopy() Option { return func(o *options) { o.selfCopy = false } }

// DM sends NIP-17 private direct messages from the cosigner's Nostr key to the operators.
// Create it with New, send with Send (queued) or SendWait (for a test message), Close it when
// done. It is safe for concurrent use.
type DM struct {
	sk, pub    string
	recipients []string
	pool       Publisher
	log        *slog.Logger
	opts       options
	inbox      *inboxes

	queue chan message

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// message is one Send: its rumor's id and its gift wraps.
type message struct {
	rumorID string
	wraps   []wrapped
}

// wrapped is one gift wrap and the pubkey it is for.
type wrapped struct {
	to   string
	self bool
	ev   nostr.Event
}

// Delivery is what became of one gift wrap: the pubkey it is for (hex), whether it is the
// sender's own copy, the wrap's event id, the relays' answers to its last attempt (Err nil:
// accepted; relaypool.ErrPending: still being tried in the background), the number of
// attempts, and Err (nil once at least one relay accepted it; else wrapping ErrNotDelivered).
type Delivery struct {
	Recipient string
	Self      bool
	WrapID    string
	Relays    []relaypool.PublishResult
	Attempts  int
	Err       error
}

// New returns a DM from senderSK (hex Nostr secret key, the cosigner's identity) to recipients
// (hex pubkeys or npubs; duplicates and the sender's own pubkey dropped), publishing through
// pool. It starts the subscription to the recipients' kind 10050 lists and the delivery
// goroutine; Close stops them. Errors: ErrBadSenderKey, ErrNoRecipients, ErrBadRecipient
// (naming the entry).
func New(senderSK string, recipients []string, pool Publisher, log *slog.Logger, opts ...Option) (*DM, error) {
	if !validSecretKey(senderSK) {
		return nil, ErrBadSenderKey
	}
	pub, _ := nostr.GetPublicKey(senderSK)
	var to []string
	for _, r := range recipients {
		pk, err := ParseRecipient(r)
		if err != nil {
			return nil, err
		}
		if pk != pub && !slices.Contains(to, pk) {
			to = append(to, pk)
		}
	}
	if len(to) == 0 {
		return nil, ErrNoRecipients
	}
	if pool == nil {
		return nil, errors.New("notify: New: nil Publisher")
	}
	if log == nil {
		log = slog.Default()
	}
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &DM{sk: senderSK, pub: pub, recipients: to, pool: pool, log: log.With("component", "notify"), opts: o,
		inbox: newInboxes(to), queue: make(chan message, o.queue), ctx: ctx, cancel: cancel}
	d.wg.Add(2)
	go func() { defer d.wg.Done(); d.inbox.watch(ctx, pool, o.lookupWait, d.log) }()
	go func() { defer d.wg.Done(); d.run() }()
	return d, nil
}

// PubKey is the sender's pubkey (hex), the author of the messages.
func (d *DM) PubKey() string { return d.pub }

// Recipients are the operators' pubkeys (hex), in order.
func (d *DM) Recipients() []string { return append([]string(nil), d.recipients...) }

// Send wraps text (plain text, at most MaxTextBytes) for every recipient and the sender's own
// copy, and queues the wraps for delivery; it does not wait for the relays. The rumor's
// created_at is now. Errors: ErrBadText, ErrTooLong, ErrQueueFull (too many messages waiting
// for the relays), ErrClosed, or ctx's error; a message that is queued is delivered (or its
// failure logged) by the DM's goroutine.
func (d *DM) Send(ctx context.Context, text string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d.ctx.Err() != nil {
		return ErrClosed
	}
	m, err := d.build(text, time.Now())
	if err != nil {
		return err
	}
	select {
	case d.queue <- m:
		return nil
	default:
		d.log.Warn("direct message dropped: delivery queue full", "rumor", m.rumorID, "queued", len(d.queue))
		return ErrQueueFull
	}
}

// SendWait is Send that waits for the relays: it delivers the wraps at once (each with the
// retries of WithRetry, bounded by ctx) and returns one Delivery per wrap, the recipients'
// first and the sender's copy last. The error wraps ErrNotDelivered when some recipient's wrap
// was accepted by no relay; it is also Send's errors for bad text.
func (d *DM) SendWait(ctx context.Context, text string) ([]Delivery, error) {
	if d.ctx.Err() != nil {
		return nil, ErrClosed
	}
	m, err := d.build(text, time.Now())
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	defer context.AfterFunc(d.ctx, stop)()
	res := d.deliver(ctx, m)
	var failed []string
	for _, r := range res {
		if r.Err != nil && !r.Self {
			failed = append(failed, r.Recipient)
		}
	}
	if len(failed) > 0 {
		return res, fmt.Errorf("%w: to %s", ErrNotDelivered, strings.Join(failed, ", "))
	}
	return res, nil
}

// Close stops the delivery goroutine and the kind 10050 subscription and waits for them.
// Messages still queued are dropped (their number is logged). Close is idempotent.
func (d *DM) Close() {
	d.cancel()
	d.wg.Wait()
}

// build makes the rumor and its gift wraps (the pure core, wrap.go).
func (d *DM) build(text string, now time.Time) (message, error) {
	rumor, err := Rumor(d.pub, d.recipients, text, now)
	if err != nil {
		return message{}, err
	}
	m := message{rumorID: rumor.ID}
	to := d.recipients
	if d.opts.selfCopy {
		to = append(d.Recipients(), d.pub)
	}
	for _, pk := range to {
		w, err := GiftWrap(rumor, d.sk, pk, now)
		if err != nil {
			return message{}, err
		}
		m.wraps = append(m.wraps, wrapped{to: pk, self: pk == d.pub, ev: w})
	}
	return m, nil
}

// run delivers queued messages one after another until Close.
func (d *DM) run() {
	for {
		select {
		case <-d.ctx.Done():
			if n := len(d.queue); n > 0 {
				d.log.Warn("direct messages not delivered: closing", "queued", n)
			}
			return
		case m := <-d.queue:
			if d.ctx.Err() != nil {
				d.log.Warn("direct messages not delivered: closing", "queued", len(d.queue)+1)
				return
			}
			d.deliver(d.ctx, m)
		}
	}
}

// deliver publishes every wrap of m in parallel and logs each outcome.
func (d *DM) deliver(ctx context.Context, m message) []Delivery {
	res := make([]Delivery, len(m.wraps))
	var wg sync.WaitGroup
	for i, w := range m.wraps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i] = d.deliverWrap(ctx, w)
		}()
	}
	wg.Wait()
	for _, r := range res {
		args := []any{"kind", nostr.KindGiftWrap, "rumor", m.rumorID, "wrap", r.WrapID, "recipient", r.Recipient,
			"self", r.Self, "attempts", r.Attempts, "relays", relayResults(r.Relays)}
		if r.Err != nil {
			d.log.Warn("direct message not delivered", append(args, "error", r.Err)...)
		} else {
			d.log.Info("direct message delivered", args...)
		}
	}
	return res
}

// deliverWrap publishes one wrap — to the recipient's DM relays (kind 10050) and the pool's
// relays, or to the pool's relays only — until a relay accepts it or the attempts are used up.
func (d *DM) deliverWrap(ctx context.Context, w wrapped) Delivery {
	r := Delivery{Recipient: w.to, Self: w.self, WrapID: w.ev.ID}
	backoff := d.opts.backoff
	for r.Attempts < d.opts.attempts {
		if r.Attempts > 0 {
			t := time.NewTimer(time.Duration(float64(backoff) * (0.8 + 0.4*rand.Float64())))
			select {
			case <-ctx.Done():
				t.Stop()
				r.Err = fmt.Errorf("%w: %w", ErrNotDelivered, context.Cause(ctx))
				return r
			case <-t.C:
			}
			backoff *= 2
		}
		r.Attempts++
		var inbox []string
		if !w.self {
			lctx, cancel := context.WithTimeout(ctx, d.opts.lookupWait)
			inbox = d.inbox.relays(lctx, w.to)
			cancel()
		}
		actx, cancel := context.WithTimeout(ctx, d.opts.attemptTimeout)
		if len(inbox) > 0 {
			r.Relays = d.pool.PublishTo(actx, w.ev, inbox)
		} else {
			r.Relays = d.pool.Publish(actx, w.ev)
		}
		cancel()
		n, err := relaypool.Published(r.Relays)
		if n > 0 {
			r.Err = nil
			return r
		}
		if err == nil {
			err = errors.New("no relay answered in time")
		}
		r.Err = fmt.Errorf("%w: %w", ErrNotDelivered, err)
		if ctx.Err() != nil {
			return r
		}
	}
	return r
}

// relayResults renders the relays' answers for a log line: "url ok" or "url: error".
func relayResults(res []relaypool.PublishResult) []string {
	out := make([]string, len(res))
	for i, r := range res {
		switch {
		case r.Err == nil:
			out[i] = r.Relay + " ok"
		case errors.Is(r.Err, relaypool.ErrPending):
			out[i] = r.Relay + " pending"
		default:
			out[i] = r.Relay + ": " + r.Err.Error()
		}
	}
	return out
}
