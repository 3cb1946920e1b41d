package signer

import (
	"errors"

	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/nip46"
)

var (
	// Deprecated: use keystore.ErrBadPassphrase.
	ErrBadPassphrase = keystore.ErrBadPassphrase
	// Deprecated: use keystore.ErrKeyFileExists.
	ErrKeyFileExists = keystore.ErrKeyFileExists
	// Deprecated: use keystore.ErrNoPassphrase.
	ErrNoPassphrase = keystore.ErrNoPassphrase
	// Deprecated: use keystore.ErrNotOurKey.
	ErrNotOurKey = keystore.ErrNotOurKey
	// Deprecated: use nip46.ErrBadPerms.
	ErrBadPerms = nip46.ErrBadPerms
	// ErrBadURI means a bunker:// or nostrconnect:// URI is malformed (NIP-46).
	ErrBadURI = nip46.ErrBadURI
	// Deprecated: use keystore.ErrKeyFileMode.
	ErrKeyFileMode = keystore.ErrKeyFileMode
	// Deprecated: use keystore.ErrOldKeyFile.
	ErrOldKeyFile = keystore.ErrOldKeyFile
	// ErrTimeout means a NIP-46 request got no response in time (Client.Call).
	ErrTimeout = errors.New("signer: no response from the remote signer in time")
	// ErrClientClosed means the Client was closed.
	ErrClientClosed = errors.New("signer: client closed")
	// ErrBadRequestID means a caller-given NIP-46 request id is empty, longer than 128
	// characters (the remote signer refuses those), or already waited on by another call.
	ErrBadRequestID = errors.New("signer: bad request id")
)
