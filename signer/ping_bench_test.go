package signer

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/store"
)

// BenchmarkHandlePing: the remote signer's own work for one NIP-46 ping from a connected client
// (signature check, session read, durable replay write, NIP-44 decrypt and encrypt, response
// event signature, logging at info as in production), in process with the real store and an
// in-memory relay pool. The request events are built before the timer starts. cpu-µs/op is the
// process's CPU (user+system, GC included) per ping.
func BenchmarkHandlePing(b *testing.B) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(b.TempDir(), "s.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	pool := &memPool{}
	log := slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	rs, err := NewRemoteSigner(nostr.GeneratePrivateKey(), pool, db, log, WithRateLimit(0, 0))
	if err != nil {
		b.Fatal(err)
	}
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	h := &harness{t: b, rs: rs, pool: pool, db: db, clientSK: sk, clientPK: pk}
	h.connectWith("", "")
	evs := make([]*nostr.Event, b.N)
	for i := range evs {
		evs[i] = h.request("p", "ping")
	}
	b.ResetTimer()
	start := processCPU(b)
	for _, ev := range evs {
		rs.handleEvent(ctx, ev, "mem://")
		if out := pool.take(); len(out) != 1 {
			b.Fatalf("got %d responses, want 1", len(out))
		}
	}
	b.ReportMetric(float64((processCPU(b)-start).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is this process's user+system CPU time so far (getrusage), GC included.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
