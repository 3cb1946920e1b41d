package signer

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/store"
)

// countingSessions is the real store with its SessionPerms reads counted.
type countingSessions struct {
	*store.DB
	reads atomic.Int64
}

func (c *countingSessions) SessionPerms(ctx context.Context, client string) (string, bool, error) {
	c.reads.Add(1)
	return c.DB.SessionPerms(ctx, client)
}

// TestOneSessionReadPerRequest: a client's request reads its session once (isClient carries the
// read to dispatch), and what it read is not kept past the request: permissions revoked and then
// the whole session ended from another process (as `cosigner clients revoke` does, on its own
// connection to the same database) between two requests are honoured by the next request.
func TestOneSessionReadPerRequest(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	counted := &countingSessions{DB: db}
	pool := &memPool{}
	rs, err := NewRemoteSigner(nostr.GeneratePrivateKey(), pool, counted, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	h := &harness{t: t, rs: rs, pool: pool, db: db, clientSK: sk, clientPK: pk}
	h.connectWith("nip44_encrypt", "")

	for i, method := range []string{"ping", "get_public_key"} {
		before := counted.reads.Load()
		if r := h.one(h.request("p"+method, method)); r.Error != "" {
			t.Fatalf("%s: %+v", method, r)
		}
		if n := counted.reads.Load() - before; n != 1 {
			t.Fatalf("request %d (%s) read the session %d times, want 1", i, method, n)
		}
	}
	before := counted.reads.Load()
	if r := h.one(h.request("e1", "nip44_encrypt", pk, "hello")); r.Error != "" || r.Result == "" {
		t.Fatalf("nip44_encrypt before the revoke: %+v", r)
	}
	if n := counted.reads.Load() - before; n != 1 {
		t.Fatalf("nip44_encrypt read the session %d times, want 1", n)
	}

	// Another process revokes the permission: the next request is refused.
	other, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.SetSessionPerms(ctx, pk, ""); err != nil {
		t.Fatal(err)
	}
	if r := h.one(h.request("e2", "nip44_encrypt", pk, "hello")); !strings.HasPrefix(r.Error, "unauthorized") {
		t.Fatalf("nip44_encrypt after the revoke: %+v, want unauthorized", r)
	}
	// It then ends the session: the next request is a stranger's, dropped without an answer.
	if err := other.EndSession(ctx, pk); err != nil {
		t.Fatal(err)
	}
	if rs := h.send(h.request("p2", "ping")); len(rs) != 0 {
		t.Fatalf("ping after the session ended: %+v, want no answer", rs)
	}
}
