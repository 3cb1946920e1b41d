// Package psbtflow owns the life of a signing request: decode the PSBT (BIP-174), analyse it
// against the registered wallet descriptor and the watcher's UTXO set, ask the policy, sign this
// co-signer's share (BIP-174 Signer role) or refuse, and persist the request and its audit entry.
//
// The analysis (Analyze) and the signing (SignInputs) are pure functions over values; Service is
// the thin shell that reads the chain view and the store and is called by the NIP-46 remote
// signer for sign_psbt. It never talks to relays itself.
package psbtflow
