package notify

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nbd-wtf/go-nostr"
)

// maxInboxRelays bounds how many relays of one kind 10050 list are published to (NIP-17 asks
// users to keep the list to 1–3 relays; a longer list is cut, not refused).
const maxInboxRelays = 5

// InboxRelays returns the relays of a kind 10050 "DM relays" event (NIP-17 "Publishing"): the
// URL of each ["relay", <url>] tag that is ws:// or wss:// with a host, in order, duplicates
// dropped, at most maxInboxRelays. Other tags and bad URLs are skipped. It returns nil for an
// event of another kind.
func InboxRelays(ev *nostr.Event) []string {
	if ev == nil || ev.Kind != nostr.KindDMRelayList {
		return nil
	}
	var out []string
	for _, t := range ev.Tags {
		if len(t) < 2 || t[0] != "relay" {
			continue
		}
		u, err := url.Parse(strings.TrimSpace(t[1]))
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" || u.User != nil {
			continue
		}
		s := u.String()
		if slices.Contains(out, s) {
			continue
		}
		out = append(out, s)
		if len(out) == maxInboxRelays {
			break
		}
	}
	return out
}

// inboxList is the newest kind 10050 list seen for one pubkey.
type inboxList struct {
	at     nostr.Timestamp
	id     string
	relays []string
}

// inboxes caches the recipients' kind 10050 lists. offer is the pure part (which event wins);
// watch is the shell that feeds it from a subscription.
type inboxes struct {
	want []string // the recipients (hex)

	mu    sync.Mutex
	lists map[string]inboxList

	readyOnce sync.Once
	ready     chan struct{} // closed when every recipient has a list, or the lookup wait is over
}

func newInboxes(recipients []string) *inboxes {
	return &inboxes{want: recipients, lists: map[string]inboxList{}, ready: make(chan struct{})}
}

// offer takes a kind 10050 event from one of the recipients and keeps it if it is newer than
// the one cached (NIP-01 replaceable events: the later created_at wins, on a tie the lower id).
// It reports whether the cache changed.
func (b *inboxes) offer(ev *nostr.Event) bool {
	if ev.Kind != nostr.KindDMRelayList || !slices.Contains(b.want, ev.PubKey) {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old, ok := b.lists[ev.PubKey]
	if ok && (ev.CreatedAt < old.at || (ev.CreatedAt == old.at && ev.ID >= old.id)) {
		return false
	}
	b.lists[ev.PubKey] = inboxList{at: ev.CreatedAt, id: ev.ID, relays: InboxRelays(ev)}
	if len(b.lists) == len(b.want) {
		b.markReady()
	}
	return true
}

func (b *inboxes) markReady() { b.readyOnce.Do(func() { close(b.ready) }) }

// relays waits until the lookup is ready (or ctx ends) and returns pk's DM relays, nil when it
// has published none (or an empty list).
func (b *inboxes) relays(ctx context.Context, pk string) []string {
	select {
	case <-b.ready:
	case <-ctx.Done():
	}
	return b.cached(pk)
}

// cached returns pk's DM relays as cached now, without waiting.
func (b *inboxes) cached(pk string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.lists[pk].relays)
}

// watch subscribes to the recipients' kind 10050 lists on the pool's relays and keeps the
// cache up to date until ctx ends (the subscription stays open, so a list published later
// replaces the cached one). The cache is ready after wait at the latest.
func (b *inboxes) watch(ctx context.Context, pool Publisher, wait time.Duration, log *slog.Logger) {
	timer := time.AfterFunc(wait, b.markReady)
	defer timer.Stop()
	events := pool.Subscribe(ctx, nostr.Filter{Kinds: []int{nostr.KindDMRelayList}, Authors: b.want})
	for ev := range events {
		if b.offer(ev.Event) {
			log.Info("operator DM relays (kind 10050)", "recipient", ev.PubKey, "relays", InboxRelays(ev.Event), "from", ev.Relay)
		}
	}
	b.markReady()
}
