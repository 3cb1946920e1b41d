package signer

import (
	"context"
	"time"
)

// A request's handling time runs from the event's arrival — when the relay pool took it from
// the relay's connection (relaypool.Event.Received), before any check — to its answer being
// ready to encrypt and publish. It is the co-signer's own share of a client's round trip: it
// excludes the relays, the client and the wait for the relays' OKs, and it is logged as "took"
// on each answer's log line.

type arrivalKey struct{}

// withArrival returns ctx carrying the event's arrival time (now when the pool gave none).
func withArrival(ctx context.Context, received time.Time) context.Context {
	if received.IsZero() {
		received = time.Now()
	}
	return context.WithValue(ctx, arrivalKey{}, received)
}

// handlingTime is the time since the arrival ctx carries (0 without one), to the microsecond.
func handlingTime(ctx context.Context) time.Duration {
	at, ok := ctx.Value(arrivalKey{}).(time.Time)
	if !ok {
		return 0
	}
	return time.Since(at).Round(time.Microsecond)
}
