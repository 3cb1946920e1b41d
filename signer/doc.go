// Package signer owns cosigner's keys, its NIP-46 remote signer ("bunker") and its NIP-46
// client.
//
// Keys at rest are in package keystore (signer keeps deprecated aliases).
//
// Remote signer (bunker.go, methods.go): NIP-46 over kind 24133 events, NIP-44 v2 encrypted
// (NIP-04 only in the legacy mode), reached through a relay pool and the relays of
// nostrconnect:// clients (nostrconnect.go). Events are checked (p tag, signature, created_at,
// size, replayed id) before anything else; each client pubkey is rate limited (ratelimit.go).
// connect spends a single-use secret and grants permissions (perms.go: secret perms ∩ requested,
// `method[:kind]`); every method but the session ones (ping, get_public_key, switch_relays,
// logout) needs its permission. Built in: sign_event, nip44_encrypt|decrypt, nip04_* (legacy);
// sign_psbt goes to a PSBTHandler (psbtflow), other extension methods are registered with
// RemoteSigner.Handle. A *HeldError from a handler is answered with auth_url (the request's
// transport and relay are stored), and RemoteSigner.Respond (Responder) sends the late answer in
// that transport, also after a restart. Unknown methods get an error. A nostrconnect connect
// response is re-sent (same id, backoff) until the app's first request or a deadline. Pools on
// clients' own relays (at most MaxClientRelays) close after logout, switch_relays, a revoked
// session, or idleness. Per-client request counts and last-seen times are flushed to the store.
//
// Client (client.go): DialBunker connects to another remote signer by bunker:// URI; Call sends
// a request and waits for its answer, following auth_url.
//
// Spending policy is not applied here: that is psbtflow with policy.
package signer
