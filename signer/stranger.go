package signer

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
)

// Events from strangers — pubkeys with no session and no nostrconnect response awaiting their
// first request — are filtered in memory before anything is written or answered. Anyone can
// make fresh Nostr keys for free, so each such event must cost the co-signer no disk write and
// no signed answer (which relays may count against the co-signer's key). The one exception is
// NIP-46 connect carrying a connect secret that is known and unused (a bunker:// URI the
// operator handed out): it goes on like a client's request, is recorded and is answered "ack".
// A connect with any other secret is dropped unanswered and unrecorded; it is counted
// (DropStats) and summarised in the log at debug level every dropLogEvery.
//
// A stranger's event also costs as little CPU as can be: the signer checks its BIP-340
// signature, the costliest check, only once its content is a connect with a usable secret, and
// drops everything else before. (The relay pool has checked every event it delivers, once, and
// says so in relaypool.Event.Verified; the signer checks only events that did not come out of a
// pool subscription.) So the pubkey an unchecked stranger's event names keys in-memory state
// only: its rate bucket.

// errUnanswered makes serveRequest drop a request without an answer (a stranger's connect
// whose secret turned out unusable).
var errUnanswered = errors.New("signer: not answered: the sender has no session")

// dropLogEvery is the least time between two debug log lines summarising dropped events.
const dropLogEvery = 10 * time.Second

// DropStats counts the events the remote signer dropped without writing or answering
// anything, since it started.
type DropStats struct {
	// Invalid: not addressed to this signer, oversized, created_at out of the allowed skew, or
	// (a client's event, or a stranger's connect with a usable secret) a bad signature or id
	// or a replay of an event already handled.
	Invalid uint64
	// Stranger: from a pubkey without a session, not a connect (including NIP-46 responses
	// addressed to this key's own client and undecryptable content); its signature is not
	// checked.
	Stranger uint64
	// BadSecret: a stranger's connect whose secret is unknown or already used, or without one.
	BadSecret uint64
	// StrangerLimited: a stranger over its rate limit (per pubkey, LRU of maxUnknownBuckets).
	StrangerLimited uint64
	// OverLimit: a client's request over its rate limit that got no rate_limited answer
	// (at most one per second per client is answered).
	OverLimit uint64
}

type dropCounters struct {
	invalid, stranger, badSecret, strangerLimited, overLimit atomic.Uint64

	logged     atomic.Int64 // unix nanoseconds of the last summary
	lastLogged DropStats    // owned by the housekeeping goroutine
}

func (d *dropCounters) stats() DropStats {
	return DropStats{Invalid: d.invalid.Load(), Stranger: d.stranger.Load(), BadSecret: d.badSecret.Load(),
		StrangerLimited: d.strangerLimited.Load(), OverLimit: d.overLimit.Load()}
}

// Drops returns the counts of events dropped unanswered since the remote signer started (an
// in-memory metric; nothing is written for them).
func (s *RemoteSigner) Drops() DropStats { return s.drops.stats() }

// logDrops writes a debug line with the drop counts when they changed and dropLogEvery has
// passed since the last one (called from the housekeeping loop).
func (s *RemoteSigner) logDrops(now time.Time) {
	if now.UnixNano()-s.drops.logged.Load() < int64(dropLogEvery) {
		return
	}
	st := s.drops.stats()
	if st == s.drops.lastLogged {
		return
	}
	prev := s.drops.lastLogged
	s.drops.lastLogged = st
	s.drops.logged.Store(now.UnixNano())
	s.log.Debug("dropped events without an answer",
		"invalid", st.Invalid-prev.Invalid, "stranger", st.Stranger-prev.Stranger, "bad_secret", st.BadSecret-prev.BadSecret,
		"stranger_rate_limited", st.StrangerLimited-prev.StrangerLimited, "client_over_limit", st.OverLimit-prev.OverLimit,
		"total_invalid", st.Invalid, "total_stranger", st.Stranger, "total_bad_secret", st.BadSecret,
		"total_stranger_rate_limited", st.StrangerLimited, "total_client_over_limit", st.OverLimit)
}

// isClient reports whether pubkey has a session (read, never written) or is a nostrconnect
// app whose connect response awaits its first request. When it read the session, the returned
// ctx carries what it read (sessionRead) for this one request's dispatch, which then does not
// read it again: one read of the session per request. It is a value on the request path, not a
// cache: the next request reads the session anew, so a revoke or grant from another process
// (`cosigner clients revoke`) takes effect from the next request on.
func (s *RemoteSigner) isClient(ctx context.Context, pubkey string) (context.Context, bool, error) {
	s.clientMu.Lock()
	awaiting := s.awaiting[pubkey]
	s.clientMu.Unlock()
	if awaiting {
		return ctx, true, nil
	}
	perms, ok, err := s.sessions.SessionPerms(ctx, pubkey)
	if err != nil {
		return ctx, false, err
	}
	return context.WithValue(ctx, sessionReadKey{}, sessionRead{client: pubkey, perms: perms, ok: ok}), ok, nil
}

// sessionRead is one request's read of its client's session (SessionPerms), carried in the
// request's context from isClient to dispatch.
type sessionRead struct {
	client string
	perms  string
	ok     bool
}

type sessionReadKey struct{}

// sessionPerms returns client's session as read earlier on this request's path (isClient), or
// reads it now when the request has none (an awaited nostrconnect app, or a call from
// elsewhere).
func (s *RemoteSigner) sessionPerms(ctx context.Context, client string) (string, bool, error) {
	if r, ok := ctx.Value(sessionReadKey{}).(sessionRead); ok && r.client == client {
		return r.perms, r.ok, nil
	}
	return s.sessions.SessionPerms(ctx, client)
}

// handleStranger handles an event from a pubkey without a session: only a connect carrying a
// usable secret (checked without writing) goes on to serveRequest; everything else is counted
// and dropped.
func (s *RemoteSigner) handleStranger(ctx context.Context, in relaypool.Event, log *slog.Logger) {
	ev, relay := in.Event, in.Relay
	if !s.limits.allowUnknown(ev.PubKey, s.now()) {
		s.drops.strangerLimited.Add(1)
		return
	}
	t, plain, err := s.decrypt(ev, false)
	if err != nil {
		s.drops.stranger.Add(1)
		return
	}
	if nip46.IsResponse(plain) {
		// The answer to a request this key's own NIP-46 client sent (a co-signer asking its
		// peers); that client's subscription reads it.
		s.drops.stranger.Add(1)
		return
	}
	_, method, params, perr := nip46.ParseRequest(plain)
	if perr != nil || method != "connect" {
		s.drops.stranger.Add(1)
		return
	}
	secret := param(params, 1)
	if len(params) < 1 || params[0] != s.pk || secret == "" {
		s.drops.badSecret.Add(1)
		return
	}
	usable, err := s.sessions.ConnectSecretUsable(ctx, secret, ev.PubKey)
	if err != nil {
		log.Error("dropped connect: cannot check the secret", "error", err)
		return
	}
	if !usable {
		s.drops.badSecret.Add(1)
		return
	}
	if reason := s.checkAuthentic(in); reason != "" {
		log.Debug("dropped connect: " + reason)
		s.drops.invalid.Add(1)
		return
	}
	if !s.firstDurably(ctx, ev, log) {
		return
	}
	s.serveRequest(ctx, ev, relay, t, plain, false, log)
}
