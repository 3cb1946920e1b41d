// Package psbtflow owns the life of a signing request: decode the PSBT and analyse it against
// the registered wallet descriptor and the watcher's UTXO set (package psbt), ask the policy,
// sign this co-signer's share (psbt.SignInputs) or refuse, and persist the request and its
// audit entry.
//
// The PSBT mechanics are pure functions in package psbt; Service is the thin shell that reads
// the chain view and the store. The NIP-46 remote signer calls its SignPSBT, Approve and
// PSBTStatus with a nip46.Call and takes the late answers of held requests (Responder).
// WireError (wire.go) is the one place where psbt's refusals become NIP-46 error codes. It
// imports neither the transport (signer) nor the key file (keystore, through AccountKey), and
// never talks to relays itself.
//
// The outbound engine (package outbound) signs the proposals it builds through Decide, the
// same decision for an already-decoded PSBT under the automation's client identity.
package psbtflow
