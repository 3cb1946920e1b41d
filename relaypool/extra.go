package relaypool

// extra.go — relays outside the pool that PublishTo reaches (for example the relays a NIP-46
// client named in its connect URI): connected on first use, shared by later publishes, bounded
// in number, and disconnected when idle.

import (
	"slices"
	"sync"
	"time"
)

type extraRelays struct {
	mu      sync.Mutex
	byURL   map[string]*extraRelay
	janitor bool // the idle sweep runs (started with the first extra relay)
}

type extraRelay struct {
	r        *relay
	users    int       // PublishTo calls using it now
	lastUsed time.Time // when the last user released it
}

// acquireExtra returns the extra relay for url (normalised, not one of the pool's), creating it
// if needed, and counts the caller as a user until release is called. When
// Options.ExtraRelayLimit extra relays exist, the one idle longest is retired to make room; if
// all are in use it returns ErrTooManyRelays.
func (p *Pool) acquireExtra(url string) (r *relay, release func(), err error) {
	x := &p.extra
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.byURL == nil {
		x.byURL = make(map[string]*extraRelay)
	}
	e := x.byURL[url]
	if e == nil {
		if len(x.byURL) >= p.opts.ExtraRelayLimit {
			var oldest *extraRelay
			for _, c := range x.byURL {
				if c.users == 0 && (oldest == nil || c.lastUsed.Before(oldest.lastUsed)) {
					oldest = c
				}
			}
			if oldest == nil {
				return nil, nil, ErrTooManyRelays
			}
			p.retireExtraLocked(oldest)
		}
		e = &extraRelay{r: newRelay(p, url)}
		x.byURL[url] = e
		if !x.janitor && p.spawn(p.sweepExtra) {
			x.janitor = true
		}
	}
	e.users++
	return e.r, func() {
		x.mu.Lock()
		defer x.mu.Unlock()
		e.users--
		e.lastUsed = time.Now()
	}, nil
}

// retireExtraLocked disconnects e (cause ErrIdle) and forgets it; x.mu is held.
func (p *Pool) retireExtraLocked(e *extraRelay) {
	delete(p.extra.byURL, e.r.url)
	e.r.cancel(ErrIdle)
	p.log.Debug("retired idle relay outside the pool", "relay", e.r.url)
}

// sweepExtra runs in a Pool goroutine until Close: every quarter of Options.ExtraRelayIdle it
// retires the extra relays unused for that long.
func (p *Pool) sweepExtra() {
	t := time.NewTicker(max(p.opts.ExtraRelayIdle/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-p.ctx.Done():
			return
		case now := <-t.C:
			p.extra.mu.Lock()
			for _, e := range p.extra.byURL {
				if e.users == 0 && now.Sub(e.lastUsed) >= p.opts.ExtraRelayIdle {
					p.retireExtraLocked(e)
				}
			}
			p.extra.mu.Unlock()
		}
	}
}

// extraURLs returns the URLs of the relays outside the pool that are currently kept, sorted.
func (p *Pool) extraURLs() []string {
	p.extra.mu.Lock()
	defer p.extra.mu.Unlock()
	out := make([]string, 0, len(p.extra.byURL))
	for u := range p.extra.byURL {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}
