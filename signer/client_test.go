package signer

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/store"
)

// bus is an in-process relay: every pool on it sees what any pool publishes (while subscribed),
// like an ephemeral-event relay. The real-relay path is covered by the devnet tests.
type bus struct {
	mu   sync.Mutex
	subs []busSub
}

type busSub struct {
	ctx context.Context
	f   nostr.Filter
	ch  chan relaypool.Event
}

type busPool struct{ b *bus }

func (p busPool) Subscribe(ctx context.Context, f nostr.Filter) <-chan relaypool.Event {
	ch := make(chan relaypool.Event, 64)
	p.b.mu.Lock()
	p.b.subs = append(p.b.subs, busSub{ctx, f, ch})
	p.b.mu.Unlock()
	return ch
}

func (p busPool) Publish(ctx context.Context, ev nostr.Event) []relaypool.PublishResult {
	p.b.mu.Lock()
	defer p.b.mu.Unlock()
	for _, s := range p.b.subs {
		if s.ctx.Err() == nil && s.f.Matches(&ev) {
			e := ev
			select {
			case s.ch <- relaypool.Event{Event: &e, Relay: "bus://"}:
			default:
			}
		}
	}
	return []relaypool.PublishResult{{Relay: "bus://"}}
}

func (busPool) URLs() []string { return []string{"bus://"} }

type slowHeld struct{ release chan struct{} }

func (h slowHeld) SignPSBT(ctx context.Context, r nip46.Call) (string, error) {
	return "", &nip46.HeldError{URL: "https://approve.example/" + r.ID, Reason: "approvals"}
}

func TestClientAgainstRemoteSigner(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := &bus{}
	rs, err := NewRemoteSigner(nostr.GeneratePrivateKey(), busPool{b}, db, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Handle(nip46.MethodSignPSBT, slowHeld{}.SignPSBT); err != nil {
		t.Fatal(err)
	}
	rs.Handle("psbt_status", func(_ context.Context, r nip46.Call) (string, error) { return "held", nil })
	done := make(chan struct{})
	go func() { rs.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	if err := db.AddConnectSecretPerms(ctx, "sekret", "sign_psbt,psbt_status,sign_event:1"); err != nil {
		t.Fatal(err)
	}
	uri := nip46.BunkerURI(rs.PublicKey(), []string{"ws://unused.invalid"}, "sekret")
	var authMu sync.Mutex
	var authURLs []string
	opts := ClientOptions{Pool: busPool{b}, Logger: quietLog(), Timeout: 20 * time.Second, Perms: "sign_psbt,sign_event:1",
		Metadata:  nip46.ClientMetadata{Name: "cosigner", URL: "https://cosigner.example"},
		OnAuthURL: func(method, id, url string) { authMu.Lock(); authURLs = append(authURLs, url); authMu.Unlock() }}
	clientSK := nostr.GeneratePrivateKey()
	c, err := DialBunker(ctx, clientSK, uri, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.Call(ctx, "get_public_key"); err != nil || got != rs.PublicKey() {
		t.Fatalf("get_public_key = %q, %v", got, err)
	}
	if perms, _, _ := db.SessionPerms(ctx, c.PublicKey()); perms != "sign_event:1,sign_psbt" {
		t.Fatalf("granted %q", perms)
	}
	if s := sessionOf(t, db, c.PublicKey()); s.Info.Name != "cosigner" || s.Info.URL != "https://cosigner.example" {
		t.Fatalf("the client's metadata did not arrive: %+v", s.Info)
	}
	_, err = c.Call(ctx, "psbt_status", "x")
	var re *nip46.RemoteError
	if !errors.As(err, &re) || re.Code() != nip46.CodeUnauthorized {
		t.Fatalf("psbt_status (not requested, so not granted): %v", err)
	}
	// A held call reports its auth_url, keeps waiting, and gets the late answer on the same id.
	type res struct {
		s   string
		err error
	}
	out := make(chan res, 1)
	go func() { s, err := c.Call(ctx, "sign_psbt", "cHNidP8"); out <- res{s, err} }()
	var url string
	for url == "" {
		authMu.Lock()
		if len(authURLs) > 0 {
			url = authURLs[0]
		}
		authMu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	id := strings.TrimPrefix(url, "https://approve.example/")
	if err := rs.Respond(ctx, c.PublicKey(), id, "cHNidP8signed", nil); err != nil {
		t.Fatal(err)
	}
	if r := <-out; r.err != nil || r.s != "cHNidP8signed" {
		t.Fatalf("held call: %+v", r)
	}
	// The same client key dials again with the same (spent) URI: its session still exists.
	c2, err := DialBunker(ctx, clientSK, uri, opts)
	if err != nil {
		t.Fatalf("re-dial with the spent secret by the same client: %v", err)
	}
	c2.Close()
	// Another key cannot use the spent secret: a stranger with a bad secret gets no answer.
	short := opts
	short.Timeout = 2 * time.Second
	if _, err := DialBunker(ctx, nostr.GeneratePrivateKey(), uri, short); !errors.Is(err, ErrTimeout) {
		t.Fatalf("spent secret, other client: %v", err)
	}
	if _, err := DialBunker(ctx, clientSK, "bunker://nope", opts); !errors.Is(err, nip46.ErrBadURI) {
		t.Fatalf("bad uri: %v", err)
	}
	c.Close()
	if _, err := c.Call(ctx, "ping"); !errors.Is(err, ErrClientClosed) {
		t.Fatalf("call after close: %v", err)
	}
}
