package relaypool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/nbd-wtf/go-nostr"
)

// Publish sends ["EVENT", ev] (NIP-01) to every relay in parallel and waits for each relay's
// ["OK", <id>, true|false, <message>] (NIP-01, formerly NIP-20) for at most
// Options.PublishTimeout. It returns one PublishResult per relay, in the order of URLs(); Err
// is nil for OK true, and otherwise wraps ErrRejected (with the relay's message), ErrNoOK,
// ErrConnectionLost, ErrClosed, the dial error, or ctx's error. A relay that is down is dialed
// once (sharing a dial already in flight); it does not delay the others beyond that. ev is sent
// as given: it must already carry its id and signature.
func (p *Pool) Publish(ctx context.Context, ev nostr.Event) []PublishResult {
	return p.publish(ctx, ev, p.relays, make([]PublishResult, len(p.relays)))
}

// PublishTo is Publish to the pool's relays and also to urls: relays outside the pool (for
// example those a NIP-46 client named with relay= in its URI, to which the response must go).
// It returns the pool's results in URLs() order, then one per distinct URL of urls that is not
// in the pool, in the order given (normalised like New's); a URL that is not ws:// or wss://
// gets an error wrapping ErrBadRelayURL.
//
// A relay outside the pool is connected on first use and kept for later calls until unused
// for Options.ExtraRelayIdle; at most Options.ExtraRelayLimit are kept at once (the one idle
// longest is disconnected to make room; when all are in use the URL gets ErrTooManyRelays).
// Nothing is subscribed on them.
func (p *Pool) PublishTo(ctx context.Context, ev nostr.Event, urls []string) []PublishResult {
	targets := slices.Clone(p.relays)
	res := make([]PublishResult, len(p.relays), len(p.relays)+len(urls))
	seen := slices.Clone(p.urls)
	for _, u := range urls {
		n, err := normalizeURL(u)
		if err != nil {
			res = append(res, PublishResult{Relay: u, Err: err})
			targets = append(targets, nil)
			continue
		}
		if slices.Contains(seen, n) {
			continue
		}
		seen = append(seen, n)
		r, release, err := p.acquireExtra(n)
		if err != nil {
			res = append(res, PublishResult{Relay: n, Err: err})
			targets = append(targets, nil)
			continue
		}
		defer release()
		res = append(res, PublishResult{})
		targets = append(targets, r)
	}
	return p.publish(ctx, ev, targets, res)
}

// publish sends ev to each non-nil targets[i] in parallel and records its answer in res[i]
// (whose Relay it sets); res[i] of a nil target is left as it is.
func (p *Pool) publish(ctx context.Context, ev nostr.Event, targets []*relay, res []PublishResult) []PublishResult {
	msg, err := json.Marshal(nostr.EventEnvelope{Event: ev})
	var wg sync.WaitGroup
	for i, r := range targets {
		if r == nil {
			continue
		}
		res[i].Relay = r.url
		if err != nil {
			res[i].Err = fmt.Errorf("relaypool: encoding the event: %w", err)
			continue
		}
		wg.Add(1)
		go func() { // owned by this call, which waits for it
			defer wg.Done()
			res[i].Err = p.publishTo(ctx, r, ev.ID, msg)
		}()
	}
	wg.Wait()
	return res
}

// publishTo sends msg (an EVENT carrying event id) to one relay and waits for its OK.
func (p *Pool) publishTo(ctx context.Context, r *relay, id string, msg []byte) error {
	c, err := r.connect(ctx)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, p.opts.PublishTimeout)
	defer cancel()
	noOK := func(err error) error {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w within %s", ErrNoOK, p.opts.PublishTimeout)
		}
		return err
	}
	ok := c.expectOK(id)
	defer c.forgetOK(id, ok)
	if err := c.send(pctx, msg); err != nil {
		return noOK(err)
	}
	select {
	case env := <-ok:
		return okErr(env)
	case <-c.ctx.Done():
		select {
		case env := <-ok: // the OK came just before the connection ended
			return okErr(env)
		default:
		}
		return context.Cause(c.ctx)
	case <-pctx.Done():
		return noOK(pctx.Err())
	}
}

// okErr is the error a relay's OK message means: nil for true, ErrRejected with its message for
// false.
func okErr(env nostr.OKEnvelope) error {
	if env.OK {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrRejected, env.Reason)
}
