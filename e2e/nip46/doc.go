// Package nip46e2e tests cosigner's NIP-46 remote signer from the outside, against a real
// `cosigner run` daemon on the local test network (internal/scenario): interoperability with
// independent clients (nostr-tools' BunkerSigner, rust-nostr's NostrConnect through PyPI
// nostr-sdk, go-nostr's BunkerClient), faults (relays killed and restarted under a stream of
// requests, a hostile relay) and hostile clients (unauthorized keys, reused secrets, replays,
// wrong p tags, oversized payloads, stale created_at).
//
// Client is a small NIP-46 client over relaypool used by these tests and by bench/nip46_test.go
// to send many requests, hand-made events, and to count responses per request id.
package nip46e2e
