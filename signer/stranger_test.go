package signer

import (
	"context"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

// badSig returns a copy of ev whose signature no longer verifies (one byte of it changed).
func badSig(ev *nostr.Event) *nostr.Event {
	c := *ev
	b := []byte(c.Sig)
	if b[0] == '0' {
		b[0] = '1'
	} else {
		b[0] = '0'
	}
	c.Sig = string(b)
	return &c
}

// TestStrangersDroppedBeforeSignatureCheck (issue 11, finding 5): a stranger's event that is
// not a connect with a usable secret is dropped before its BIP-340 signature is checked (it is
// counted as a stranger's, not as invalid), so a flood of fresh keys costs the signer no
// Schnorr verification beyond the relay pool's; a connect with a usable secret is checked
// before it can spend the secret, and a client's event at once.
func TestStrangersDroppedBeforeSignatureCheck(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if err := h.db.AddConnectSecret(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	before := tableCounts(t, h.db)
	drops := h.rs.Drops()
	for _, ev := range []*nostr.Event{h.request("1", "ping"), h.event("not a request")} {
		if rs := h.send(badSig(ev)); len(rs) != 0 {
			t.Fatalf("a stranger's forged event was answered: %+v", rs)
		}
	}
	if d := h.rs.Drops(); d.Stranger != drops.Stranger+2 || d.Invalid != drops.Invalid {
		t.Fatalf("drops %+v -> %+v; want two strangers' events dropped before the signature check", drops, d)
	}
	// A connect with a usable secret but a bad signature: checked, dropped, the secret kept.
	connect := h.request("2", "connect", h.rs.PublicKey(), "s1")
	if rs := h.send(badSig(connect)); len(rs) != 0 {
		t.Fatalf("a forged connect was answered: %+v", rs)
	}
	if d := h.rs.Drops(); d.Invalid != drops.Invalid+1 {
		t.Fatalf("drops %+v; want the forged connect counted invalid", d)
	}
	if after := tableCounts(t, h.db); after != before {
		t.Fatalf("a forged connect was written: %s -> %s", before, after)
	}
	if r := h.one(connect); r.Result != "ack" {
		t.Fatalf("connect: %+v", r)
	}
	if rs := h.send(connect); len(rs) != 0 {
		t.Fatalf("a replayed connect was answered: %+v", rs)
	}
	// Now a client: its forged events are checked at once.
	drops = h.rs.Drops()
	if rs := h.send(badSig(h.request("3", "ping"))); len(rs) != 0 {
		t.Fatalf("a client's forged event was answered: %+v", rs)
	}
	if d := h.rs.Drops(); d.Invalid != drops.Invalid+1 {
		t.Fatalf("drops %+v -> %+v; want the client's forged event counted invalid", drops, d)
	}
	if r := h.one(h.request("4", "ping")); r.Result != "pong" {
		t.Fatalf("ping: %+v", r)
	}
}
