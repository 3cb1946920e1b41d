package signer

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
)

func TestAnnounceSignsAndPublishes(t *testing.T) {
	pool := &memPool{}
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	ev, res, err := Announce(context.Background(), sk, pool, nip46.Announcement{Name: "cosigner", Relays: pool.URLs()}, time.Unix(1700000000, 0))
	if err != nil || len(res) != 1 || res[0].Err != nil {
		t.Fatalf("announce: %v %+v", err, res)
	}
	got := pool.take()
	if len(got) != 1 || got[0].ID != ev.ID {
		t.Fatalf("published %+v", got)
	}
	if ok, err := got[0].CheckSignature(); !ok || err != nil || got[0].PubKey != pk || got[0].Kind != nip46.KindHandlerInformation ||
		got[0].Tags.GetFirst([]string{"k", "24133"}) == nil || got[0].Tags.GetFirst([]string{"d", nip46.AnnouncementDTag}) == nil {
		t.Fatalf("published event %+v (signature ok: %v %v)", got[0], ok, err)
	}
	if _, _, err := Announce(context.Background(), sk, pool, nip46.Announcement{}, time.Now()); err == nil || len(pool.take()) != 0 {
		t.Fatalf("an announcement without relays was published: %v", err)
	}
}

func TestHandlerEvent(t *testing.T) {
	a := nip46.Announcement{Name: "cosigner", About: "co-signer", Website: "https://co.example", NIP05: "_@co.example",
		Relays: []string{"wss://r1.example", "ws://127.0.0.1:7"}, NostrConnectURL: "https://co.example/connect?uri=<nostrconnect>"}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	ev := handlerEvent(a, strings.Repeat("ab", 32), time.Unix(1700000000, 0))
	if ev.Kind != 31990 || ev.PubKey != strings.Repeat("ab", 32) || ev.CreatedAt != 1700000000 {
		t.Fatalf("event %+v", ev)
	}
	// NIP-89: d and k tags; NIP-46 appendix: relay and nostrconnect_url tags.
	want := nostr.Tags{{"d", nip46.AnnouncementDTag}, {"k", "24133"}, {"relay", "wss://r1.example"}, {"relay", "ws://127.0.0.1:7"},
		{"nostrconnect_url", "https://co.example/connect?uri=<nostrconnect>"}}
	if !slices.EqualFunc(ev.Tags, want, func(a, b nostr.Tag) bool { return slices.Equal(a, b) }) {
		t.Fatalf("tags %v, want %v", ev.Tags, want)
	}
	var content map[string]string
	if err := json.Unmarshal([]byte(ev.Content), &content); err != nil || content["name"] != "cosigner" || content["nip05"] != "_@co.example" ||
		content["website"] != "https://co.example" || len(content) != 4 {
		t.Fatalf("content %s %v", ev.Content, err)
	}
}
