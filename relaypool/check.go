package relaypool

// check.go — the pure parts: what an incoming event must pass, the reconnect backoff, and the
// de-duplication set. No I/O, no goroutines.

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nbd-wtf/go-nostr"
)

// checkEvent reports why ev, received for a subscription with filter f, must not be delivered,
// or nil: it must match f (NIP-01 filter semantics, Since/Until included), its id must be the
// sha256 of its serialization, and its sig a valid BIP-340 signature of that id by its pubkey
// (NIP-01 "Events and signatures"). The cheap checks run first.
func checkEvent(f nostr.Filter, ev *nostr.Event) error {
	return checkEventOnce(f, ev, nil, time.Time{})
}

// errDuplicate is checkEventOnce's answer for an event id already delivered.
var errDuplicate = errors.New("relaypool: event already delivered")

// checkEventOnce is checkEvent that checks a signature once per event id: an event whose id is
// in seen (already delivered, hence already verified) gives errDuplicate without the signature
// check. The id is checked first, so the id names exactly the content that was verified; a
// forged copy of a delivered event is dropped as that duplicate. seen may be nil.
func checkEventOnce(f nostr.Filter, ev *nostr.Event, seen *seenSet, now time.Time) error {
	if !f.Matches(ev) {
		return ErrFilterMismatch
	}
	return verifyEvent(ev, func(id string) bool { return seen != nil && seen.has(id, now) })
}

// VerifyEvent checks ev's id (the sha256 of its NIP-01 serialization) and its sig (a BIP-340
// signature of that id by its pubkey), NIP-01 "Events and signatures": nil when both hold,
// otherwise an error wrapping ErrBadEventID or ErrBadSignature. The serialization is hashed
// once for both checks (go-nostr's GetID and CheckSignature each hash it again).
func VerifyEvent(ev *nostr.Event) error { return verifyEvent(ev, nil) }

// verifyEvent is VerifyEvent that, when known(id) reports the id as already delivered (hence
// verified), gives errDuplicate without the signature check. The id is checked first, so a
// forged copy of a delivered event (same id, other content) is a bad id, never a duplicate.
func verifyEvent(ev *nostr.Event, known func(id string) bool) error {
	h := sha256.Sum256(ev.Serialize())
	var id [32]byte
	if len(ev.ID) != 64 {
		return ErrBadEventID
	}
	if _, err := hex.Decode(id[:], []byte(ev.ID)); err != nil || id != h {
		return ErrBadEventID
	}
	if known != nil && known(ev.ID) {
		return errDuplicate
	}
	var pkb [32]byte
	if len(ev.PubKey) != 64 {
		return fmt.Errorf("%w: pubkey is not 32 bytes of hex", ErrBadSignature)
	}
	if _, err := hex.Decode(pkb[:], []byte(ev.PubKey)); err != nil {
		return fmt.Errorf("%w: pubkey: %v", ErrBadSignature, err)
	}
	pk, err := parsePubKey(pkb)
	if err != nil {
		return fmt.Errorf("%w: pubkey: %v", ErrBadSignature, err)
	}
	var sigb [64]byte
	if len(ev.Sig) != 128 {
		return fmt.Errorf("%w: sig is not 64 bytes of hex", ErrBadSignature)
	}
	if _, err := hex.Decode(sigb[:], []byte(ev.Sig)); err != nil {
		return fmt.Errorf("%w: sig: %v", ErrBadSignature, err)
	}
	sig, err := schnorr.ParseSignature(sigb[:])
	if err != nil {
		return fmt.Errorf("%w: sig: %v", ErrBadSignature, err)
	}
	if !sig.Verify(h[:], pk) {
		return ErrBadSignature
	}
	return nil
}

// maxParsedPubKeys bounds the cache of parsed pubkeys (LRU, about 100 bytes each).
const maxParsedPubKeys = 10000

// parsedPubKeys caches BIP-340 x-only pubkeys parsed to curve points: parsing one takes a
// square root in the field (a sizeable share of a verification), and the events a process
// verifies come from few keys again and again (its clients, its co-signers). Parsing is a pure
// function of the 32 bytes, so a cached point is the point; a flood of fresh keys only evicts
// other entries and costs each its ordinary parse.
var parsedPubKeys = func() *lru.Cache[[32]byte, *btcec.PublicKey] {
	c, err := lru.New[[32]byte, *btcec.PublicKey](maxParsedPubKeys)
	if err != nil {
		panic(err) // only for a non-positive size, a constant here
	}
	return c
}()

