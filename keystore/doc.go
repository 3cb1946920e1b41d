// Package keystore owns cosigner's keys at rest: the BIP32 account key of the multisig wallet
// (BIP48 path m/48'/coin'/0'/2' for P2WSH), sealed with scrypt + XChaCha20-Poly1305, and the
// Nostr identity key as a NIP-49 ncryptsec, in one key file (mode 0600, checked on load) whose
// public half (fingerprint, xpub, npub) is readable without the passphrase.
//
// It does no network I/O and knows nothing of NIP-46 or PSBTs: the remote signer (package
// signer) and the signing flow receive a *Keys and ask it for keys, never for its file.
package keystore
