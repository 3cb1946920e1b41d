package relaypool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// Publish sends ["EVENT", ev] (NIP-01) to every relay in parallel and collects each relay's
// ["OK", <id>, true|false, <message>] (NIP-01, formerly NIP-20). It returns as soon as the
// quorum (Options.Quorum, default a majority of the relays) has accepted ev with an OK, or every
// relay has answered, or ctx ends, with one PublishResult per relay in the order of URLs(). A
// relay that sends no OK for ephemeral events (ephemeral.go) answers an ephemeral ev as soon as
// it is written to its connection, with Unconfirmed set: it never holds Publish up, and never
// counts towards the quorum. Err is nil for
// OK true (or OK false "duplicate:"), and otherwise wraps ErrPending (no answer yet), ErrRejected
// (with the relay's message), ErrNoOK (within Options.PublishTimeout, with the relay's last
// NOTICE if any), ErrConnectionLost, ErrBackingOff (the relay is down and its next dial is over
// a second away), ErrRelayLimit (the event is over the relay's
// NIP-11 limits and was not sent), ErrAuthRequired, ErrAuthFailed, ErrClosed, or the dial error.
//
// Relays that have not accepted ev by then go on in the background: a relay with a retryable
// failure (connection, no OK, "rate-limited:", "error:", "auth-required:") is tried again with
// growing, jittered delays for up to Options.PublishRetry (default 2m) — at most
// maxBackgroundRetries publishes at once, the Pool's goroutines (Close ends them). A relay that
// answers "auth-required:" is authenticated (NIP-42, Options.AuthSigner) and tried once more at
// once. ev is sent as given: it must already carry its id and signature.
func (p *Pool) Publish(ctx context.Context, ev nostr.Event) []PublishResult {
	targets := make([]target, len(p.relays))
	for i, r := range p.relays {
		targets[i] = target{r: r}
	}
	return p.publish(ctx, ev, targets, make([]PublishResult, len(p.relays)))
}

// PublishTo is Publish to the pool's relays and also to urls: relays outside the pool (for
// example those a NIP-46 client named with relay= in its URI, to which the response must go).
// It returns the pool's results in URLs() order, then one per distinct URL of urls that is not
// in the pool, in the order given (normalised like New's); a URL that is not ws:// or wss://
// gets an error wrapping ErrBadRelayURL. The quorum counts every relay published to.
//
// A relay outside the pool is connected on first use and kept for later calls until unused
// for Options.ExtraRelayIdle; at most Options.ExtraRelayLimit are kept at once (the one idle
// longest is disconnected to make room; when all are in use the URL gets ErrTooManyRelays).
// Nothing is subscribed on them.
func (p *Pool) PublishTo(ctx context.Context, ev nostr.Event, urls []string) []PublishResult {
	targets := make([]target, len(p.relays), len(p.relays)+len(urls))
	for i, r := range p.relays {
		targets[i] = target{r: r}
	}
	res := make([]PublishResult, len(p.relays), len(p.relays)+len(urls))
	seen := slices.Clone(p.urls)
	for _, u := range urls {
		n, err := normalizeURL(u)
		if err != nil {
			res = append(res, PublishResult{Relay: u, Err: err})
			targets = append(targets, target{})
			continue
		}
		if slices.Contains(seen, n) {
			continue
		}
		seen = append(seen, n)
		r, release, err := p.acquireExtra(n)
		if err != nil {
			res = append(res, PublishResult{Relay: n, Err: err})
			targets = append(targets, target{})
			continue
		}
		res = append(res, PublishResult{})
		targets = append(targets, target{r: r, release: release})
	}
	return p.publish(ctx, ev, targets, res)
}

// target is one relay to publish to; release, if set, is called when the publish (with its
// background retries) is done with the relay.
type target struct {
	r       *relay
	release func()
}

// firstAttemptMaxBackoffWait bounds how long a publish waits for a backing-off relay's next dial
// before reporting ErrBackingOff for it (and going on in the background): a relay that is down
// for longer does not hold up Publish when the quorum needs every answer.
const firstAttemptMaxBackoffWait = time.Second

// maxBackgroundRetries bounds the publishes retried in the background at once; beyond it a
// failed relay is not retried (and that is logged).
const maxBackgroundRetries = 1024

