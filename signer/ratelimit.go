package signer

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// rateLimits is one token bucket per client pubkey (golang.org/x/time/rate). Safe for
// concurrent use; a nil *rateLimits or a non-positive rate allows everything.
type rateLimits struct {
	every rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

// maxBuckets bounds the memory the limiter uses; past it, every bucket is forgotten.
const maxBuckets = 20000

func newRateLimits(perSecond float64, burst int) *rateLimits {
	if perSecond <= 0 {
		return nil
	}
	return &rateLimits{every: rate.Limit(perSecond), burst: max(burst, 1), buckets: make(map[string]*rate.Limiter)}
}

// allow takes one token from client's bucket at now and reports whether there was one.
func (r *rateLimits) allow(client string, now time.Time) bool {
	if r == nil {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.buckets[client]
	if !ok {
		if len(r.buckets) >= maxBuckets {
			// Many keys at once (a flood of fresh pubkeys, each of which gets a full bucket
			// anyway): start over rather than scan the map on every new key.
			clear(r.buckets)
		}
		b = rate.NewLimiter(r.every, r.burst)
		r.buckets[client] = b
	}
	return b.AllowN(now, 1)
}
