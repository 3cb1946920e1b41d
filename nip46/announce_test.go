package nip46

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

func TestAnnouncementValidate(t *testing.T) {
	ok := Announcement{Relays: []string{"wss://r.example"}}
	for _, c := range []struct {
		change func(*Announcement)
		want   string
	}{
		{func(a *Announcement) { a.Relays = nil }, "no relay"},
		{func(a *Announcement) { a.Relays = []string{"https://r.example"} }, "not a ws"},
		{func(a *Announcement) { a.Picture = "javascript:x" }, "picture is not an http"},
		{func(a *Announcement) { a.Name = "a\x00b" }, "control characters"},
		{func(a *Announcement) { a.About = strings.Repeat("a", 1025) }, "about longer"},
		{func(a *Announcement) { a.NIP05 = "Bad Name@co.example" }, "the name may hold"},
		{func(a *Announcement) { a.NIP05 = "x@localhost" }, "not a domain"},
		{func(a *Announcement) { a.NIP05 = "x@co.example/path" }, "not a domain"},
		{func(a *Announcement) { a.NostrConnectURL = "https://co.example/connect" }, "placeholder"},
		{func(a *Announcement) { a.NostrConnectURL = "http://co.example/<nostrconnect>" }, "https://"},
	} {
		a := ok
		c.change(&a)
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", a, err, c.want)
		}
	}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestNostrJSON(t *testing.T) {
	b, err := NostrJSON(pk64, "", []string{"wss://r1.example", "wss://r2.example"}, "")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Names map[string]string          `json:"names"`
		NIP46 map[string]json.RawMessage `json:"nip46"`
	}
	if err := json.Unmarshal(b, &doc); err != nil || doc.Names["_"] != pk64 {
		t.Fatalf("%s %v", b, err)
	}
	// The current form (relays) and the older one nostr-tools reads (relays under the pubkey).
	for _, k := range []string{"relays", pk64} {
		var relays []string
		if err := json.Unmarshal(doc.NIP46[k], &relays); err != nil || !slices.Equal(relays, []string{"wss://r1.example", "wss://r2.example"}) {
			t.Fatalf("nip46.%s: %s %v", k, doc.NIP46[k], err)
		}
	}
	if _, ok := doc.NIP46["nostrconnect_url"]; ok {
		t.Fatal("nostrconnect_url without one given")
	}
	if _, err := NostrJSON(pk64, "Bad Name", []string{"wss://r"}, ""); err == nil {
		t.Fatal("bad name accepted")
	}
	if _, err := NostrJSON(pk64, "bob", nil, ""); err == nil {
		t.Fatal("no relays accepted")
	}
}
