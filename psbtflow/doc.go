// Package psbtflow owns the life of a signing request: decode the PSBT and analyse it against
// the registered wallet descriptor and the watcher's UTXO set (package psbt), ask the policy,
// sign this co-signer's share (psbt.SignInputs) or refuse, and persist the request and its
// audit entry.
//
// The PSBT mechanics are pure functions in package psbt; Service is the thin shell that reads
// the chain view and the store and is called by the NIP-46 remote signer for sign_psbt.
// WireError (wire.go) is the one place where psbt's refusals become NIP-46 error codes. It never
// talks to relays itself.
//
// Outbound (issue 6): Engine runs the policy's automations — chain events and schedules fire
// proposals (automate.go, one per trigger key), and each proposal goes proposed →
// awaiting_cosigners → finalized → broadcast → confirmed | replaced | abandoned (outbound.go, the
// pure state machine; outbound_run.go, the shell: build, sign through Service as client
// automation:<name>, ask the co-signers with a CosignerAsker such as Coordinator, combine,
// finalize, broadcast, follow; outbound_bump.go, RBF fee bumps).
package psbtflow
