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
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/store"
)

// lossyPool drops the client's first `drop` published events (a relay that lost them).
type lossyPool struct {
	busPool
	mu   sync.Mutex
	drop int
}

func (p *lossyPool) Publish(ctx context.Context, ev nostr.Event) []relaypool.PublishResult {
	p.mu.Lock()
	if p.drop > 0 {
		p.drop--
		p.mu.Unlock()
		return []relaypool.PublishResult{{Relay: "bus://"}} // "accepted", then lost
	}
	p.mu.Unlock()
	return p.busPool.Publish(ctx, ev)
}

func (p *lossyPool) dropNext(n int) { p.mu.Lock(); p.drop = n; p.mu.Unlock() }

// recordingPSBT answers sign_psbt "signed:<param>" (or holds while hold is set) and records
// every request id it sees.
type recordingPSBT struct {
	mu   sync.Mutex
	ids  []string
	hold bool
}

func (h *recordingPSBT) SignPSBT(_ context.Context, r nip46.Call) (string, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ids = append(h.ids, r.ID)
	if h.hold {
		return "", &nip46.HeldError{URL: "https://approve.example/" + r.ID, Reason: "cooling off"}
	}
	return "signed:" + r.Params[0], nil
}

func (h *recordingPSBT) seen() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.ids...)
}

func TestCallWithIDResends(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := &bus{}
	h := &recordingPSBT{}
	rsSK := nostr.GeneratePrivateKey()
	rs, err := NewRemoteSigner(rsSK, busPool{b}, db, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Handle(nip46.MethodSignPSBT, h.SignPSBT); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	rctx, rcancel := context.WithCancel(ctx)
	go func() { rs.Run(rctx); close(done) }()
	defer func() { rcancel(); <-done }()
	if err := db.AddConnectSecretPerms(ctx, "s", "sign_psbt"); err != nil {
		t.Fatal(err)
	}
	pool := &lossyPool{busPool: busPool{b}}
	c, err := DialBunker(ctx, nostr.GeneratePrivateKey(), nip46.BunkerURI(rs.PublicKey(), []string{"ws://unused.invalid"}, "s"),
		ClientOptions{Pool: pool, Logger: quietLog(), Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// The first two sends are lost: the third (same id) is answered.
	pool.dropNext(2)
	got, err := c.CallWithID(ctx, "req-1", "sign_psbt", []string{"cHNidP8"}, 50*time.Millisecond, nil)
	if err != nil || got != "signed:cHNidP8" {
		t.Fatalf("CallWithID = %q, %v", got, err)
	}
	for _, id := range h.seen() {
		if id != "req-1" {
			t.Fatalf("remote signer saw id %q, want only req-1", id)
		}
	}

	// Held: onAuthURL gets the URL, the call keeps re-sending the same id and returns once the
	// remote signer answers it.
	h.mu.Lock()
	h.hold = true
	h.mu.Unlock()
	urls := make(chan string, 16)
	res := make(chan error, 1)
	go func() {
		got, err := c.CallWithID(ctx, "req-2", "sign_psbt", []string{"cHNidP9"}, 20*time.Millisecond, func(u string) { urls <- u })
		if err == nil && got != "signed:cHNidP9" {
			err = errors.New("answered " + got)
		}
		res <- err
	}()
	if u := <-urls; u != "https://approve.example/req-2" {
		t.Fatalf("auth_url %q", u)
	}
	<-urls // a re-send of the held request is answered auth_url again
	h.mu.Lock()
	h.hold = false
	h.mu.Unlock()
	if err := <-res; err != nil {
		t.Fatal(err)
	}

	// A request from the remote signer's key to the client's (co-signers asking each other with
	// their identity keys) is not taken for the answer, even under the id being waited on.
	pool.dropNext(1 << 30)
	res5 := make(chan string, 1)
	go func() {
		got, err := c.CallWithID(ctx, "req-5", "sign_psbt", []string{"cHNidP5"}, 20*time.Millisecond, nil)
		if err != nil {
			got = err.Error()
		}
		res5 <- got
	}()
	for {
		pool.mu.Lock()
		sent := pool.drop < 1<<30
		pool.mu.Unlock()
		if sent {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	ck, _ := nip44.GenerateConversationKey(c.PublicKey(), rsSK)
	content, _ := nip44.Encrypt(`{"id":"req-5","method":"sign_psbt","params":["cHNidP8"]}`, ck)
	peer := nostr.Event{Kind: nip46.KindNostrConnect, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"p", c.PublicKey()}}, Content: content}
	if err := peer.Sign(rsSK); err != nil {
		t.Fatal(err)
	}
	busPool{b}.Publish(ctx, peer)
	pool.dropNext(0)
	if got := <-res5; got != "signed:cHNidP5" {
		t.Fatalf("CallWithID with a peer's request under the same id = %q", got)
	}

	// A caller's ctx ends the wait; Close ends it too; bad ids are refused.
	pool.dropNext(1 << 30)
	short, stop := context.WithTimeout(ctx, 100*time.Millisecond)
	defer stop()
	if _, err := c.CallWithID(short, "req-3", "sign_psbt", []string{"x"}, 10*time.Millisecond, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("CallWithID after ctx end = %v", err)
	}
	if _, err := c.CallWithID(ctx, "", "sign_psbt", nil, 0, nil); !errors.Is(err, ErrBadRequestID) {
		t.Fatalf("empty id: %v", err)
	}
	closed := make(chan error, 1)
	go func() { _, err := c.CallWithID(ctx, "req-4", "sign_psbt", []string{"x"}, 0, nil); closed <- err }()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	if err := <-closed; !errors.Is(err, ErrClientClosed) {
		t.Fatalf("CallWithID across Close = %v", err)
	}
}

// TestBadBunkerURIErrorHasNoSecret: an unparsable bunker URI's error does not repeat the URI
// (its secret would reach logs and stored error details).
func TestBadBunkerURIErrorHasNoSecret(t *testing.T) {
	for _, uri := range []string{
		"bunker://" + strings.Repeat("ab", 32) + "\x7f?relay=ws://r.example&secret=topsecret",
		"bunker://" + strings.Repeat("ab", 32) + "?relay=ws://r.example&secret=topsecret%zz",
		"bunker ://x?secret=topsecret",
	} {
		_, err := nip46.ParseBunkerURI(uri)
		if !errors.Is(err, nip46.ErrBadURI) || strings.Contains(err.Error(), "topsecret") {
			t.Fatalf("nip46.ParseBunkerURI(%q) = %v", uri, err)
		}
	}
}
