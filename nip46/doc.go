// Package nip46 is the NIP-46 wire vocabulary that needs no I/O: the bunker:// and
// nostrconnect:// URIs (build and parse, with size limits for hostile input). It is a leaf: the
// policy language parses co-signers' bunker URIs with it without importing the remote signer,
// its store or its relays.
package nip46

import "errors"

// ErrBadURI means a bunker:// or nostrconnect:// URI is malformed (NIP-46).
var ErrBadURI = errors.New("signer: malformed NIP-46 URI")
