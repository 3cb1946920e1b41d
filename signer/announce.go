package signer

import (
	"context"
	"fmt"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
)

// Announce signs a's NIP-89 handler information event (kind 31990, k 24133; NIP-46 "Remote
// signer discovery via NIP-89") with the remote signer's Nostr secret key sk (hex) and publishes
// it on pool. It returns the signed event and each relay's answer. Errors: a malformed a
// (nip46.Announcement.Validate) or key; a relay that refuses the event is in the results, not
// an error.
func Announce(ctx context.Context, sk string, pool RelayPool, a nip46.Announcement, now time.Time) (nostr.Event, []relaypool.PublishResult, error) {
	if err := a.Validate(); err != nil {
		return nostr.Event{}, nil, err
	}
	pk, err := nostr.GetPublicKey(sk)
	if err != nil {
		return nostr.Event{}, nil, fmt.Errorf("announce: bad Nostr secret key")
	}
	ev := handlerEvent(a, pk, now)
	if err := ev.Sign(sk); err != nil {
		return nostr.Event{}, nil, fmt.Errorf("announce: sign: %w", err)
	}
	return ev, pool.Publish(ctx, ev), nil
}

// handlerEvent is a's NIP-89 handler information event for the remote signer pubkey (kind
// 31990), unsigned: nip46.Announcement's tags and content at now. Call a.Validate first.
func handlerEvent(a nip46.Announcement, pubkey string, now time.Time) nostr.Event {
	var tags nostr.Tags
	for _, t := range a.HandlerTags() {
		tags = append(tags, nostr.Tag(t))
	}
	return nostr.Event{PubKey: pubkey, CreatedAt: nostr.Timestamp(now.Unix()), Kind: nip46.KindHandlerInformation, Tags: tags, Content: a.HandlerContent()}
}
