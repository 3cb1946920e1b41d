package signer

import (
	"errors"

	"github.com/custodyagents/cosigner/nip46"
)

var (
	// ErrBadPassphrase means the key file could not be decrypted with the given passphrase.
	ErrBadPassphrase = errors.New("signer: wrong passphrase or corrupted key file")
	// ErrKeyFileExists is returned by CreateKeyFile when the file is already there.
	ErrKeyFileExists = errors.New("signer: key file already exists")
	// ErrNoPassphrase is returned when an empty passphrase is offered for encryption.
	ErrNoPassphrase = errors.New("signer: empty passphrase")
	// ErrNotOurKey means a derivation or script does not belong to this co-signer's key.
	ErrNotOurKey = errors.New("signer: not this co-signer's key")
	// ErrBadPerms means a permission string is not "method[:kind],…" (NIP-46 "Permissions").
	ErrBadPerms = errors.New("signer: malformed permissions")
	// ErrBadURI means a bunker:// or nostrconnect:// URI is malformed (NIP-46).
	ErrBadURI = nip46.ErrBadURI
	// ErrKeyFileMode means the key file can be read by other users (it must be mode 0600).
	ErrKeyFileMode = errors.New("signer: key file permissions too open")
	// ErrOldKeyFile means a key file of an older format; `cosigner init --upgrade` rewrites it.
	ErrOldKeyFile = errors.New("signer: key file has the old format")
	// ErrTimeout means a NIP-46 request got no response in time (Client.Call).
	ErrTimeout = errors.New("signer: no response from the remote signer in time")
	// ErrClientClosed means the Client was closed.
	ErrClientClosed = errors.New("signer: client closed")
	// ErrBadRequestID means a caller-given NIP-46 request id is empty, longer than 128
	// characters (the remote signer refuses those), or already waited on by another call.
	ErrBadRequestID = errors.New("signer: bad request id")
)
