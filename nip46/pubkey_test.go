package nip46

import (
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"
)

// TestParsePubKeyAgreesWithGoNostr: npub and hex forms decode to what go-nostr's NIP-19 code
// gives; malformed keys and points off the curve are refused.
func TestParsePubKeyAgreesWithGoNostr(t *testing.T) {
	for i := 0; i < 20; i++ {
		pk, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
		npub, _ := nip19.EncodePublicKey(pk)
		for _, in := range []string{npub, pk, strings.ToUpper(pk)} {
			got, err := ParsePubKey(in)
			if err != nil || got != pk {
				t.Fatalf("ParsePubKey(%q) = %q, %v; want %q", in, got, err, pk)
			}
		}
	}
	nsec, _ := nip19.EncodePrivateKey(nostr.GeneratePrivateKey())
	for _, bad := range []string{"", "npub1xyz", nsec, strings.Repeat("f", 64), strings.Repeat("a", 63), "zz" + strings.Repeat("0", 62)} {
		if _, err := ParsePubKey(bad); err == nil {
			t.Errorf("ParsePubKey(%q) accepted", bad)
		}
	}
}
