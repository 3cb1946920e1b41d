package signer

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
	"github.com/custodyagents/cosigner/relaypool"
)

// TestNostrConnectLateAppOverRealRelays runs over the devnet's three @nostr-relay/core relays.
// The remote signer's own pool is relay 0. A nostrconnect:// app names relays 1 and 2, listens
// on relay 2 only and sends on relay 1 only, so everything it gets comes through a relay that
// is one of its own and not one of the signer's. Its subscription opens only after the signer
// recorded the first send of the connect response, which is therefore lost (kind 24133 is
// ephemeral: relays forward it only to live subscriptions); a re-send with the same id reaches
// the app. The app's first request confirms the connection; a late answer (Respond) reaches it
// too; after switch_relays the signer closes its pools on the app's relays.
func TestNostrConnectLateAppOverRealRelays(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	relays, db, pool, rs, closeAll := startSignerOverRelays(t, ctx, 1)
	defer closeAll()

	appSK := nostr.GeneratePrivateKey()
	appPK, _ := nostr.GetPublicKey(appSK)
	uri := "nostrconnect://" + appPK + "?relay=" + url.QueryEscape(relays[1]) + "&relay=" + url.QueryEscape(relays[2]) +
		"&secret=late-app&perms=sign_psbt&name=Late"
	u, err := nip46.ParseNostrConnectURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := AcceptNostrConnect(u, "sign_psbt")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.AddNostrConnect(ctx, nc); err != nil {
		t.Fatal(err)
	}
	// Wait until the first send is on record; nobody listens for it.
	var first session.NostrConnect
	for first.State != session.ConnectSent {
		rs.PokeNostrConnect()
		select {
		case <-ctx.Done():
			t.Fatal("the connect response was never sent")
		case <-time.After(50 * time.Millisecond):
		}
		pending, err := db.PendingNostrConnects(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pending {
			if p.Client == appPK {
				first = p
			}
		}
	}

	listen, err := relaypool.New(relays[2:3], relaypool.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer listen.Close()
	send, err := relaypool.New(relays[1:2], relaypool.Options{Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	defer send.Close()
	since := nostr.Timestamp(time.Now().Add(-time.Minute).Unix())
	appEvents := listen.Subscribe(ctx, nostr.Filter{Kinds: []int{nip46.KindNostrConnect}, Tags: nostr.TagMap{"p": []string{appPK}}, Since: &since})
	ck, _ := nip44.GenerateConversationKey(rs.PublicKey(), appSK)
	read := func(skipID string) (nip46.Response, string) {
		for {
			select {
			case e, ok := <-appEvents:
				if !ok {
					t.Fatal("app subscription closed")
				}
				if e.PubKey != rs.PublicKey() {
					continue
				}
				plain, err := nip44.Decrypt(e.Content, ck)
				if err != nil {
					t.Fatal(err)
				}
				var r nip46.Response
				json.Unmarshal([]byte(plain), &r)
				if r.ID == skipID {
					continue
				}
				return r, e.Relay
			case <-ctx.Done():
				t.Fatal("no response on the app's relay")
			}
		}
	}
	connectResp, on := read("")
	if connectResp.Result != "late-app" || connectResp.ID != first.ResponseID || connectResp.Error != "" {
		t.Fatalf("re-sent connect response %+v (first send had id %q)", connectResp, first.ResponseID)
	}
	if on != listen.URLs()[0] {
		t.Fatalf("response came on %q", on)
	}
	call := func(id, method string, params ...string) nip46.Response {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
		content, _ := nip44.Encrypt(string(body), ck)
		req := nostr.Event{PubKey: appPK, CreatedAt: nostr.Now(), Kind: nip46.KindNostrConnect, Tags: nostr.Tags{{"p", rs.PublicKey()}}, Content: content}
		req.Sign(appSK)
		if n, err := relaypool.Published(send.Publish(ctx, req)); n == 0 {
			t.Fatal(err)
		}
		r, _ := read(connectResp.ID)
		if r.ID != id {
			t.Fatalf("answer to %s: %+v", id, r)
		}
		return r
	}
	if r := call("p1", "sign_psbt", "cHNidP8"); r.Result != "signed:cHNidP8" {
		t.Fatalf("sign_psbt: %+v", r)
	}
	if st, _, err := db.NostrConnectState(ctx, appPK); err != nil || st != session.ConnectConfirmed {
		t.Fatalf("state after the app's first request: %q %v", st, err)
	}
	if err := rs.Respond(ctx, appPK, "held-1", "late-result", nil); err != nil {
		t.Fatal(err)
	}
	if r, _ := read(connectResp.ID); r.ID != "held-1" || r.Result != "late-result" {
		t.Fatalf("late answer %+v", r)
	}

	if got := rs.ClientRelayPools(); len(got) != 2 {
		t.Fatalf("pools on the app's relays: %v", got)
	}
	r := call("s1", "switch_relays")
	var urls []string
	if json.Unmarshal([]byte(r.Result), &urls) != nil || !slices.Equal(urls, pool.URLs()) {
		t.Fatalf("switch_relays: %+v", r)
	}
	for len(rs.ClientRelayPools()) != 0 { // released right after the answer went out
		select {
		case <-ctx.Done():
			t.Fatalf("pools still open after switch_relays: %v", rs.ClientRelayPools())
		case <-time.After(20 * time.Millisecond):
		}
	}
	ss, err := db.ListSessions(ctx)
	if err != nil || len(ss) != 1 || len(ss[0].Relays) != 0 {
		t.Fatalf("session after switch_relays: %+v %v", ss, err)
	}
}
