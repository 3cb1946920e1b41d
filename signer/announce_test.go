package signer

import (
	"context"
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
