// Package policy owns cosigner's YAML policy language: loading and validating a policy file
// (errors carry line:column), and Evaluate, a pure function from a policy and the facts of one
// request to a decision that names the rule that made it.
//
// This first version knows the authorised clients (by Nostr pubkey, with the methods each may
// call) and a per-transaction cap on outflow (inputs minus change, so the fee counts as spent).
// Later versions add rolling-window limits, allowlists, fee caps, holds and approvals.
package policy
