// Package policy owns cosigner's YAML policy language (docs/policy.md).
//
//   - Parse validates a file's bytes and reports every problem with file:line:column and a hint
//     (unknown keys with a "did you mean", amounts without units, unknown names, more approvals
//     required than approvers named, unreachable rules); Schema is the JSON Schema for editors.
//   - Evaluate is a pure function from a Policy and one request's facts (Input: the PSBT
//     analysis, the clock, the spend ledger's totals per velocity window, a hold's approvals) to
//     a Decision: allow, deny, hold or unauthorized, the rule that decided, the policy's hash and
//     a rule-by-rule explanation. Global limits are checked first (no rule can lift them), then
//     the first matching rule decides.
//   - NextChange gives the first instant at which time alone could change a decision (an hours
//     window's edge, daylight-saving changes followed; a cooling-off's end; a loosened policy
//     applying alone), so that held requests are decided again only then.
//   - Loosenings says precisely when a new policy loosens an old one, LoosenedBy how long a new
//     version waits against every policy in force; policy/policyfile (the shell: reading the
//     file, watching it, recording Versions) applies tightenings at once and loosenings only
//     after the running policy's loosen_delay, keeping both in force meanwhile (WithPrior: the
//     stricter decision wins).
//   - Automations (automation.go) are the transactions this co-signer starts itself on chain
//     events; Parse validates them, small pure methods (FiresOn, Crosses, Slot, FeeRate,
//     Consolidates, AutomationsAt) give psbtflow's engine their meaning, and Evaluate decides
//     the PSBTs they build as client "automation:NAME" under the same limits and rules.
//
// This package does no I/O (no files, network or database): reading and watching the file is
// policy/policyfile's.
package policy
