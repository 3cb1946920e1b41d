package signer

import (
	"context"
	"slices"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46/session"
	"github.com/custodyagents/cosigner/relaypool"
)

// The relays of clients that named their own (nostrconnect://): pools opened on them, closed
// when idle or no longer used; and the per-client activity counts flushed to the store.

// setClientRelays records client's own relays and opens (and serves) those outside the pool.
// It is called from goroutines owned by Run (or before Run starts serving).
func (s *RemoteSigner) setClientRelays(client string, relays []string) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	s.clientRelays[client] = slices.Clone(relays)
	if s.dial == nil || s.runCtx == nil || s.runCtx.Err() != nil {
		return
	}
	for _, u := range relays {
		if slices.Contains(s.pool.URLs(), u) || s.extra[u] != nil {
			continue
		}
		if len(s.extra) >= MaxClientRelays {
			s.log.Warn("too many client relays; not opening another", "relay", u, "max", MaxClientRelays)
			return
		}
		p, err := s.dial([]string{u})
		if err != nil {
			s.log.Warn("cannot use a client's relay", "relay", u, "error", err)
			continue
		}
		pctx, cancel := context.WithCancel(s.runCtx)
		s.extra[u] = &extraPool{pool: p, cancel: cancel, lastUsed: s.now()}
		s.serveWith(pctx, s.filter, p, u)
	}
}

// extraPool is a pool the remote signer opened on one client relay.
type extraPool struct {
	pool     ClosablePool
	cancel   context.CancelFunc // ends its subscription
	lastUsed time.Time          // last event from it or response to it
}

func (e *extraPool) close() {
	e.cancel()
	e.pool.Close()
}

func (s *RemoteSigner) touchExtra(u string) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	if e := s.extra[u]; e != nil {
		e.lastUsed = s.now()
	}
}

// ClientRelayPools returns the relay URLs the remote signer has a pool open on for clients (its
// own relays not included), sorted.
func (s *RemoteSigner) ClientRelayPools() []string {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	out := make([]string, 0, len(s.extra))
	for u := range s.extra {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// releaseClientRelays forgets client's own relays (logout, switch_relays, a session that is
// gone) and closes the pools no other client uses.
func (s *RemoteSigner) releaseClientRelays(clients ...string) {
	s.clientMu.Lock()
	for _, c := range clients {
		delete(s.clientRelays, c)
		delete(s.awaiting, c)
	}
	closing := s.unusedExtraLocked(func(u string, e *extraPool) bool {
		for _, rs := range s.clientRelays {
			if slices.Contains(rs, u) {
				return false
			}
		}
		return true
	})
	s.clientMu.Unlock()
	s.closePools(closing)
}

// closeIdle closes the client-relay pools unused for longer than the idle limit.
func (s *RemoteSigner) closeIdle() {
	if s.idle <= 0 {
		return
	}
	now := s.now()
	s.clientMu.Lock()
	closing := s.unusedExtraLocked(func(_ string, e *extraPool) bool { return now.Sub(e.lastUsed) > s.idle })
	s.clientMu.Unlock()
	s.closePools(closing)
}

// unusedExtraLocked removes from s.extra the pools drop selects and returns them (caller holds
// clientMu; it closes them after unlocking).
func (s *RemoteSigner) unusedExtraLocked(drop func(u string, e *extraPool) bool) map[string]*extraPool {
	out := map[string]*extraPool{}
	for u, e := range s.extra {
		if drop(u, e) {
			out[u] = e
			delete(s.extra, u)
		}
	}
	return out
}

func (s *RemoteSigner) closePools(ps map[string]*extraPool) {
	for u, e := range ps {
		e.close()
		s.log.Info("closed a client's relay", "relay", u)
	}
}

// syncSessions releases the relays of clients whose session is gone (for example ended with
// `cosigner clients revoke` while the daemon runs).
func (s *RemoteSigner) syncSessions(ctx context.Context) {
	ss, err := s.sessions.ListSessions(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("cannot read client sessions", "error", err)
		}
		return
	}
	live := map[string]bool{}
	for _, c := range ss {
		live[c.Client] = true
	}
	var gone []string
	s.clientMu.Lock()
	for c := range s.clientRelays {
		if !live[c] {
			gone = append(gone, c)
		}
	}
	s.clientMu.Unlock()
	if len(gone) > 0 {
		s.releaseClientRelays(gone...)
	}
}

// noteActivity counts one request from client (flushed by flushActivity).
func (s *RemoteSigner) noteActivity(client string) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	a, ok := s.activity[client]
	if !ok && len(s.activity) >= maxActivityClients {
		return
	}
	a.Requests++
	a.LastSeen = s.now()
	s.activity[client] = a
}

func (s *RemoteSigner) flushActivity(ctx context.Context) {
	s.clientMu.Lock()
	act := s.activity
	s.activity = make(map[string]session.Activity)
	s.clientMu.Unlock()
	if err := s.sessions.RecordActivity(ctx, act); err != nil && ctx.Err() == nil {
		s.log.Warn("cannot record client activity", "error", err)
	}
}

func (s *RemoteSigner) closeExtra() {
	s.clientMu.Lock()
	all := s.unusedExtraLocked(func(string, *extraPool) bool { return true })
	s.clientMu.Unlock()
	for _, e := range all {
		e.close()
	}
}

// targets returns where a response to client goes besides the main pool's relays: the pools
// opened on the client's own relays (and on the relay its request arrived on), and the client
// relays that have no such pool (no PoolDialer, or MaxClientRelays reached).
func (s *RemoteSigner) targets(client, arrivedOn string) (pools []RelayPool, other []string) {
	s.clientMu.Lock()
	defer s.clientMu.Unlock()
	seen := map[string]bool{}
	for _, u := range s.pool.URLs() {
		seen[u] = true
	}
	for _, u := range append(slices.Clone(s.clientRelays[client]), arrivedOn) {
		if u == "" || seen[u] {
			continue
		}
		seen[u] = true
		if e := s.extra[u]; e != nil {
			e.lastUsed = s.now()
			pools = append(pools, e.pool)
		} else if s.clientRelaysKnown(client, u) {
			other = append(other, u)
		}
	}
	return pools, other
}

// clientRelaysKnown reports whether u is one of client's recorded relays (callers hold clientMu).
func (s *RemoteSigner) clientRelaysKnown(client, u string) bool {
	return slices.Contains(s.clientRelays[client], u)
}

// PublisherTo is a RelayPool that can also publish to relays outside itself
// (relaypool.Pool.PublishTo); the remote signer uses it for a client's relays it has no pool on.
type PublisherTo interface {
	PublishTo(ctx context.Context, ev nostr.Event, urls []string) []relaypool.PublishResult
}
