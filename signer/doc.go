// Package signer owns cosigner's keys and its NIP-46 remote signer ("bunker").
//
// Keys: the BIP32 account key of the multisig wallet (BIP48 path m/48'/coin'/0'/2' for P2WSH)
// and the Nostr identity key, both kept encrypted at rest (scrypt + XChaCha20-Poly1305) in one
// key file whose public half (fingerprint, xpub, npub) is readable without the passphrase.
//
// Remote signer: NIP-46 over kind 24133 events, NIP-44 v2 encrypted, reached through a relay
// pool; single-use connect secrets from bunker:// URIs; method dispatch (connect,
// get_public_key, ping, switch_relays, logout, sign_psbt) with an error answer for every
// unknown method. Spending policy is not applied here: sign_psbt goes to a PSBTHandler
// (psbtflow), which analyses, asks the policy, and signs through this package's AccountKey.
package signer
