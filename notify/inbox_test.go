package notify

import (
	"net/url"
	"reflect"
	"testing"

	"github.com/nbd-wtf/go-nostr"
)

func TestInboxRelays(t *testing.T) {
	cases := []struct {
		name string
		kind int
		tags nostr.Tags
		want []string
	}{
		{"two relays", 10050, nostr.Tags{{"relay", "wss://inbox.example"}, {"relay", "ws://127.0.0.1:7001"}}, []string{"wss://inbox.example", "ws://127.0.0.1:7001"}},
		{"other tags and bad URLs skipped", 10050, nostr.Tags{{"r", "wss://a.example"}, {"relay"}, {"relay", "https://a.example"},
			{"relay", "wss://"}, {"relay", "wss://user:pw@a.example"}, {"relay", " wss://b.example "}, {"relay", "::"}}, []string{"wss://b.example"}},
		{"duplicates dropped", 10050, nostr.Tags{{"relay", "wss://a.example"}, {"relay", "wss://a.example"}}, []string{"wss://a.example"}},
		{"at most five", 10050, nostr.Tags{{"relay", "wss://1.example"}, {"relay", "wss://2.example"}, {"relay", "wss://3.example"},
			{"relay", "wss://4.example"}, {"relay", "wss://5.example"}, {"relay", "wss://6.example"}},
			[]string{"wss://1.example", "wss://2.example", "wss://3.example", "wss://4.example", "wss://5.example"}},
		{"empty list", 10050, nil, nil},
		{"not a DM relay list", 10002, nostr.Tags{{"relay", "wss://a.example"}}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := InboxRelays(&nostr.Event{Kind: c.kind, Tags: c.tags})
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("InboxRelays = %v, want %v", got, c.want)
			}
		})
	}
}

// TestInboxOffer: the newest list wins (a tie goes to the lower id, NIP-01 replaceable events);
// lists of others and other kinds are ignored; the cache is ready once every recipient has one.
func TestInboxOffer(t *testing.T) {
	a, b := "aa", "bb"
	box := newInboxes([]string{a, b})
	list := func(pk string, at nostr.Timestamp, id, relay string) *nostr.Event {
		return &nostr.Event{ID: id, PubKey: pk, Kind: 10050, CreatedAt: at, Tags: nostr.Tags{{"relay", relay}}}
	}
	steps := []struct {
		ev      *nostr.Event
		changed bool
	}{
		{list(a, 100, "50", "wss://one.example"), true},
		{list(a, 99, "01", "wss://older.example"), false},
		{list(a, 100, "60", "wss://tie-higher-id.example"), false},
		{list(a, 100, "40", "wss://tie-lower-id.example"), true},
		{list("cc", 200, "70", "wss://stranger.example"), false},
		{&nostr.Event{ID: "80", PubKey: a, Kind: 10002, CreatedAt: 300, Tags: nostr.Tags{{"relay", "wss://x.example"}}}, false},
	}
	for i, s := range steps {
		if got := box.offer(s.ev); got != s.changed {
			t.Errorf("step %d: offer = %v, want %v", i, got, s.changed)
		}
	}
	select {
	case <-box.ready:
		t.Fatal("ready before every recipient has a list")
	default:
	}
	if got := box.cached(a); !reflect.DeepEqual(got, []string{"wss://tie-lower-id.example"}) {
		t.Errorf("a's relays %v", got)
	}
	box.offer(list(b, 1, "90", "wss://b.example"))
	select {
	case <-box.ready:
	default:
		t.Fatal("not ready with every recipient's list")
	}
	if got := box.relays(t.Context(), b); !reflect.DeepEqual(got, []string{"wss://b.example"}) {
		t.Errorf("b's relays %v", got)
	}
}

// FuzzInboxRelays: whatever the tags, the result is at most five distinct ws:// or wss:// URLs.
func FuzzInboxRelays(f *testing.F) {
	f.Add("relay", "wss://inbox.example", "relay", "ws://127.0.0.1:7001")
	f.Add("relay", "https://a.example", "r", "wss://b.example")
	f.Add("relay", "wss://user@a.example", "relay", "")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string) {
		tags := nostr.Tags{{k1, v1}, {k2, v2}, {k1, v1}, {"relay", v2}, {"relay", v1}, {"relay", "wss://x.example"}, {"relay", "wss://y.example"}}
		got := InboxRelays(&nostr.Event{Kind: 10050, Tags: tags})
		if len(got) > 5 {
			t.Fatalf("%d relays", len(got))
		}
		seen := map[string]bool{}
		for _, u := range got {
			p, err := url.Parse(u)
			if err != nil || (p.Scheme != "ws" && p.Scheme != "wss") || p.Host == "" || seen[u] {
				t.Fatalf("relay %q in %v", u, got)
			}
			seen[u] = true
		}
	})
}
