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
// (ids are remembered for Options.SeenTTL, per Subscribe call).
//
// On each relay it sends ["REQ", <id>, filter] (NIP-01) with a fresh subscription id on the
// relay's shared connection. An event is delivered only if it arrives under that id, matches
// the filter, and has a valid id and signature; others are logged and dropped. When the
// connection drops, or the relay ends the subscription with ["CLOSED", <id>, <reason>], the
// REQ is sent again (re-dialing if needed) after a growing, jittered delay (Options.MinBackoff,
// MaxBackoff), with Since moved back from the interruption by the filter's own look-back (at
// least a minute) so that stored events missed meanwhile are fetched (duplicates are dropped by id). A relay message over 512 KiB
// drops that relay's connection, which is then re-dialed the same way.
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
	seen := newSeenSet(p.opts.SeenTTL)
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

// run keeps the subscription open on the relay until ctx ends. The backoff starts again from
// MinBackoff after an attempt that worked (EOSE or a valid event), unless the relay ended it
// with CLOSED: a relay that keeps closing the subscription is asked less and less often.
func (s *relaySubscription) run(ctx context.Context) {
	p := s.pool
	backoff := p.opts.MinBackoff
	for {
		worked := false
		opened, err := s.once(ctx, func() { worked = true })
		if ctx.Err() != nil || p.ctx.Err() != nil {
			return
		}
		if opened {
			s.filter.Since = resumeSince(s.filter, s.lookback, time.Now())
		}
		if worked && !errors.Is(err, ErrSubscriptionClosed) {
			backoff = p.opts.MinBackoff
		}
		p.log.Warn("subscription interrupted, will retry", "relay", s.relay.url, "error", err, "retry_in", backoff.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(jittered(backoff, rand.Float64())):
		}
		backoff = nextBackoff(backoff, p.opts.MaxBackoff)
	}
}

// once sends one REQ and forwards its events until the connection ends, the relay closes the
// subscription, or ctx ends; it returns whether the REQ was sent, and why it ended. working is
// called (in this goroutine) when the relay shows the subscription works: EOSE or a valid event.
func (s *relaySubscription) once(ctx context.Context, working func()) (opened bool, err error) {
	p, r := s.pool, s.relay
	c, err := r.connect(ctx)
	if err != nil {
		return false, err
	}
	id := newSubscriptionID()
	rt := c.addRoute(id, p.opts.EventBuffer)
	defer c.removeRoute(id)
	req, err := json.Marshal(nostr.ReqEnvelope{SubscriptionID: id, Filters: nostr.Filters{s.filter}})
	if err != nil {
		return false, err
	}
	if err := c.send(ctx, req); err != nil {
		return false, err
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
			return true, ctx.Err()
		case <-c.ctx.Done():
			return true, context.Cause(c.ctx)
		case reason := <-rt.closed:
			log.Warn("relay closed the subscription", "reason", reason)
			return true, fmt.Errorf("%w: %s", ErrSubscriptionClosed, reason)
		case <-rt.eose:
			log.Debug("end of stored events")
			working()
		case ev := <-rt.events:
			if err := checkEvent(s.filter, ev); err != nil {
				if errors.Is(err, ErrFilterMismatch) {
					log.Debug("dropped event", "event", ev.ID, "reason", err)
				} else {
					log.Warn("dropped event", "event", ev.ID, "pubkey", ev.PubKey, "reason", err)
				}
				continue
			}
			working()
			if !s.seen.firstSeen(ev.ID, time.Now()) {
				continue
			}
			select {
			case s.out <- Event{Event: ev, Relay: r.url}:
			case <-ctx.Done():
				return true, ctx.Err()
			}
		}
	}
}
