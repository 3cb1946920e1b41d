package relaypool

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

func TestParseInfo(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      Limits
		err       bool
	}{
		{"no limitation", `{"name":"r","supported_nips":[1,11]}`, Limits{}, false},
		{"limits", `{"limitation":{"max_message_length":16384,"max_subscriptions":20,"max_filters":100,"max_limit":5000,"max_subid_length":100,"max_event_tags":100,"max_content_length":8196,"auth_required":true}}`,
			Limits{MaxMessageLength: 16384, MaxSubscriptions: 20, MaxFilters: 100, MaxLimit: 5000, MaxSubidLength: 100, MaxEventTags: 100, MaxContentLength: 8196, AuthRequired: true}, false},
		{"negative is no limit", `{"limitation":{"max_message_length":-1,"max_subscriptions":-5}}`, Limits{}, false},
		{"not JSON", `<html>hello</html>`, Limits{}, true},
		{"wrong type", `{"limitation":{"max_message_length":"big"}}`, Limits{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseInfo([]byte(tc.doc))
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("parseInfo = %+v, %v; want %+v (error: %v)", got, err, tc.want, tc.err)
			}
		})
	}
}

func FuzzParseInfo(f *testing.F) {
	f.Add([]byte(`{"limitation":{"max_message_length":16384,"max_subscriptions":20}}`))
	f.Add([]byte(`{"limitation":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := parseInfo(b)
		if err != nil {
			return
		}
		if l.MaxMessageLength < 0 || l.MaxSubscriptions < 0 || l.MaxLimit < 0 || l.MaxSubidLength < 0 {
			t.Fatalf("negative limit from %q: %+v", b, l)
		}
	})
}

func TestLimitsCheckPublish(t *testing.T) {
	ev := signed(t, 1, "00", strings.Repeat("é", 100))
	ev.Tags = append(ev.Tags, nostr.Tag{"t", "a"}, nostr.Tag{"t", "b"})
	msg := []byte(strings.Repeat("x", 1000))
	for _, tc := range []struct {
		l    Limits
		want string // "" for no error
	}{
		{Limits{}, ""},
		{Limits{MaxMessageLength: 1000, MaxEventTags: 3, MaxContentLength: 100}, ""},
		{Limits{MaxMessageLength: 999}, "max_message_length"},
		{Limits{MaxEventTags: 2}, "max_event_tags"},
		{Limits{MaxContentLength: 99}, "max_content_length"}, // characters, not bytes
	} {
		err := tc.l.checkPublish(&ev, msg)
		if tc.want == "" && err != nil || tc.want != "" && (!errors.Is(err, ErrRelayLimit) || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("checkPublish with %+v = %v, want %q", tc.l, err, tc.want)
		}
	}
	f := Limits{MaxLimit: 10}.adjustFilter(nostr.Filter{Limit: 500})
	if f.Limit != 10 {
		t.Errorf("adjustFilter: limit %d, want 10", f.Limit)
	}
}

// TestRelayLimits runs against a relay that announces NIP-11 limits (relay.mjs
// --max-message-length, --max-subscriptions): the Pool reads them before dialing, refuses an
// event over max_message_length without sending it, and keeps at most max_subscriptions REQs
// open (the library would silently drop the oldest subscription beyond it).
func TestRelayLimits(t *testing.T) {
	url := startGlueRelay(t, "--max-message-length", "4096", "--max-subscriptions", "2")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rec := &logRecorder{}
	pool, err := New([]string{url}, Options{PublishTimeout: 3 * time.Second, Logger: testLogger(t, rec)})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rcpt := []string{freshPubKey(t), freshPubKey(t), freshPubKey(t)}

	assertAllOK(t, pool.Publish(ctx, signed(t, 1, rcpt[0], "small")), []string{url})
	h := pool.Health()[0]
	if h.Limits.MaxMessageLength != 4096 || h.Limits.MaxSubscriptions != 2 {
		t.Fatalf("limits %+v, want the relay's NIP-11 max_message_length 4096 and max_subscriptions 2", h.Limits)
	}

	t.Log("an event over max_message_length is refused before sending; the connection stays")
	big := signed(t, 1, rcpt[0], strings.Repeat("x", 5000))
	res := pool.Publish(ctx, big)
	if !errors.Is(res[0].Err, ErrRelayLimit) || !strings.Contains(res[0].Err.Error(), "at most 4096") {
		t.Fatalf("Publish of a large event = %+v, want ErrRelayLimit naming the limit", res[0])
	}
	if h2 := pool.Health()[0]; h2.State != StateConnected || h2.Connects != 1 || h2.Disconnects != 0 {
		t.Fatalf("after the refused event: %+v, want the first connection still up", h2)
	}

	t.Log("three subscriptions on a relay that allows two: the third waits for a slot")
	ctx0, cancel0 := context.WithCancel(ctx)
	subs := []*collector{collect(pool.Subscribe(ctx0, nostr.Filter{Kinds: []int{1}, Tags: nostr.TagMap{"p": {rcpt[0]}}}))}
	for _, p := range rcpt[1:2] {
		subs = append(subs, collect(pool.Subscribe(ctx, nostr.Filter{Kinds: []int{1}, Tags: nostr.TagMap{"p": {p}}})))
	}
	for i := range 2 { // both open (the relay's answer shows it)
		ev := signed(t, 1, rcpt[i], "probe")
		assertAllOK(t, pool.Publish(ctx, ev), []string{url})
		subs[i].await(t, ev.ID, "probe on subscription "+string(rune('0'+i)), 10*time.Second)
	}
	subs = append(subs, collect(pool.Subscribe(ctx, nostr.Filter{Kinds: []int{1}, Tags: nostr.TagMap{"p": {rcpt[2]}}})))
	waitFor(t, 10*time.Second, "the third subscription waiting", func() bool { return rec.has("waiting for a subscription slot", url) })
	e2 := signed(t, 1, rcpt[2], "stored for the third")
	assertAllOK(t, pool.Publish(ctx, e2), []string{url})
	live0 := signed(t, 1, rcpt[0], "live for the first")
	assertAllOK(t, pool.Publish(ctx, live0), []string{url})
	subs[0].await(t, live0.ID, "live event on the first subscription (not dropped by the relay)", 10*time.Second)

	t.Log("the first subscription ends: the third gets its slot and the stored event")
	cancel0()
	subs[2].await(t, e2.ID, "stored event on the third subscription", 10*time.Second)
	live1 := signed(t, 1, rcpt[1], "live for the second")
	assertAllOK(t, pool.Publish(ctx, live1), []string{url})
	subs[1].await(t, live1.ID, "live event on the second subscription", 10*time.Second)
}
