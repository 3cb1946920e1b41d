package signer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/store"
)

// TestOverRealRelays runs the remote signer and the Client over the devnet's three
// @nostr-relay/core relays: the signer's pool is relays 0 and 1; a bunker:// client reaches it
// through relay 1 only; a nostrconnect:// app lives on relay 2, outside the signer's pool, and
// gets the connect response (with its secret) and later answers there.
func TestOverRealRelays(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	relays, db, _, rs, closeAll := startSignerOverRelays(t, ctx, 2)
	defer closeAll()

	// bunker:// through relay 1 only.
	if err := db.AddConnectSecretPerms(ctx, "s1", "sign_psbt,sign_event:1"); err != nil {
		t.Fatal(err)
	}
	c, err := DialBunker(ctx, nostr.GeneratePrivateKey(), nip46.BunkerURI(rs.PublicKey(), relays[1:2], "s1"), ClientOptions{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.Call(ctx, "sign_psbt", "cHNidP8"); err != nil || got != "signed:cHNidP8" {
		t.Fatalf("sign_psbt = %q, %v", got, err)
	}
	signed, err := c.Call(ctx, "sign_event", `{"kind":1,"content":"gm","tags":[],"created_at":1700000000}`)
	var ev nostr.Event
	if err != nil || json.Unmarshal([]byte(signed), &ev) != nil {
		t.Fatalf("sign_event: %q %v", signed, err)
	}
	if ok, _ := ev.CheckSignature(); !ok || ev.PubKey != rs.PublicKey() {
		t.Fatalf("signed event %+v", ev)
	}
	var re *nip46.RemoteError
	if _, err := c.Call(ctx, "nip44_encrypt", rs.PublicKey(), "x"); !errors.As(err, &re) || re.Code() != nip46.CodeUnauthorized {
		t.Fatalf("nip44_encrypt without permission: %v", err)
	}

	// nostrconnect:// app on relay 2, which the signer's pool does not have.
	appSK := nostr.GeneratePrivateKey()
	appPK, _ := nostr.GetPublicKey(appSK)
	appPool, err := relaypool.New(relays[2:], relaypool.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer appPool.Close()
	since := nostr.Timestamp(time.Now().Add(-time.Minute).Unix())
	appEvents := appPool.Subscribe(ctx, nostr.Filter{Kinds: []int{nip46.KindNostrConnect}, Tags: nostr.TagMap{"p": []string{appPK}}, Since: &since})
	// The app's subscription must be live before the response is sent (kind 24133 is not
	// stored): prove it with an event of our own.
	for i := 0; ; i++ {
		probe := nostr.Event{PubKey: appPK, CreatedAt: nostr.Now(), Kind: nip46.KindNostrConnect, Tags: nostr.Tags{{"p", appPK}},
			Content: fmt.Sprintf("probe %d", i)} // a new id each time: relays drop repeated ids
		probe.Sign(appSK)
		appPool.Publish(ctx, probe)
		select {
		case e := <-appEvents:
			if e.ID != probe.ID {
				continue
			}
		case <-time.After(time.Second):
			continue
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		break
	}
	u, err := nip46.ParseNostrConnectURI("nostrconnect" + nip46.BunkerURI(appPK, relays[2:], "app-secret")[len("bunker"):] + "&perms=sign_event%3A1")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := AcceptNostrConnect(u, "")
	if err != nil || nc.Perms != "" { // the defaults do not include sign_event: nothing in common
		t.Fatalf("accept with defaults: %+v %v", nc, err)
	}
	if nc, err = AcceptNostrConnect(u, "sign_event,get_wallet"); err != nil || nc.Perms != "sign_event:1" {
		t.Fatalf("accept: %+v %v", nc, err)
	}
	if err := db.AddNostrConnect(ctx, nc); err != nil {
		t.Fatal(err)
	}
	rs.PokeNostrConnect()
	ck, _ := nip44.GenerateConversationKey(rs.PublicKey(), appSK)
	read := func() nip46.Response {
		for {
			select {
			case e := <-appEvents:
				if e.PubKey != rs.PublicKey() {
					continue
				}
				plain, err := nip44.Decrypt(e.Content, ck)
				if err != nil {
					t.Fatal(err)
				}
				var r nip46.Response
				json.Unmarshal([]byte(plain), &r)
				return r
			case <-ctx.Done():
				t.Fatal("no response on the app's relay")
			}
		}
	}
	connectResp := read()
	if connectResp.Result != "app-secret" {
		t.Fatalf("connect response %+v", connectResp)
	}
	body, _ := json.Marshal(map[string]any{"id": "n1", "method": "get_public_key", "params": []string{}})
	content, _ := nip44.Encrypt(string(body), ck)
	req := nostr.Event{PubKey: appPK, CreatedAt: nostr.Now(), Kind: nip46.KindNostrConnect, Tags: nostr.Tags{{"p", rs.PublicKey()}}, Content: content}
	req.Sign(appSK)
	if n, err := relaypool.Published(appPool.Publish(ctx, req)); n == 0 {
		t.Fatal(err)
	}
	r := read()
	for r.ID == connectResp.ID { // the connect response is re-sent until this request arrives
		r = read()
	}
	if r.ID != "n1" || r.Result != rs.PublicKey() {
		t.Fatalf("request on the app's relay: %+v", r)
	}
}

// startSignerOverRelays starts the devnet (relays only), a store and a RemoteSigner (echoPSBT)
// whose pool is the first n relays, with per-client pools for nostrconnect:// apps. It returns
// the devnet's relay URLs, and closeAll, which stops the signer and closes the pool, the store
// and the devnet in that order.
func startSignerOverRelays(t *testing.T, ctx context.Context, n int) (relays []string, db *store.DB, pool *relaypool.Pool, rs *RemoteSigner, closeAll func()) {
	t.Helper()
	var closers []func()
	closeAll = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	fail := func(err error) {
		closeAll()
		t.Fatal(err)
	}
	net, err := devnet.Start(ctx, devnet.Config{Dir: t.TempDir(), InitialBlocks: -1, Logger: quietLog()})
	if err != nil {
		fail(err)
	}
	closers = append(closers, func() { net.Close() })
	relays = net.RelayURLs()
	db, err = store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		fail(err)
	}
	closers = append(closers, func() { db.Close() })
	pool, err = relaypool.New(relays[:n], relaypool.Options{Logger: quietLog()})
	if err != nil {
		fail(err)
	}
	closers = append(closers, func() { pool.Close() })
	rs, err = NewRemoteSigner(nostr.GeneratePrivateKey(), pool, db, quietLog(),
		WithClientRelays(func(urls []string) (ClosablePool, error) {
			return relaypool.New(urls, relaypool.Options{Logger: quietLog()})
		}))
	if err != nil {
		fail(err)
	}
	if err = rs.Handle(nip46.MethodSignPSBT, echoPSBT{}.SignPSBT); err != nil {
		fail(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { rs.Run(runCtx); close(done) }()
	closers = append(closers, func() { stop(); <-done })
	return relays, db, pool, rs, closeAll
}
