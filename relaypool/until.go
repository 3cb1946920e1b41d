package relaypool

import (
	"context"
	"iter"
)

// Until yields the values received from ch, in order, until ch is closed or ctx is done; the
// loop over it is the subscriber side of Subscribe (and of any event channel):
//
//	for ev := range relaypool.Until(ctx, pool.Subscribe(ctx, filter)) { … }
//
// When a value and ctx's end are both ready, either may be taken first (one select).
func Until[T any](ctx context.Context, ch <-chan T) iter.Seq[T] {
	return func(yield func(T) bool) {
		for {
			select {
			case <-ctx.Done():
				return
			case v, ok := <-ch:
				if !ok || !yield(v) {
					return
				}
			}
		}
	}
}
