package relaypool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// closeTimeout bounds sending CLOSE when a subscription ends while its connection is up.
const closeTimeout = 2 * time.Second

// Subscribe opens the filter on every relay and returns one buffered channel (capacity
// Options.EventBuffer) of events, each event id delivered once however many relays carry it
// (ids are remembered for Options.SeenTTL, at most Options.SeenMax of them, per Subscribe call).
//
// On each relay it sends ["REQ", <id>, filter] (NIP-01) with a fresh subscription id on the
// relay's shared connection, the filter's limit lowered to the relay's NIP-11 max_limit, and
// waits for a slot while max_subscriptions REQs are open there. An event is delivered only if
// it arrives under that id, matches the filter, and has a valid id and signature (checked once
// per id); others are logged and dropped. When the connection drops, the REQ is sent again as
// soon as the relay is reconnected (the relay's backoff: Options.MinBackoff growing ×1.7 up to
// MaxBackoff, ±20% jitter); when the relay ends the subscription with ["CLOSED", <id>,
// <reason>], after a growing, jittered delay of its own — or at once after NIP-42 AUTH when the
// reason is "auth-required:". Since is then moved back from the interruption by the filter's own
// look-back (at least a minute) so that stored events missed meanwhile are fetched (duplicates
// are dropped by id). A relay message over 512 KiB drops that relay's connection, which is then
// re-dialed the same way.
//
// Events wait in a buffer of Options.EventBuffer per relay until the channel has room; when a
// consumer falls that far behind, further events from that relay are dropped (and logged)
// rather than stalling the shared connection, which publishes need for their OKs.
//
// The channel is closed when ctx is done or the Pool is closed; ending ctx sends CLOSE to the
// relays still connected. The caller's filter is not modified.
func (p *Pool) Subscribe(ctx context.Context, filter nostr.Filter) <-chan Event {
	filter = filter.Clone() // read by the relay loops; the caller may reuse theirs
	out := make(chan Event, p.opts.EventBuffer)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.ctx, cancel)
	seen := newSeenSet(p.opts.SeenTTL, p.opts.SeenMax)
	width := lookback(filter, time.Now())

	var loops sync.WaitGroup
	loops.Add(len(p.relays))
	fs := make([]func(), 0, len(p.relays)+1)
	for _, r := range p.relays {
		fs = append(fs, func() {
			defer loops.Done()
			s := &relaySubscription{pool: p, relay: r, filter: filter, lookback: width, seen: seen, out: out}
			s.run(ctx)
		})
	}
	fs = append(fs, func() {
		loops.Wait()
		stop()
		cancel()
		close(out)
	})
	if !p.spawn(fs...) {
		stop()
		cancel()
		close(out)
	}
	return out
}

// relaySubscription is one Subscribe call on one relay.
type relaySubscription struct {
	pool   *Pool
	relay  *relay
	filter nostr.Filter // as last sent; only Since changes, the caller's copy never does
	// lookback is how far back Since reaches when the subscription is re-sent (see lookback).
	lookback time.Duration
	seen     *seenSet
	out      chan<- Event
}

// run keeps the subscription open on the relay until ctx ends. After a lost connection it asks
// again as soon as the relay is connected again (the relay's own backoff paces the dials); after
// the relay ended it with CLOSED it waits a growing, jittered delay first, which starts again
// from MinBackoff after an attempt that worked (EOSE or a valid event) unless the relay keeps
// closing the subscription.
func (s *relaySubscription) run(ctx context.Context) {
	p := s.pool
	backoff := p.opts.MinBackoff
	for {
		worked := false
		opened, err := s.once(ctx, func() { worked = true })
		if ctx.Err() != nil || p.ctx.Err() != nil || s.relay.ctx.Err() != nil {
			return
		}
		if opened {
			s.filter.Since = resumeSince(s.filter, s.lookback, time.Now())
		}
		closed := errors.Is(err, ErrSubscriptionClosed)
		if worked && !closed {
			backoff = p.opts.MinBackoff
		}
		if !closed && !errors.Is(err, errNoConnection) {
			// The connection ended or could not be made: the relay's backoff paces the next dial.
			p.log.Warn("subscription interrupted, will resume when the relay is back", "relay", s.relay.url, "error", err)
			continue
		}
		p.log.Warn("subscription interrupted, will retry", "relay", s.relay.url, "error", err, "retry_in", backoff.Round(time.Millisecond))
		t := time.NewTimer(jittered(backoff, rand.Float64()))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = nextBackoff(backoff, p.opts.MaxBackoff)
	}
}

