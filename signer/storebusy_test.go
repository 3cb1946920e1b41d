package signer

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/store"
)

// signalHandler is a slog handler that reports on hits each record whose message contains want.
type signalHandler struct {
	want string
	hits chan string
}

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, h.want) {
		select {
		case h.hits <- r.Message:
		default:
		}
	}
	return nil
}
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h signalHandler) WithGroup(string) slog.Handler      { return h }

// TestRequestAnsweredAfterStoreBusy: a request whose durable replay check meets a locked
// database (another writer holds SQLite's write lock past the store's busy timeout, as
// contending writers did on a loaded machine) is still answered once the lock is free. Before,
// the event was dropped with "the replay check failed" after being marked seen, so the copies
// other relays carried were dropped as duplicates and the client never got an answer.
func TestRequestAnsweredAfterStoreBusy(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "s.db")
	db, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	failed := make(chan string, 1)
	log := slog.New(signalHandler{want: "replay check failed", hits: failed})
	pool := &memPool{}
	rs, err := NewRemoteSigner(nostr.GeneratePrivateKey(), pool, db, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Handle(nip46.MethodSignPSBT, echoPSBT{}.SignPSBT); err != nil {
		t.Fatal(err)
	}
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	h := &harness{t: t, rs: rs, pool: pool, db: db, clientSK: sk, clientPK: pk}
	h.connectWith("sign_psbt", "")

	// A second handle on the same file takes the write lock (BEGIN IMMEDIATE) and keeps it.
	other, err := store.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	lock, err := other.SQL.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()

	answers := make(chan int, 1)
	var rsps []string
	go func() {
		out := h.send(h.request("busy-1", "ping"))
		for _, r := range out {
			rsps = append(rsps, r.Result+r.Error)
		}
		answers <- len(out)
	}()
	select {
	case msg := <-failed: // the check ran into the lock (after the store's busy timeout)
		t.Logf("while locked: %s", msg)
	case n := <-answers:
		t.Fatalf("handled without meeting the lock: %d responses %v", n, rsps)
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := <-answers; n != 1 || rsps[0] != "pong" {
		t.Fatalf("after the lock was released: %d responses %v, want one pong", n, rsps)
	}
}