// answer is one relay's first outcome for a publish; unconfirmed (with err nil): delivered to a
// relay that sends no OK for ephemeral events.
type answer struct {
	i           int
	err         error
	unconfirmed bool
}

// publish sends ev to each targets[i] with a relay and records its first answer in res[i]
// (whose Relay it sets); res[i] of a target without a relay is left as it is.
func (p *Pool) publish(ctx context.Context, ev nostr.Event, targets []target, res []PublishResult) []PublishResult {
	msg, err := json.Marshal(nostr.EventEnvelope{Event: ev})
	answers := make(chan answer, len(targets)) // never blocks a sender
	started := 0
	for i, t := range targets {
		if t.r == nil {
			continue
		}
		res[i].Relay = t.r.url
		if err != nil {
			res[i].Err = fmt.Errorf("%w: %v", errEncoding, err)
		} else if p.spawn(func() { p.deliver(i, t, &ev, msg, answers) }) {
			started++
			res[i].Err = ErrPending
			continue
		} else {
			res[i].Err = ErrClosed
		}
		if t.release != nil {
			t.release()
		}
	}
	need := quorumOf(p.opts.Quorum, started)
	for ok := 0; started > 0 && ok < need; started-- {
		select {
		case a := <-answers:
			res[a.i].Err, res[a.i].Unconfirmed = a.err, a.unconfirmed
			if a.err == nil && !a.unconfirmed {
				ok++
			}
		case <-ctx.Done():
			return res
		}
	}
	return res
}

// deliver runs in a Pool goroutine: it publishes to one relay, reports the first outcome on
// answers, and then, while it is retryable, tries again in the background.
func (p *Pool) deliver(i int, t target, ev *nostr.Event, msg []byte, answers chan<- answer) {
	if t.release != nil {
		defer t.release()
	}
	r := t.r
	ctx, cancel := context.WithTimeout(r.ctx, p.opts.PublishRetry)
	defer cancel()
	// An ephemeral event to a relay that sends no OK for those is answered once written (sent is
	// called from publishOnce, in this goroutine); publishOnce still waits for an OK to learn
	// whether the relay has started sending them.
	reported := false
	sent := func() {
		if !reported {
			reported = true
			answers <- answer{i: i, unconfirmed: true}
		}
	}
	err := p.publishOnce(ctx, r, ev, msg, min(p.opts.PublishTimeout, firstAttemptMaxBackoffWait), sent)
	if errors.Is(err, errUnconfirmed) {
		sent()
		return
	}
	if !reported {
		answers <- answer{i: i, err: err}
	}
	if ctx.Err() != nil { // the Pool is closing (or the relay retired): nothing to retry in
		return
	}
	if !retryable(err) {
		return
	}
	select {
	case p.retrySlots <- struct{}{}:
		defer func() { <-p.retrySlots }()
	default:
		p.log.Warn("not retrying publish: too many in the background", "relay", r.url, "event", ev.ID, "error", err)
		return
	}
	log := p.log.With("relay", r.url, "event", ev.ID)
	log.Info("publish failed, retrying in the background", "error", err)
	backoff := p.opts.MinBackoff
	for attempt := 2; ; attempt++ {
		tm := time.NewTimer(jittered(backoff, rand.Float64()))
		select {
		case <-ctx.Done():
			tm.Stop()
			if cause := context.Cause(ctx); errors.Is(cause, ErrClosed) || errors.Is(cause, ErrIdle) {
				log.Debug("stopped publishing", "attempts", attempt-1, "reason", cause)
			} else {
				log.Warn("gave up publishing", "attempts", attempt-1, "last_error", err, "reason", cause)
			}
			return
		case <-tm.C:
		}
		// The relay's own backoff bounds the dials; wait for it as long as the retry window lasts.
		err = p.publishOnce(ctx, r, ev, msg, p.opts.PublishRetry, nil)
		if err == nil || errors.Is(err, errUnconfirmed) {
			log.Info("published after retrying", "attempts", attempt, "unconfirmed", err != nil)
			return
		}
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrIdle) {
			log.Debug("stopped publishing", "attempts", attempt, "reason", err)
			return
		}
		if !retryable(err) {
			log.Warn("gave up publishing", "attempts", attempt, "error", err)
			return
		}
		backoff = nextBackoff(backoff, p.opts.MaxBackoff)
	}
}

