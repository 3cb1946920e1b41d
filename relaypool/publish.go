package relaypool

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	res := make([]PublishResult, len(p.relays))
	msg, err := json.Marshal(nostr.EventEnvelope{Event: ev})
	var wg sync.WaitGroup
	for i, r := range p.relays {
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
