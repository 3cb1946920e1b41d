package policy

import (
	"time"

	"github.com/btcsuite/btcd/btcutil"
)

// Automations: the policy file's `automations:` list (DESIGN.md, "Policy (YAML)"). Each one
// names a chain event (its Trigger), the transaction to build when it fires (its Action), how to
// choose the feerate (Fee) and which co-signers to ask for the other signatures (Cosigners).
// psbtflow runs them; a PSBT an automation builds goes through the same analysis and policy
// evaluation as any inbound sign_psbt request, so an automation is never a way around the rules
// or the limits above.
//
// In YAML:
//
//	automations:
//	  - name: sweep_deposits
//	    trigger: {funding_confirmed: 1}        # or funding_seen: true | balance_above: 1 BTC | schedule: 24h
//	    action:
//	      sweep: {to: descriptor:cold_vault, reserve: 0.01 BTC}
//	      # forward: {to: bcrt1q…}             # forward the deposit that fired the trigger
//	      # consolidate: {below: 100000 sat, min_inputs: 5, max_feerate: 5 sat/vB}
//	    fee: {target_blocks: 6, max_feerate: 50 sat/vB, fallback: 5 sat/vB}
//	    cosigners:                              # bunker URIs of the other co-signers
//	      - bunker://<pubkey>?relay=wss://…&secret=…
//	    signatures: 2                           # default: the wallet's threshold
//	    timeout: 10m                            # one co-signer's answer; then ask again
//	    bump_after: 6                           # blocks unconfirmed before an RBF fee bump (0: never)

// TriggerKind says which chain event fires an automation.
type TriggerKind string

// The triggers.
const (
	// TriggerFundingSeen fires once for each new wallet output on the receive branch, when it is
	// first seen (mempool or block).
	TriggerFundingSeen TriggerKind = "funding_seen"
	// TriggerFundingConfirmed fires once for each new wallet output on the receive branch when
	// it reaches Trigger.Confirmations confirmations.
	TriggerFundingConfirmed TriggerKind = "funding_confirmed"
	// TriggerBalanceAbove fires when the wallet's confirmed balance exceeds Trigger.Balance
	// (checked on each new tip; once per crossing, again only after it fell back below).
	TriggerBalanceAbove TriggerKind = "balance_above"
	// TriggerSchedule fires every Trigger.Every (first at start-up + Every; never more often).
	TriggerSchedule TriggerKind = "schedule"
)

// Trigger is an automation's trigger: Kind and the field that belongs to it.
type Trigger struct {
	Kind          TriggerKind
	Confirmations int32          // funding_confirmed: ≥ 1
	Balance       btcutil.Amount // balance_above: > 0
	Every         time.Duration  // schedule: ≥ 1m
}

// ActionKind says what an automation builds.
type ActionKind string

// The actions.
const (
	// ActionSweep spends every confirmed, mature wallet UTXO (less Reserve, kept as change) to
	// Action.To.
	ActionSweep ActionKind = "sweep"
	// ActionForward spends exactly the output that fired a funding_seen / funding_confirmed
	// trigger to Action.To (the fee comes out of it).
	ActionForward ActionKind = "forward"
	// ActionConsolidate spends the wallet's UTXOs smaller than Action.Below (at least MinInputs of
	// them) back to the wallet's next change address, only while the feerate is at most
	// Action.MaxFeeRate.
	ActionConsolidate ActionKind = "consolidate"
)

// Action is what an automation builds when it fires.
type Action struct {
	Kind ActionKind
	// To is the destination of sweep and forward: an address or a named descriptor
	// ("descriptor:NAME", paid at its next index on branch 0 not yet used by this wallet's
	// proposals).
	To Destination
	// Reserve (sweep) stays in the wallet as change; 0 sweeps everything.
	Reserve btcutil.Amount
	// Below, MinInputs and MaxFeeRate configure consolidate.
	Below      btcutil.Amount
	MinInputs  int
	MaxFeeRate FeeRate
}

// FeeStrategy says how an automation picks its feerate: blockchain.estimatefee(TargetBlocks),
// Fallback when the server has no estimate, never above MaxFeeRate nor the global fee caps.
type FeeStrategy struct {
	TargetBlocks int     // 1..1008, default 6
	MaxFeeRate   FeeRate // default: limits.max_feerate if set, else 100 sat/vB
	Fallback     FeeRate // default 2 sat/vB
}

// Automation is one entry of `automations:`.
type Automation struct {
	Name    string
	Line    int // where it starts in the file (for messages)
	Trigger Trigger
	Action  Action
	Fee     FeeStrategy
	// Cosigners are the bunker URIs of the other co-signers to ask with sign_psbt (NIP-46 client).
	Cosigners []string
	// Signatures is how many signatures the transaction needs, this co-signer's included
	// (default and maximum: the wallet descriptor's threshold — checked by psbtflow, which knows
	// the wallet).
	Signatures int
	// Timeout bounds one wait for a co-signer's answer before the request is sent again
	// (default 10m; an auth_url answer means "still holding" and restarts the wait).
	Timeout time.Duration
	// BumpAfter is how many blocks a broadcast transaction may stay unconfirmed before it is
	// replaced with a higher fee (BIP-125), within the fee caps; 0 never bumps. Default 6.
	BumpAfter int32
}
