// Package psbtflow owns the life of a signing request: decode the PSBT (BIP-174 v0 and BIP-370
// v2, see v2.go), analyse it against the registered wallet descriptor (wsh, sh(wsh) or taproot
// multi_a) and the watcher's UTXO set, ask the policy, sign this co-signer's share (BIP-174
// Signer role: BIP-143 for segwit v0, BIP-341/342 script path for taproot) or refuse, and
// persist the request and its audit entry.
//
// The analysis (Analyze, with its adversarial checks listed on it) and the signing (SignInputs)
// are pure functions over values; Service is the thin shell that reads the chain view and the
// store and is called by the NIP-46 remote signer for sign_psbt. WriteTable, StateView and
// PSBTView serve `cosigner psbt inspect`. It never talks to relays itself.
//
// Outbound (issue 6): Engine runs the policy's automations — chain events and schedules fire
// proposals (automate.go, one per trigger key), and each proposal goes proposed →
// awaiting_cosigners → finalized → broadcast → confirmed | replaced | abandoned (outbound.go, the
// pure state machine; outbound_run.go, the shell: build, sign through Service as client
// automation:<name>, ask the co-signers with a CosignerAsker such as Coordinator, combine,
// finalize, broadcast, follow; outbound_bump.go, RBF fee bumps).
package psbtflow