// parsePubKey is schnorr.ParsePubKey, cached (parsedPubKeys).
func parsePubKey(b [32]byte) (*btcec.PublicKey, error) {
	if pk, ok := parsedPubKeys.Get(b); ok {
		return pk, nil
	}
	pk, err := schnorr.ParsePubKey(b[:])
	if err != nil {
		return nil, err
	}
	parsedPubKeys.Add(b, pk)
	return pk, nil
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

// newSubscriptionID returns a fresh NIP-01 subscription id (16 characters, "rp" and hex digits;
// NIP-01 allows up to 64), cut to maxLen when a relay's NIP-11 max_subid_length is smaller (but
// never below 8). A new id is used for every REQ, so that late messages for an earlier REQ are
// recognised as unknown.
func newSubscriptionID(maxLen int) string {
	id := fmt.Sprintf("rp%014x", rand.Uint64()>>8)
	if maxLen > 0 && maxLen < len(id) {
		id = id[len(id)-max(maxLen, 8):]
	}
	return id
}

// seenSet remembers event ids for ttl, for de-duplication, and at most max of them: when more
// arrive within ttl the oldest are forgotten first (a copy of such an old event arriving again
// would be delivered again; callers that must not act twice keep their own record, as the
// NIP-46 server does). It is safe for concurrent use.
type seenSet struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	seen  map[string]time.Time // id → when first seen
	order []seenEntry          // insertion order (oldest first) from head on
	head  int
}

type seenEntry struct {
	id string
	at time.Time
}

// defaultSeenMax is the default bound on remembered ids per subscription (about 15 MB).
const defaultSeenMax = 100_000

func newSeenSet(ttl time.Duration, max int) *seenSet {
	return &seenSet{ttl: ttl, max: max, seen: make(map[string]time.Time)}
}

// has reports whether id was seen within ttl before now.
func (s *seenSet) has(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.seen[id]
	return ok && now.Sub(t) < s.ttl
}

// firstSeen records id at now and reports whether it had not been seen within ttl.
func (s *seenSet) firstSeen(id string, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t, ok := s.seen[id]; ok && now.Sub(t) < s.ttl {
		return false
	}
	s.seen[id] = now
	s.order = append(s.order, seenEntry{id, now})
	// Forget the expired, then the oldest beyond max.
	for s.head < len(s.order) {
		e := s.order[s.head]
		if now.Sub(e.at) < s.ttl && len(s.seen) <= s.max {
			break
		}
		if t, ok := s.seen[e.id]; ok && t.Equal(e.at) {
			delete(s.seen, e.id)
		}
		s.order[s.head] = seenEntry{}
		s.head++
	}
	// Compact the queue once its dead prefix is as long as its live part.
	if s.head > 1024 && s.head >= len(s.order)-s.head {
		s.order = append([]seenEntry(nil), s.order[s.head:]...)
		s.head = 0
	}
	return true
}

// len is the number of ids remembered.
func (s *seenSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// backoffDelay is the delay before the next attempt after failures consecutive failures (1 or
// more): min·1.7^(failures−1), at most max, without jitter.
func backoffDelay(failures int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 1; i < failures && d < hi; i++ {
		d = nextBackoff(d, hi)
	}
	return min(d, hi)
}

// quorumOf is how many of n relays must accept a published event: q when 0 < q ≤ n, n when
// q > n, and a majority (n/2 + 1) when q ≤ 0.
func quorumOf(q, n int) int {
	switch {
	case n <= 0:
		return 0
	case q <= 0:
		return n/2 + 1
	case q > n:
		return n
	}
	return q
}

// Machine-readable prefixes of OK and CLOSED messages (NIP-01).
const (
	prefixDuplicate    = "duplicate:"
	prefixAuthRequired = "auth-required:"
	prefixRateLimited  = "rate-limited:"
	prefixError        = "error:"
)

// okAccepted reports whether an OK message means the relay has the event: OK true, or OK false
// with "duplicate:" (it already had it; NIP-01).
func okAccepted(env nostr.OKEnvelope) bool {
	return env.OK || strings.HasPrefix(env.Reason, prefixDuplicate)
}

// retryable reports whether publishing again later may succeed after err: the connection
// failed or gave no OK, or the relay said "rate-limited:", "error:" or "auth-required:"
// (NIP-01 prefixes). A rejection for the event itself ("invalid:", "blocked:", "pow:",
// "restricted:", …), a NIP-11 limit, AUTH that we cannot give (ErrAuthRequired), a bad URL or
// a closed Pool is final.
func retryable(err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, ErrClosed), errors.Is(err, ErrIdle), errors.Is(err, ErrRelayLimit), errors.Is(err, ErrAuthRequired), errors.Is(err, errUnconfirmed),
		errors.Is(err, ErrBadRelayURL), errors.Is(err, ErrTooManyRelays), errors.Is(err, errEncoding):
		return false
	case errors.Is(err, ErrRejected):
		var rj *rejection
		if !errors.As(err, &rj) {
			return false
		}
		for _, p := range []string{prefixRateLimited, prefixError, prefixAuthRequired} {
			if strings.HasPrefix(rj.reason, p) {
				return true
			}
		}
		return false
	}
	return true
}

// rejection is a relay's OK false or CLOSED reason; it wraps ErrRejected.
type rejection struct{ reason string }

func (r *rejection) Error() string { return ErrRejected.Error() + ": " + r.reason }
func (r *rejection) Unwrap() error { return ErrRejected }

// isAuthRequired reports whether an OK false or CLOSED reason asks for NIP-42 AUTH.
func isAuthRequired(reason string) bool { return strings.HasPrefix(reason, prefixAuthRequired) }
