// Package relaypool makes many Nostr relay connections look like one: it subscribes on every
// relay, de-duplicates incoming events by event id, publishes to every relay and reports the
// per-relay OK (NIP-01 "OK" message), and reconnects each relay with growing, jittered backoff.
//
// It knows nothing about what a message means. Connections and subscriptions are go-nostr's
// (github.com/nbd-wtf/go-nostr) Relay primitives; this package adds the "many as one" layer.
package relaypool
