package signer

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/store"
)

// BenchmarkHandlePing: the remote signer's own work for one NIP-46 ping from a connected client
// (signature check, session read, durable replay write, NIP-44 decrypt and encrypt, response
// event signature, logging at info as in production), in process with the real store and an
// in-memory relay pool. The request events are built before the timer starts.
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
	for _, ev := range evs {
		rs.handleEvent(ctx, ev, "mem://")
		if out := pool.take(); len(out) != 1 {
			b.Fatalf("got %d responses, want 1", len(out))
		}
	}
}
