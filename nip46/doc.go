// Package nip46 is the NIP-46 wire vocabulary: the kind-24133 request and response payloads,
// method names, the stable error codes of error responses (MethodError), permissions
// ("method[:kind],…"), the bunker:// and nostrconnect:// URIs, Nostr pubkeys, the client
// metadata a client gives about itself (a display hint, never authority), and the discovery
// documents: the NIP-89 handler event (kind 31990) and the NIP-05 nostr.json with NIP-46 relays.
//
// It is a leaf and does no I/O: no relays, no encryption, no store. The remote signer and the
// client (package signer) and the policy language (co-signers' bunker URIs) all use it.
package nip46

import "errors"

// ErrBadURI means a bunker:// or nostrconnect:// URI is malformed (NIP-46).
var ErrBadURI = errors.New("signer: malformed NIP-46 URI")

// ErrBadPerms means a permission string is not "method[:kind],…" (NIP-46 "Permissions").
var ErrBadPerms = errors.New("signer: malformed permissions")
