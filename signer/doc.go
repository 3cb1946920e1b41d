// Package signer is the NIP-46 transport: the remote signer ("bunker", bunker.go) that answers
// kind-24133 requests from connected clients over a relay pool and the relays of nostrconnect://
// clients, and the client (client.go) that asks another remote signer.
//
// It owns the intake (event checks, strangers, per-client rate limits, replay sets), NIP-44 v2
// transport encryption (NIP-04 only in the legacy mode), connect and permissions, the built-in
// methods, auth_url for held requests with their late answers (Respond), and the nostrconnect
// response queue. The words on the wire are package nip46's; sessions are kept through the small
// interfaces in sessions.go (implemented by the store), never by importing the store.
//
// It must not decide spending: sign_psbt, approve and psbt_status are handlers registered with
// Handle (psbtflow's, by the daemon), and keys at rest are package keystore's.
package signer
