// Package nip46 is the NIP-46 wire vocabulary: the kind-24133 request and response payloads,
// method names, the stable error codes of error responses (MethodError), permissions
// ("method[:kind],…"), the bunker:// and nostrconnect:// URIs and Nostr pubkeys.
//
// It is a leaf and does no I/O: no relays, no encryption, no store. The remote signer and the
// client (package signer) and the policy language (co-signers' bunker URIs) all use it.
package nip46

import "errors"

// ErrBadURI means a bunker:// or nostrconnect:// URI is malformed (NIP-46).
var ErrBadURI = errors.New("signer: malformed NIP-46 URI")

// ErrBadPerms means a permission string is not "method[:kind],…" (NIP-46 "Permissions").
var ErrBadPerms = errors.New("signer: malformed permissions")