// errNoConnection marks a subscription attempt that failed for a reason other than the
// connection (encoding), which the relay's backoff does not pace.
var errNoConnection = errors.New("relaypool: subscription not sent")

// once sends one REQ and forwards its events until the connection ends, the relay closes the
// subscription, or ctx ends; it returns whether the REQ was sent, and why it ended. working is
// called (in this goroutine) when the relay shows the subscription works: EOSE or a valid event.
// A CLOSED with "auth-required:" is answered with NIP-42 AUTH and one more REQ.
func (s *relaySubscription) once(ctx context.Context, working func()) (opened bool, err error) {
	r := s.relay
	c, err := r.connect(ctx, maxWaitForever)
	if err != nil {
		return false, err
	}
	if err := r.acquireSub(ctx); err != nil {
		return false, err
	}
	defer r.releaseSub()
	for authTried := false; ; authTried = true {
		opened, reason, err := s.req(ctx, c, working)
		if reason == "" || !isAuthRequired(reason) {
			return opened, err
		}
		if authTried {
			err := fmt.Errorf("%w: still refused after AUTH: %s", ErrAuthRequired, reason)
			r.authRequired(err)
			return opened, fmt.Errorf("%w: %w", ErrSubscriptionClosed, err)
		}
		if aerr := c.awaitAuth(ctx); aerr != nil {
			return opened, fmt.Errorf("%w: %s: %w", ErrSubscriptionClosed, reason, aerr)
		}
	}
}

// maxWaitForever makes connect wait out any backoff.
const maxWaitForever = time.Duration(1<<63 - 1)

// req sends one REQ on c and forwards its events until c ends, the relay closes the
// subscription (its reason is returned), or ctx ends.
func (s *relaySubscription) req(ctx context.Context, c *conn, working func()) (opened bool, closedReason string, err error) {
	p, r := s.pool, s.relay
	limits := r.currentLimits()
	id := newSubscriptionID(limits.MaxSubidLength)
	rt := c.addRoute(id, p.opts.EventBuffer)
	defer c.removeRoute(id)
	req, err := json.Marshal(nostr.ReqEnvelope{SubscriptionID: id, Filters: nostr.Filters{limits.adjustFilter(s.filter)}})
	if err != nil {
		return false, "", fmt.Errorf("%w: %w: %v", errNoConnection, errEncoding, err)
	}
	if limits.MaxMessageLength > 0 && len(req) > limits.MaxMessageLength {
		return false, "", fmt.Errorf("%w: %w: the REQ is %d bytes, the relay accepts at most %d (max_message_length)", errNoConnection, ErrRelayLimit, len(req), limits.MaxMessageLength)
	}
	if err := c.send(ctx, req); err != nil {
		return false, "", err
	}
	log := p.log.With("relay", r.url, "subscription", id)
	log.Info("subscribed")
	for {
		select {
		case <-ctx.Done():
			if c.ctx.Err() == nil {
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
				msg, _ := json.Marshal(nostr.CloseEnvelope(id))
				_ = c.send(cctx, msg)
				cancel()
			}
			return true, "", ctx.Err()
		case <-c.ctx.Done():
			return true, "", context.Cause(c.ctx)
		case reason := <-rt.closed:
			log.Warn("relay closed the subscription", "reason", reason)
			return true, reason, fmt.Errorf("%w: %s", ErrSubscriptionClosed, reason)
		case <-rt.eose:
			log.Debug("end of stored events")
			working()
		case ev := <-rt.events:
			now := time.Now()
			if err := checkEventOnce(s.filter, ev, s.seen, now); err != nil {
				switch {
				case errors.Is(err, errDuplicate):
					working()
				case errors.Is(err, ErrFilterMismatch):
					log.Debug("dropped event", "event", ev.ID, "reason", err)
				default:
					r.recordEvent(false)
					log.Warn("dropped event", "event", ev.ID, "pubkey", ev.PubKey, "reason", err)
				}
				continue
			}
			working()
			r.recordEvent(true)
			if !s.seen.firstSeen(ev.ID, now) {
				continue
			}
			select {
			case s.out <- Event{Event: ev, Relay: r.url, Received: now, verified: ev}:
			case <-ctx.Done():
				return true, "", ctx.Err()
			}
		}
	}
}
