package nip46

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

var pk64 = strings.Repeat("ab", 32)

func TestBunkerURI(t *testing.T) {
	u := BunkerURI("ab", []string{"ws://127.0.0.1:1", "ws://127.0.0.1:2"}, "s3cret")
	want := "bunker://ab?relay=ws%3A%2F%2F127.0.0.1%3A1&relay=ws%3A%2F%2F127.0.0.1%3A2&secret=s3cret"
	if u != want {
		t.Fatalf("BunkerURI = %s, want %s", u, want)
	}
	p, err := ParseBunkerURI(BunkerURI(pk64, []string{"wss://r.example", "ws://127.0.0.1:7"}, "x"))
	if err != nil || p.RemoteSignerPubKey != pk64 || p.Secret != "x" || !slices.Equal(p.Relays, []string{"wss://r.example", "ws://127.0.0.1:7"}) {
		t.Fatalf("round trip: %+v %v", p, err)
	}
}

func TestParseNIP46URIs(t *testing.T) {
	bad := []struct{ uri, want string }{
		{"bunker://" + pk64, "no relay"},
		{"bunker://" + pk64[:62] + "?relay=wss://r", "64-character"},
		{"bunker://" + strings.ToUpper(pk64) + "?relay=wss://r", "64-character"},
		{"bunker://" + pk64 + ":80?relay=wss://r", "64-character"},
		{"bunker://u@" + pk64 + "?relay=wss://r", "64-character"},
		{"nostrconnect://" + pk64 + "?relay=wss://r", "without a secret"},
		{"bunker://" + pk64 + "?relay=https://r", "not a ws"},
		{"bunker://" + pk64 + "?relay=wss://", "not a ws"},
		{"bunker://" + pk64 + "/x?relay=wss://r", "path"},
		{"http://" + pk64 + "?relay=wss://r", "scheme"},
		{"bunker://" + pk64 + "?relay=wss://r&secret=" + strings.Repeat("s", 300), "secret longer"},
		{"bunker://" + pk64 + "?" + strings.Repeat("relay=wss://r1&", 1000), "longer than"},
		{"bunker://" + pk64 + "?relay=wss://r;x", "query"},
	}
	for _, c := range bad {
		var err error
		if strings.HasPrefix(c.uri, "nostrconnect") {
			_, err = ParseNostrConnectURI(c.uri)
		} else {
			_, err = ParseBunkerURI(c.uri)
		}
		if !errors.Is(err, ErrBadURI) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%.80s: err = %v, want %q", c.uri, err, c.want)
		}
	}
	u, err := ParseNostrConnectURI("nostrconnect://" + pk64 + "?relay=wss%3A%2F%2Fr1&relay=wss%3A%2F%2Fr1&relay=wss%3A%2F%2Fr2&secret=0s&perms=nip44_encrypt%2Csign_event%3A4&name=My+Client&url=https%3A%2F%2Fapp")
	if err != nil || u.ClientPubKey != pk64 || u.Secret != "0s" || u.Perms != "nip44_encrypt,sign_event:4" || u.Name != "My Client" ||
		u.URL != "https://app" || !slices.Equal(u.Relays, []string{"wss://r1", "wss://r2"}) {
		t.Fatalf("nostrconnect: %+v %v", u, err)
	}
}

func FuzzParseBunkerURI(f *testing.F) {
	f.Add(BunkerURI(pk64, []string{"wss://r.example"}, "s"))
	f.Add("bunker://" + pk64 + "?relay=ws%3A%2F%2Fx&relay=&secret=%zz")
	f.Add("bunker:" + pk64)
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseBunkerURI(s)
		if err != nil {
			if !errors.Is(err, ErrBadURI) {
				t.Fatalf("error not ErrBadURI: %v", err)
			}
			return
		}
		if len(p.RemoteSignerPubKey) != 64 || len(p.Relays) == 0 {
			t.Fatalf("accepted %+v", p)
		}
		q, err := ParseBunkerURI(BunkerURI(p.RemoteSignerPubKey, p.Relays, p.Secret))
		if err != nil || q.RemoteSignerPubKey != p.RemoteSignerPubKey || !slices.Equal(q.Relays, p.Relays) || q.Secret != p.Secret {
			t.Fatalf("re-encoded %+v -> %+v %v", p, q, err)
		}
	})
}

func FuzzParseNostrConnectURI(f *testing.F) {
	f.Add("nostrconnect://" + pk64 + "?relay=wss%3A%2F%2Fr&secret=x&perms=sign_event%3A1&name=n")
	f.Add("nostrconnect://" + pk64 + "?relay=ws://a&relay=ws://a&secret=")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseNostrConnectURI(s)
		if err != nil {
			if !errors.Is(err, ErrBadURI) {
				t.Fatalf("error not ErrBadURI: %v", err)
			}
			return
		}
		if len(u.ClientPubKey) != 64 || len(u.Relays) == 0 || u.Secret == "" {
			t.Fatalf("accepted %+v", u)
		}
		// Whatever the URI asks, the grant never exceeds the operator's base.
		g, err := GrantAtConnect("sign_psbt", true, u.Perms)
		if err != nil || (g.String() != "" && g.String() != "sign_psbt") {
			t.Fatalf("grant %q from perms %q", g, u.Perms)
		}
	})
}
