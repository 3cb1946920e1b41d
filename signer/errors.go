package signer

import "errors"

var (
	// ErrBadPassphrase means the key file could not be decrypted with the given passphrase.
	ErrBadPassphrase = errors.New("signer: wrong passphrase or corrupted key file")
	// ErrKeyFileExists is returned by CreateKeyFile when the file is already there.
	ErrKeyFileExists = errors.New("signer: key file already exists")
	// ErrNoPassphrase is returned when an empty passphrase is offered for encryption.
	ErrNoPassphrase = errors.New("signer: empty passphrase")
	// ErrNotOurKey means a derivation or script does not belong to this co-signer's key.
	ErrNotOurKey = errors.New("signer: not this co-signer's key")
)
