package daemon

import (
	"context"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/relaypool"
)

// NostrAuthSigner answers relays' NIP-42 AUTH challenges by signing with the bunker's Nostr key
// sk (hex), which stays in this closure: the relay pool never sees it.
func NostrAuthSigner(sk string) relaypool.AuthSigner {
	return func(_ context.Context, ev *nostr.Event) error { return ev.Sign(sk) }
}
