package relaypool

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// TestAuthRequiredRelay runs against @nostr-relay/core with NIP-42 on (relay.mjs --auth: the
// library sends the challenge and checks the kind 22242 event; the glue refuses EVENT and REQ
// until then).
func TestAuthRequiredRelay(t *testing.T) {
	url := startGlueRelay(t, "--auth")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rcpt := freshPubKey(t)
	opts := func(rec *logRecorder) Options {
		return Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, PublishTimeout: 3 * time.Second, Logger: testLogger(t, rec)}
	}

	t.Log("without an AuthSigner: refused with auth-required, and the state says so")
	anon, err := New([]string{url}, opts(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	res := anon.Publish(ctx, signed(t, 1, rcpt, "anonymous"))
	if !errors.Is(res[0].Err, ErrAuthRequired) || !strings.Contains(res[0].Err.Error(), "auth-required:") {
		t.Fatalf("Publish without AUTH = %+v, want ErrAuthRequired with the relay's reason", res[0])
	}
	if h := anon.Health()[0]; h.State != StateAuthRequired || !h.Connected || h.AuthPubKey != "" {
		t.Fatalf("Health = %+v, want state auth-required", h)
	}

	t.Log("with the bunker's key as AuthSigner: AUTH answered, publish and subscribe work")
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	var signs atomic.Int32
	o := opts(nil)
	o.AuthSigner = func(ctx context.Context, ev *nostr.Event) error {
		signs.Add(1)
		if ev.Kind != nostr.KindClientAuthentication || ev.Tags.GetFirst([]string{"relay", url}) == nil || ev.Tags.GetFirst([]string{"challenge"}) == nil {
			return errors.New("not an AUTH event for this relay")
		}
		return ev.Sign(sk)
	}
	pool, err := New([]string{url}, o)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	got := collect(pool.Subscribe(ctx, nostr.Filter{Kinds: []int{1}, Tags: nostr.TagMap{"p": {rcpt}}}))
	ev := signed(t, 1, rcpt, "authenticated")
	assertAllOK(t, pool.Publish(ctx, ev), []string{url})
	got.await(t, ev.ID, "event on the AUTH relay", 10*time.Second)
	h := pool.Health()[0]
	if h.State != StateConnected || h.AuthPubKey != pk {
		t.Fatalf("Health = %+v, want connected and authenticated as %s", h, pk)
	}
	if n := signs.Load(); n != 1 {
		t.Fatalf("AuthSigner called %d times for one connection, want once", n)
	}

	t.Log("a signer that fails (a locked key): a clear error, and the relay stays refused")
	rec := &logRecorder{}
	o = opts(rec)
	o.AuthSigner = func(context.Context, *nostr.Event) error { return errors.New("key is locked") }
	locked, err := New([]string{url}, o)
	if err != nil {
		t.Fatal(err)
	}
	defer locked.Close()
	res = locked.Publish(ctx, signed(t, 1, rcpt, "locked"))
	if !errors.Is(res[0].Err, ErrAuthFailed) || !strings.Contains(res[0].Err.Error(), "key is locked") {
		t.Fatalf("Publish with a failing signer = %+v, want ErrAuthFailed", res[0])
	}
	if h := locked.Health()[0]; h.State != StateAuthRequired {
		t.Fatalf("Health = %+v, want auth-required", h)
	}
	if !rec.has("NIP-42 authentication failed", url) {
		t.Fatal("the failed AUTH was not logged")
	}
}
