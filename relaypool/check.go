package relaypool

// check.go — the pure parts: what an incoming event must pass, the reconnect backoff, and the
// de-duplication set. No I/O, no goroutines.

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// checkEvent reports why ev, received for a subscription with filter f, must not be delivered,
// or nil: it must match f (NIP-01 filter semantics, Since/Until included), its id must be the
// sha256 of its serialization, and its sig a valid BIP-340 signature of that id by its pubkey
// (NIP-01 "Events and signatures"). The cheap checks run first.
func checkEvent(f nostr.Filter, ev *nostr.Event) error {
	if !f.Matches(ev) {
		return ErrFilterMismatch
	}
	if ev.GetID() != ev.ID {
		return ErrBadEventID
	}
	ok, err := ev.CheckSignature()
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	if !ok {
		return ErrBadSignature
	}
	return nil
}

// Backoff growth and jitter (see Options.MinBackoff).
const (
	backoffFactor = 1.7
	backoffJitter = 0.2 // ±20 %
)

// nextBackoff is the delay after d: d·1.7, at most max.
func nextBackoff(d, max time.Duration) time.Duration {
	return min(time.Duration(float64(d)*backoffFactor), max)
}

// jittered spreads d by ±20 %: u in [0, 1) picks the point, 0 giving d·0.8 and 1 giving d·1.2.
func jittered(d time.Duration, u float64) time.Duration {
	return d + time.Duration((u*2*backoffJitter-backoffJitter)*float64(d))
}

// minLookback is the shortest look-back used when a subscription is re-sent.
const minLookback = time.Minute

// lookback is how far before "now" a subscription's Since reaches when it is opened at t: the
// caller's own window (t − Since) when it has one, at least minLookback. A subscription re-sent
// after an interruption keeps that width, so a remote signer that accepts requests up to ten
// minutes old still receives them after a reconnect.
func lookback(f nostr.Filter, t time.Time) time.Duration {
	if f.Since != nil {
		if d := t.Sub(f.Since.Time()); d > minLookback {
			return d
		}
	}
	return minLookback
}

// resumeSince is the Since to re-send a subscription with after it was interrupted at t: back
// from t by the subscription's look-back width, so that stored events missed meanwhile are
// fetched (duplicates are dropped by id), unless the filter's own Since is later.
func resumeSince(f nostr.Filter, width time.Duration, t time.Time) *nostr.Timestamp {
	since := nostr.Timestamp(t.Add(-width).Unix())
	if f.Since != nil && *f.Since >= since {
		return f.Since
	}
	return &since
}

// newSubscriptionID returns a fresh NIP-01 subscription id (16 hex digits; NIP-01 allows up to
// 64 characters). A new id is used for every REQ, so that late messages for an earlier REQ are
// recognised as unknown.
func newSubscriptionID() string {
	return fmt.Sprintf("rp%014x", rand.Uint64()>>8)
}

// seenSet remembers event ids for ttl, for de-duplication. It is safe for concurrent use.
type seenSet struct {
	ttl time.Duration

	mu      sync.Mutex
	seen    map[string]time.Time
	pruneAt int // prune expired ids when the set grows past this size
}

const minPruneAt = 4096

func newSeenSet(ttl time.Duration) *seenSet {
	return &seenSet{ttl: ttl, seen: make(map[string]time.Time), pruneAt: minPruneAt}
}

// firstSeen records id at now and reports whether it had not been seen within ttl.
func (s *seenSet) firstSeen(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.seen[id]; ok && now.Sub(t) < s.ttl {
		return false
	}
	s.seen[id] = now
	if len(s.seen) > s.pruneAt {
		for k, t := range s.seen {
			if now.Sub(t) >= s.ttl {
				delete(s.seen, k)
			}
		}
		// Amortised: the next full scan waits until the live set has doubled.
		s.pruneAt = max(minPruneAt, 2*len(s.seen))
	}
	return true
}
