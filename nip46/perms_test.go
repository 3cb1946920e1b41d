package nip46

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePerms(t *testing.T) {
	cases := []struct{ in, want, err string }{
		{"", "", ""},
		{"sign_psbt", "sign_psbt", ""},
		{" sign_event:4 , nip44_encrypt,sign_event:1,,sign_event:4", "nip44_encrypt,sign_event:1,sign_event:4", ""},
		{"sign_event,sign_event:1", "sign_event", ""},                      // kind-less absorbs kinds
		{"sign_event,sign_event:24133", "sign_event,sign_event:24133", ""}, // but not NIP-46's own kind
		{"sign_event:65536", "", "kind must be"},
		{"sign_event:-1", "", "kind must be"},
		{"sign_event:01", "", "kind must be"},
		{"sign_event:x", "", "kind must be"},
		{"nip44_encrypt:abc", "", "only sign_event"},
		{"Sign_PSBT", "", "not a method name"},
		{"a b", "", "not a method name"},
		{":1", "", "not a method name"},
	}
	for _, c := range cases {
		p, err := ParsePerms(c.in)
		if c.err != "" {
			if !errors.Is(err, ErrBadPerms) || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParsePerms(%q) err = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || p.String() != c.want {
			t.Errorf("ParsePerms(%q) = %q, %v; want %q", c.in, p.String(), err, c.want)
		}
	}
}

func TestPermsAllows(t *testing.T) {
	p := MustParsePerms("sign_event:1,sign_psbt")
	any := MustParsePerms("sign_event")
	cases := []struct {
		perms  Perms
		method string
		kind   int
		want   bool
	}{
		{p, "ping", -1, true}, {p, "get_public_key", -1, true}, {p, "logout", -1, true}, {p, "switch_relays", -1, true},
		{p, "sign_psbt", -1, true}, {p, "get_wallet", -1, false},
		{p, "sign_event", 1, true}, {p, "sign_event", 4, false},
		{any, "sign_event", 4, true}, {any, "sign_event", KindNostrConnect, false},
		{MustParsePerms("sign_event:24133"), "sign_event", KindNostrConnect, true},
		{nil, "sign_psbt", -1, false}, {nil, "ping", -1, true},
	}
	for _, c := range cases {
		if got := c.perms.Allows(c.method, c.kind); got != c.want {
			t.Errorf("%q.Allows(%s, %d) = %v", c.perms, c.method, c.kind, got)
		}
	}
}

func TestGrantAtConnect(t *testing.T) {
	cases := []struct {
		secret    string
		has       bool
		requested string
		want      string
	}{
		{"", false, "", "get_wallet,psbt_status,sign_psbt"},
		{"", false, "sign_psbt,sign_event:1", "sign_psbt"},
		{"sign_event,nip44_encrypt", true, "", "nip44_encrypt,sign_event"},
		{"sign_event,nip44_encrypt", true, "sign_event:1,sign_event:4,nip44_decrypt", "sign_event:1,sign_event:4"},
		{"sign_event:1", true, "sign_event", "sign_event:1"},
		{"sign_event:1", true, "sign_event:4", ""},
		{"sign_psbt", true, "garbage:::,also bad", ""}, // only unreadable entries: nothing, not everything
		{"sign_psbt", true, "garbage:::,sign_psbt", "sign_psbt"},
		{"", true, "sign_psbt", ""}, // a secret created with no perms grants nothing
	}
	for _, c := range cases {
		got, err := GrantAtConnect(c.secret, c.has, c.requested)
		if err != nil || got.String() != c.want {
			t.Errorf("GrantAtConnect(%q, %v, %q) = %q, %v; want %q", c.secret, c.has, c.requested, got, err, c.want)
		}
	}
	if _, err := GrantAtConnect("bad perm", true, ""); !errors.Is(err, ErrBadPerms) {
		t.Errorf("malformed secret perms: %v", err)
	}
}

func TestPermsUnionWithout(t *testing.T) {
	p := MustParsePerms("sign_psbt,sign_event:1")
	if got := p.Union(MustParsePerms("get_wallet,sign_event:1,sign_event:7")).String(); got != "get_wallet,sign_event:1,sign_event:7,sign_psbt" {
		t.Errorf("Union = %s", got)
	}
	got, err := MustParsePerms("sign_psbt,sign_event:1,get_wallet").Without(MustParsePerms("sign_event,get_wallet"))
	if err != nil || got.String() != "sign_psbt" {
		t.Errorf("Without = %s, %v", got, err)
	}
	if _, err := MustParsePerms("sign_event").Without(MustParsePerms("sign_event:1")); !errors.Is(err, ErrBadPerms) {
		t.Errorf("revoking one kind from sign_event: %v", err)
	}
}

func FuzzParsePerms(f *testing.F) {
	for _, s := range []string{"", "sign_psbt", "sign_event:1,nip44_encrypt", "sign_event,sign_event:24133", "a:b:c", ",,,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePerms(s)
		if err != nil {
			return
		}
		// The canonical form parses back to itself.
		q, err := ParsePerms(p.String())
		if err != nil || q.String() != p.String() {
			t.Fatalf("%q -> %q -> %q, %v", s, p, q, err)
		}
		if p.Intersect(p).String() != p.String() {
			t.Fatalf("%q ∩ itself = %q", p, p.Intersect(p))
		}
	})
}
