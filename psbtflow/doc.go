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
// The outbound engine (package outbound) signs the proposals it builds through Decide, the
// same decision for an already-decoded PSBT under the automation's client identity.
package psbtflow
