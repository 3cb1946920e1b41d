package signer

import (
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// rateLimits is one token bucket per client pubkey (golang.org/x/time/rate), kept in two places
// so that keys nobody authorized can never push an authorized client's bucket out:
//
//   - clients with a session (or an awaited nostrconnect response) have their buckets in a map
//     that evicts only buckets that have refilled to the burst — a full bucket is the same as a
//     fresh one, so eviction never forgives a debt. Its size is bounded by the sessions the
//     operator created (at most maxClientBuckets while they are idle);
//   - every other pubkey shares a least-recently-used cache of maxUnknownBuckets buckets: a flood
//     of fresh keys only evicts other unknown keys.
//
// A key that becomes a client carries its unknown bucket (and its debt) over. Safe for
// concurrent use; a nil *rateLimits allows everything.
type rateLimits struct {
	every rate.Limit
	burst int

	mu      sync.Mutex
	clients map[string]*clientBucket
	scanAt  int // len(clients) at which full buckets are swept next
	unknown *lru.Cache[string, *rate.Limiter]
}

type clientBucket struct {
	lim *rate.Limiter
	// deniedAnswered is when a rate_limited answer last went to this client: while it stays
	// over its limit it gets at most one answer per rateLimitedAnswerEvery, the rest are dropped
	// (each answer is a signed event on every relay).
	deniedAnswered time.Time
}

// Bounds of the rate limiter's memory.
const (
	// maxClientBuckets is where the clients' map sweeps its full (debt-free) buckets.
	maxClientBuckets = 10000
	// maxUnknownBuckets bounds the buckets of pubkeys without a session (LRU).
	maxUnknownBuckets = 4096
	// rateLimitedAnswerEvery is the least time between two rate_limited answers to one client.
	rateLimitedAnswerEvery = time.Second
)

func newRateLimits(perSecond float64, burst int) *rateLimits {
	if perSecond <= 0 {
		return nil
	}
	unknown, err := lru.New[string, *rate.Limiter](maxUnknownBuckets)
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &rateLimits{every: rate.Limit(perSecond), burst: max(burst, 1), clients: make(map[string]*clientBucket),
		scanAt: maxClientBuckets, unknown: unknown}
}

// allowClient takes one token from an authorized client's bucket at now. ok reports whether
// there was one; when there was not, answer reports whether this refusal should be answered
// (at most one rate_limited answer per rateLimitedAnswerEvery per client).
func (r *rateLimits) allowClient(client string, now time.Time) (ok, answer bool) {
	if r == nil {
		return true, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b := r.clients[client]
	if b == nil {
		if len(r.clients) >= r.scanAt {
			r.sweepLocked(now)
		}
		b = &clientBucket{}
		if lim, had := r.unknown.Peek(client); had {
			b.lim = lim // its debt comes along
			r.unknown.Remove(client)
		} else {
			b.lim = rate.NewLimiter(r.every, r.burst)
		}
		r.clients[client] = b
	}
	if b.lim.AllowN(now, 1) {
		return true, false
	}
	if now.Sub(b.deniedAnswered) < rateLimitedAnswerEvery && !b.deniedAnswered.After(now) {
		return false, false
	}
	b.deniedAnswered = now
	return false, true
}

// sweepLocked forgets the clients' buckets that are full at now (the same as a fresh bucket),
// and sets the size of the next sweep to twice what is left, so that a map of indebted buckets
// is not scanned on every new key.
func (r *rateLimits) sweepLocked(now time.Time) {
	for k, b := range r.clients {
		if b.lim.TokensAt(now) >= float64(r.burst) {
			delete(r.clients, k)
		}
	}
	r.scanAt = max(maxClientBuckets, 2*len(r.clients))
}

// allowUnknown takes one token from the bucket of a pubkey without a session.
func (r *rateLimits) allowUnknown(pubkey string, now time.Time) bool {
	if r == nil {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	lim, ok := r.unknown.Get(pubkey)
	if !ok {
		lim = rate.NewLimiter(r.every, r.burst)
		r.unknown.Add(pubkey, lim)
	}
	return lim.AllowN(now, 1)
}
