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
// Each relay has a state (idle, connecting, connected, backing-off, auth-required, failed) and
// its own exponential, jittered backoff; subscriptions resume with Since after a reconnect.
// Publish returns at a quorum (Options.Quorum, default a majority) and keeps retrying the other
// relays in the background. Relays that ask for NIP-42 AUTH get a kind 22242 event signed by
// Options.AuthSigner; NIP-11 limits (max_message_length, max_subscriptions, max_limit, …) are
// fetched before each relay's first dial and respected.
//
// Files: pool.go (the Pool, options, health), relay.go (one relay: state, dialing, backoff,
// counters), state.go, conn.go (one connection: reader, writer, keepalive), auth.go (NIP-42),
// info.go (NIP-11), subscribe.go, publish.go (quorum, background retries), extra.go (relays
// outside the pool for PublishTo), check.go (pure checks, backoff, quorum, de-duplication),
// errors.go.
package relaypool
