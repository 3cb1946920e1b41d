// Package outbound owns the transactions this co-signer builds itself (issue 6;
// docs/automations.md): the policy's automations turn chain events and schedules into proposals
// (automate.go), and the Engine takes each through the proposal state machine (outbound.go:
// proposed → awaiting_cosigners → finalized → broadcast → confirmed | replaced | abandoned) —
// build, sign this co-signer's share through the same decision as an inbound sign_psbt
// (Signer: psbtflow.Service.Decide), ask the other co-signers (CosignerAsker), combine, finalize,
// broadcast, follow, bump the fee (outbound_bump.go), invalidate a withheld signature
// (invalidate.go). Proposal and co-signer states are defined here; the store keeps them as
// strings. It must not reach the network itself (the chain and the co-signers come in as
// interfaces) nor sign outside psbtflow's policy path, and its delays run on the clock it is
// given (the daemon's trusted clock).
package outbound