// publishOnce sends msg (the EVENT carrying ev) to one relay and waits for its OK, for at most
// Options.PublishTimeout after sending; it waits for a backing-off relay's next attempt only
// within maxWait. A refusal with "auth-required:" is followed by NIP-42 AUTH and one more send.
//
// For an ephemeral ev on a relay marked as sending no OK for those, sent (if not nil) is called
// once the event is written; no OK within the timeout then gives errUnconfirmed. No OK for an
// ephemeral ev on an unmarked relay whose connection then answers a ping marks the relay and
// gives errUnconfirmed too; an OK true for an ephemeral ev clears the mark.
func (p *Pool) publishOnce(ctx context.Context, r *relay, ev *nostr.Event, msg []byte, maxWait time.Duration, sent func()) (err error) {
	var latency time.Duration
	defer func() {
		if !errors.Is(err, ErrClosed) && !errors.Is(err, ErrIdle) && ctx.Err() == nil {
			r.recordPublish(err, latency)
		}
	}()
	if err := r.currentLimits().checkPublish(ev, msg); err != nil {
		return err
	}
	c, err := r.connect(ctx, maxWait)
	if err != nil {
		return err
	}
	if err := c.relay.currentLimits().checkPublish(ev, msg); err != nil { // fetched by this dial
		return err
	}
	ephemeral := isEphemeral(ev.Kind)
	for authTried := false; ; authTried = true {
		var onSent func()
		if ephemeral && r.isEphemeralUnacked() {
			onSent = sent
		}
		var env nostr.OKEnvelope
		env, latency, err = c.sendEvent(ctx, ev.ID, msg, p.opts.PublishTimeout, onSent)
		if err != nil {
			if ephemeral && errors.Is(err, ErrNoOK) && c.cause() == nil {
				if r.isEphemeralUnacked() {
					return errUnconfirmed
				}
				if c.alive(ctx) && r.markEphemeralUnacked(fmt.Sprintf("no OK for an ephemeral event within %s, though the connection answered a ping sent after it", p.opts.PublishTimeout), true) {
					return errUnconfirmed
				}
			}
			return err
		}
		if ephemeral {
			r.ephemeralOK(okAccepted(env))
		}
		if okAccepted(env) {
			return nil
		}
		if !isAuthRequired(env.Reason) {
			return &rejection{env.Reason}
		}
		if authTried {
			err := fmt.Errorf("%w: still refused after AUTH: %s", ErrAuthRequired, env.Reason)
			r.authRequired(err)
			return err
		}
		if err := c.awaitAuth(ctx); err != nil {
			return fmt.Errorf("%w (the relay said: %s)", err, env.Reason)
		}
	}
}

// sendEvent writes msg (an EVENT carrying event id) and waits up to timeout for the relay's OK;
// it returns the OK and the time from send to OK. No OK is an error wrapping ErrNoOK (with the
// relay's last NOTICE, if any), a lost connection its cause. sent, if not nil, is called once
// msg is written, before the wait.
func (c *conn) sendEvent(ctx context.Context, id string, msg []byte, timeout time.Duration, sent func()) (nostr.OKEnvelope, time.Duration, error) {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	noOK := func(err error) error {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w within %s", ErrNoOK, timeout)
			c.relay.mu.Lock()
			notice := c.relay.stats.lastNotice
			c.relay.mu.Unlock()
			if notice != "" {
				err = fmt.Errorf("%w (last NOTICE: %q)", err, notice)
			}
		}
		return err
	}
	ok := c.expectOK(id)
	defer c.forgetOK(id, ok)
	start := time.Now()
	if err := c.send(pctx, msg); err != nil {
		return nostr.OKEnvelope{}, 0, noOK(err)
	}
	if sent != nil {
		sent()
	}
	select {
	case env := <-ok:
		return env, time.Since(start), nil
	case <-c.ctx.Done():
		select {
		case env := <-ok: // the OK came just before the connection ended
			return env, time.Since(start), nil
		default:
		}
		return nostr.OKEnvelope{}, 0, context.Cause(c.ctx)
	case <-pctx.Done():
		return nostr.OKEnvelope{}, 0, noOK(pctx.Err())
	}
}

// okErr is the error a relay's OK message means: nil when it accepted the event (OK true, or
// "duplicate:"), otherwise a rejection wrapping ErrRejected with its message.
func okErr(env nostr.OKEnvelope) error {
	if okAccepted(env) {
		return nil
	}
	return &rejection{env.Reason}
}
