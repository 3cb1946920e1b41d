package relaypool

// auth.go — NIP-42 authentication of one connection: the relay sends ["AUTH", <challenge>];
// the Pool answers ["AUTH", <kind 22242 event>] signed by Options.AuthSigner, with tags
// ["relay", <url>] and ["challenge", <challenge>], and waits for the relay's OK. A publish
// refused with "auth-required: …" or a subscription CLOSED with it waits for that
// authentication and is tried once more.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// AuthSigner signs a NIP-42 AUTH event in place: it sets PubKey, ID and Sig of ev (kind 22242,
// CreatedAt, Tags and Content already set) with the key the Pool authenticates as — for the
// cosigner, the bunker's Nostr key. The key stays with the caller; the Pool never sees or logs it.
type AuthSigner func(ctx context.Context, ev *nostr.Event) error

// authChallengeWait bounds how long a request refused with "auth-required:" waits for the
// relay's AUTH challenge when none has come yet.
const authChallengeWait = 3 * time.Second

type authState struct {
	mu         sync.Mutex
	challenge  string        // the last challenge, "" before one came
	challenged chan struct{} // closed when the first challenge arrives
	seen       bool          // challenged is closed
	call       *authCall     // the AUTH for the current challenge, nil before one
}

// authCall is one AUTH exchange; err is readable once done is closed.
type authCall struct {
	done chan struct{}
	err  error
}

// onChallenge is called by the reader for ["AUTH", challenge]: it records the challenge and,
// with an AuthSigner, answers it in a Pool goroutine (the reader never blocks). A challenge
// equal to the one being (or already) answered is not answered again.
func (c *conn) onChallenge(challenge string) {
	p := c.relay.pool
	a := &c.auth
	a.mu.Lock()
	first := !a.seen
	a.seen = true
	same := challenge == a.challenge && a.call != nil
	a.challenge = challenge
	var call *authCall
	if p.opts.AuthSigner != nil && !same {
		call = &authCall{done: make(chan struct{})}
		a.call = call
	}
	if first {
		close(a.challenged)
	}
	a.mu.Unlock()
	if call == nil {
		if p.opts.AuthSigner == nil {
			p.log.Debug("relay sent a NIP-42 challenge; no AuthSigner to answer it", "relay", c.relay.url)
		}
		return
	}
	if !p.spawn(func() { c.authenticate(call, challenge) }) {
		call.err = ErrClosed
		close(call.done)
	}
}

// authenticate sends the AUTH event for challenge and waits for its OK (Options.PublishTimeout).
func (c *conn) authenticate(call *authCall, challenge string) {
	defer close(call.done)
	p, r := c.relay.pool, c.relay
	ctx, cancel := context.WithTimeout(c.ctx, p.opts.PublishTimeout)
	defer cancel()
	ev := nostr.Event{
		CreatedAt: nostr.Now(),
		Kind:      nostr.KindClientAuthentication,
		Tags:      nostr.Tags{{"relay", r.url}, {"challenge", challenge}},
	}
	err := func() error {
		if err := p.opts.AuthSigner(ctx, &ev); err != nil {
			return fmt.Errorf("%w: signing the AUTH event: %v", ErrAuthFailed, err)
		}
		msg, err := json.Marshal(nostr.AuthEnvelope{Event: ev})
		if err != nil {
			return fmt.Errorf("%w: %v", errEncoding, err)
		}
		ok := c.expectOK(ev.ID)
		defer c.forgetOK(ev.ID, ok)
		if err := c.send(ctx, msg); err != nil {
			return fmt.Errorf("%w: sending AUTH: %v", ErrAuthFailed, err)
		}
		select {
		case env := <-ok:
			if !env.OK {
				return fmt.Errorf("%w: relay said: %s", ErrAuthFailed, env.Reason)
			}
			return nil
		case <-ctx.Done():
			return fmt.Errorf("%w: no OK to AUTH: %v", ErrAuthFailed, context.Cause(ctx))
		}
	}()
	call.err = err
	r.recordAuth(ev.PubKey, err)
	if err != nil {
		p.log.Warn("NIP-42 authentication failed", "relay", r.url, "error", err)
	} else {
		p.log.Info("authenticated to relay (NIP-42)", "relay", r.url, "pubkey", ev.PubKey)
	}
}

// awaitAuth is called after the relay refused something with "auth-required:": it waits for
// the relay's challenge (at most authChallengeWait) and for our AUTH to it to be answered, and
// returns nil when authenticated, so that the caller may try once more. Without an AuthSigner
// it returns ErrAuthRequired, and an error wrapping ErrAuthFailed when AUTH did not work.
func (c *conn) awaitAuth(ctx context.Context) error {
	r := c.relay
	if r.pool.opts.AuthSigner == nil {
		err := fmt.Errorf("%w (no AuthSigner configured)", ErrAuthRequired)
		r.authRequired(err)
		return err
	}
	t := time.NewTimer(authChallengeWait)
	defer t.Stop()
	select {
	case <-c.auth.challenged:
	case <-t.C:
		err := fmt.Errorf("%w: the relay sent no AUTH challenge within %s", ErrAuthFailed, authChallengeWait)
		r.authRequired(err)
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return context.Cause(c.ctx)
	}
	c.auth.mu.Lock()
	call := c.auth.call
	c.auth.mu.Unlock()
	if call == nil { // cannot happen with a signer: a challenge always starts a call
		return errors.New("relaypool: no AUTH in progress")
	}
	select {
	case <-call.done:
		return call.err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.ctx.Done():
		return context.Cause(c.ctx)
	}
}
