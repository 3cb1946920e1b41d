package signer

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip04"

	"github.com/custodyagents/cosigner/nip46"
)

// TestLegacyClientsBoundedLRU (issue 11, finding 8): in legacy NIP-04 mode the remote signer
// remembers at most maxLegacyClients senders as speaking NIP-04 (here 3, the same LRU), and
// forgets the least recently heard from first: a client that spoke again is kept over one that
// did not.
func TestLegacyClientsBoundedLRU(t *testing.T) {
	h := newHarness(t, WithLegacyNIP04(true))
	const size = 3
	h.rs.clientLegacy = mustLRU[struct{}](size)
	ctx := context.Background()
	type client struct{ sk, pk string }
	var cs []client
	say := func(c client, id, method string, params ...string) {
		t.Helper()
		shared, err := nip04.ComputeSharedSecret(h.rs.PublicKey(), c.sk)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
		content, err := nip04.Encrypt(string(body), shared)
		if err != nil {
			t.Fatal(err)
		}
		ev := &nostr.Event{PubKey: c.pk, CreatedAt: nostr.Now(), Kind: nip46.KindNostrConnect, Tags: nostr.Tags{{"p", h.rs.PublicKey()}}, Content: content}
		if err := ev.Sign(c.sk); err != nil {
			t.Fatal(err)
		}
		h.rs.handleEvent(ctx, ev, "mem://")
		if n := len(h.pool.take()); n != 1 {
			t.Fatalf("%s from client %s: %d answers, want 1", method, c.pk[:8], n)
		}
	}
	for i := range size + 1 {
		sk := nostr.GeneratePrivateKey()
		pk, _ := nostr.GetPublicKey(sk)
		cs = append(cs, client{sk, pk})
		secret := "legacy-" + pk[:8]
		if err := h.db.AddConnectSecret(ctx, secret); err != nil {
			t.Fatal(err)
		}
		if i < size {
			say(cs[i], "c", "connect", h.rs.PublicKey(), secret)
		}
	}
	for i := range size {
		if !h.rs.clientLegacy.Contains(cs[i].pk) {
			t.Fatalf("client %d not remembered as a NIP-04 client", i)
		}
	}
	// Client 0 speaks again: client 1 is now the least recently heard from.
	say(cs[0], "p", "ping")
	say(cs[size], "c", "connect", h.rs.PublicKey(), "legacy-"+cs[size].pk[:8])
	if n := h.rs.clientLegacy.Len(); n != size {
		t.Fatalf("%d clients remembered, want at most %d", n, size)
	}
	for i, want := range []bool{true, false, true, true} {
		if got := h.rs.clientLegacy.Contains(cs[i].pk); got != want {
			t.Errorf("client %d remembered = %v, want %v (least recently used forgotten first)", i, got, want)
		}
	}
}
