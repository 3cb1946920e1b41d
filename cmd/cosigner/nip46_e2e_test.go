package main

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/signer"
)

// TestNIP46CommandsAgainstDaemon runs the NIP-46 subcommands against a running `cosigner run` on
// the local test network: `cosigner request` (signer.Client) with a bunker URI made with
// --perms, permissions enforced and changed with `cosigner clients` while the daemon runs, and
// `cosigner connect` for a nostrconnect:// app listening on one relay.
func TestNIP46CommandsAgainstDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, err := scenario.Setup(ctx, scenario.Options{Dir: t.TempDir(), MaxPerTx: "1 BTC", Race: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		env.LogOnFailure(t, 40)
		env.Close()
	}()
	bunker, err := env.Cosigner(ctx, "bunker-uri", "--perms", "get_wallet,sign_event:1")
	if err != nil {
		t.Fatal(err)
	}
	bunker = strings.TrimSpace(bunker)
	out, err := env.Cosigner(ctx, "request", bunker, "get_wallet")
	if err != nil {
		t.Fatal(err)
	}
	var w signer.WalletInfo
	if err := json.Unmarshal([]byte(out), &w); err != nil || w.Descriptor != env.Descriptor.String() || w.Network != "regtest" ||
		len(w.Fingerprints) != 3 || w.KeyOrigin != env.KeyA.KeyOrigin() {
		t.Fatalf("get_wallet = %q (%v)", out, err)
	}
	// The same client key with the same (spent) URI: its session carries on.
	out, err = env.Cosigner(ctx, "request", bunker, "sign_event", `{"kind":1,"content":"gm","tags":[],"created_at":1700000000}`)
	var ev nostr.Event
	if err != nil || json.Unmarshal([]byte(out), &ev) != nil || ev.PubKey != env.KeyA.NostrPubKey {
		t.Fatalf("sign_event = %q, %v", out, err)
	}
	if ok, _ := ev.CheckSignature(); !ok {
		t.Fatal("signed event does not verify")
	}
	if _, err := env.Cosigner(ctx, "request", bunker, "sign_event", `{"kind":4,"content":"x","tags":[]}`); err == nil || !strings.Contains(err.Error(), "unauthorized: ") {
		t.Fatalf("sign_event kind 4 without permission: %v", err)
	}
	list, err := env.Cosigner(ctx, "clients", "list")
	if err != nil {
		t.Fatal(err)
	}
	var clientPK string
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, "get_wallet,sign_event:1") {
			clientPK = strings.Fields(line)[0]
		}
	}
	if clientPK == "" {
		t.Fatalf("request client not listed:\n%s", list)
	}
	if _, err := env.Cosigner(ctx, "clients", "grant", clientPK, "sign_event:4"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Cosigner(ctx, "request", bunker, "sign_event", `{"kind":4,"content":"x","tags":[]}`); err != nil {
		t.Fatalf("after grant, with the daemon running: %v", err)
	}

	// nostrconnect:// app on relay 2.
	relays := env.Net.RelayURLs()
	appSK := nostr.GeneratePrivateKey()
	appPK, _ := nostr.GetPublicKey(appSK)
	appPool, err := relaypool.New(relays[2:], relaypool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer appPool.Close()
	since := nostr.Timestamp(time.Now().Add(-time.Minute).Unix())
	events := appPool.Subscribe(ctx, nostr.Filter{Kinds: []int{nip46.KindNostrConnect}, Authors: []string{env.KeyA.NostrPubKey, appPK},
		Tags: nostr.TagMap{"p": []string{appPK}}, Since: &since})
	// Kind 24133 is not stored by relays: prove the app's subscription is live first.
	for i := 0; ; i++ {
		probe := nostr.Event{PubKey: appPK, CreatedAt: nostr.Now(), Kind: nip46.KindNostrConnect, Tags: nostr.Tags{{"p", appPK}},
			Content: "probe " + strings.Repeat(".", i)}
		probe.Sign(appSK)
		appPool.Publish(ctx, probe)
		select {
		case e := <-events:
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
	uri := "nostrconnect://" + appPK + "?relay=" + url.QueryEscape(relays[2]) + "&secret=app-s3cret&perms=" + url.QueryEscape("get_wallet") + "&name=e2e"
	out, err = env.Cosigner(ctx, "connect", uri)
	if err != nil || !strings.Contains(out, "the app is connected") {
		t.Fatalf("connect: %q %v", out, err)
	}
	ck, _ := nip44.GenerateConversationKey(env.KeyA.NostrPubKey, appSK)
	for e := range events {
		if e.PubKey != env.KeyA.NostrPubKey {
			continue
		}
		plain, err := nip44.Decrypt(e.Content, ck)
		if err != nil || !strings.Contains(plain, `"result":"app-s3cret"`) {
			t.Fatalf("connect response %q %v", plain, err)
		}
		return
	}
	t.Fatal("no connect response on the app's relay")
}
