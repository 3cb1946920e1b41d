package keystore

import "errors"

var (
	// ErrBadPassphrase means the key file could not be decrypted with the given passphrase.
	ErrBadPassphrase = errors.New("keystore: wrong passphrase or corrupted key file")
	// ErrKeyFileExists is returned by CreateKeyFile when the file is already there.
	ErrKeyFileExists = errors.New("keystore: key file already exists")
	// ErrNoPassphrase is returned when an empty passphrase is offered for encryption.
	ErrNoPassphrase = errors.New("keystore: empty passphrase")
	// ErrNotOurKey means a derivation or script does not belong to this co-signer's key.
	ErrNotOurKey = errors.New("keystore: not this co-signer's key")
	// ErrKeyFileMode means the key file can be read by other users (it must be mode 0600).
	ErrKeyFileMode = errors.New("keystore: key file permissions too open")
	// ErrOldKeyFile means a key file of an older format; `cosigner init --upgrade` rewrites it.
	ErrOldKeyFile = errors.New("keystore: key file has the old format")
)
