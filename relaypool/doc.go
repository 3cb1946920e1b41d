// Package relaypool makes many Nostr relay connections look like one: it subscribes on every
// relay, de-duplicates incoming events by event id, publishes to every relay and reports the
// per-relay OK (NIP-01 "OK" message, formerly NIP-20), and reconnects each relay with growing,
// jittered backoff.
//
// It knows nothing about what a message means. Each relay has one WebSocket connection
// (github.com/coder/websocket) shared by every subscription and publish on it; messages are
// go-nostr's NIP-01 envelopes (REQ, CLOSE, EVENT, OK, EOSE, CLOSED, NOTICE). Incoming events are
// checked before delivery: known subscription id, id and signature valid, filter matched.
//
// Files: pool.go (the Pool, health), relay.go (one relay: dialing, state), conn.go (one
// connection: reader, writer, keepalive), subscribe.go, publish.go, extra.go (relays outside the pool for PublishTo), check.go (pure checks,
// backoff, de-duplication), errors.go.
package relaypool
