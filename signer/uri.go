package signer

import "github.com/custodyagents/cosigner/nip46"

// The bunker:// and nostrconnect:// URIs live in the leaf package nip46 (no I/O), so that the
// policy language can parse them without importing the remote signer; these names keep the
// signer's API.

// BunkerPointer is a parsed bunker:// URI (nip46.BunkerPointer).
type BunkerPointer = nip46.BunkerPointer

// NostrConnectURI is a parsed nostrconnect:// URI (nip46.NostrConnectURI).
type NostrConnectURI = nip46.NostrConnectURI

// BunkerURI builds "bunker://<remote-signer-pubkey>?relay=…&relay=…&secret=…" (NIP-46).
func BunkerURI(remoteSignerPubKey string, relays []string, secret string) string {
	return nip46.BunkerURI(remoteSignerPubKey, relays, secret)
}

// ParseBunkerURI parses a bunker:// URI. Errors wrap ErrBadURI.
func ParseBunkerURI(s string) (BunkerPointer, error) { return nip46.ParseBunkerURI(s) }

// ParseNostrConnectURI parses a nostrconnect:// URI. Errors wrap ErrBadURI.
func ParseNostrConnectURI(s string) (NostrConnectURI, error) { return nip46.ParseNostrConnectURI(s) }
