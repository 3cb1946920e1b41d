package signer

import (
	"context"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
)

// TestEventKeySignsLikeGoNostr: an event signed with the key parsed once has the pubkey, id and
// serialization go-nostr gives the same event (Event.Sign, Event.GetID), and a signature that
// go-nostr's CheckSignature and relaypool.VerifyEvent accept; two signatures of one event use
// fresh nonces (aux_rand), and keys that are not secp256k1 secret keys are refused.
func TestEventKeySignsLikeGoNostr(t *testing.T) {
	for range 20 {
		sk := nostr.GeneratePrivateKey()
		k, err := parseEventKey(sk)
		if err != nil {
			t.Fatal(err)
		}
		template := nostr.Event{CreatedAt: 1_800_000_000, Kind: nip46.KindNostrConnect,
			Tags: nostr.Tags{{"p", strings.Repeat("ab", 32)}}, Content: "ciphertext?v=2 \"quoted\"\n\u2028"}
		ours, theirs := template, template
		if err := k.sign(&ours); err != nil {
			t.Fatal(err)
		}
		if err := theirs.Sign(sk); err != nil {
			t.Fatal(err)
		}
		if ours.PubKey != theirs.PubKey || ours.ID != theirs.ID || ours.GetID() != ours.ID {
			t.Fatalf("ours: pubkey %s id %s; go-nostr: pubkey %s id %s", ours.PubKey, ours.ID, theirs.PubKey, theirs.ID)
		}
		if ok, err := ours.CheckSignature(); !ok || err != nil {
			t.Fatalf("go-nostr refuses our signature: %v", err)
		}
		if err := relaypool.VerifyEvent(&ours); err != nil {
			t.Fatalf("relaypool refuses our signature: %v", err)
		}
		again := template
		if err := k.sign(&again); err != nil {
			t.Fatal(err)
		}
		if again.ID != ours.ID || again.Sig == ours.Sig {
			t.Fatal("two signatures of one event share their nonce")
		}
	}
	for _, bad := range []string{"", "zz", strings.Repeat("00", 32), strings.Repeat("ff", 32), strings.Repeat("01", 31),
		"fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141"} { // 0, > n, short, n
		if _, err := parseEventKey(bad); err == nil {
			t.Errorf("parseEventKey(%q) accepted", bad)
		}
	}
}

// TestUnverifiedEventChecked: the remote signer skips the signature check only for events the
// relay pool verified (relaypool.Event.Verified, which no one else can set); an Event made
// anywhere else — here one with a correct id over content the signature does not cover — is
// checked and dropped, and a genuine one in the same form is answered.
func TestUnverifiedEventChecked(t *testing.T) {
	h := newHarness(t)
	h.connectWith("sign_psbt", "")
	forged := h.request("f", "ping")
	forged.Content = h.request("f2", "ping").Content
	forged.ID = forged.GetID() // the id fits; the signature is over the old id
	h.rs.handle(context.Background(), relaypool.Event{Event: forged, Relay: "mem://"})
	if out := h.pool.take(); len(out) != 0 {
		t.Fatalf("an event with a bad signature was answered: %d events", len(out))
	}
	if got := h.rs.Drops().Invalid; got != 1 {
		t.Fatalf("invalid drops = %d, want 1", got)
	}
	h.rs.handle(context.Background(), relaypool.Event{Event: h.request("g", "ping"), Relay: "mem://"})
	if out := h.pool.take(); len(out) != 1 {
		t.Fatalf("a genuine request got %d answers, want 1", len(out))
	}
}
