package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/nip46"
)

// Automations: the policy file's `automations:` list (docs/policy.md). Each one
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
	// TriggerSchedule fires once per slot of Trigger.Every, slots aligned to the Unix epoch
	// (see Automation.Slot), the first at the start of the slot after the one of start-up;
	// never more often.
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

// Defaults and bounds of the automations section (checked by Parse).
const (
	// AutomationClientPrefix + an automation's name is the client name psbtflow gives the PSBTs
	// that automation builds ("automation:sweep_deposits"); rules may match it in clients:, and
	// Evaluate authorizes it for sign_psbt while the automation is in the policy. It cannot be
	// a NIP-46 client's pubkey (those are 64 hex characters).
	AutomationClientPrefix = "automation:"
	// MaxCosigners bounds cosigners: (bunker URIs).
	MaxCosigners = 15
	// DefaultTargetBlocks is fee.target_blocks when absent; MaxTargetBlocks its upper bound
	// (blockchain.estimatefee's useful range, as Bitcoin Core's estimatesmartfee).
	DefaultTargetBlocks = 6
	MaxTargetBlocks     = 1008
	// DefaultAutomationMaxFeeRate is fee.max_feerate when neither it nor limits.max_feerate is set.
	DefaultAutomationMaxFeeRate FeeRate = 100
	// DefaultFallbackFeeRate is fee.fallback when absent.
	DefaultFallbackFeeRate FeeRate = 2
	// MinRelayFeeRate is the lowest feerate an automation uses or accepts in its file: Bitcoin
	// Core's and btcd's default minimum relay fee (1000 sat/kvB).
	MinRelayFeeRate FeeRate = 1
	// DefaultCosignerTimeout is timeout when absent; MinCosignerTimeout its lower bound.
	DefaultCosignerTimeout = 10 * time.Minute
	MinCosignerTimeout     = 10 * time.Second
	// DefaultBumpAfter is bump_after when absent; MaxBumpAfter its upper bound (blocks).
	DefaultBumpAfter int32 = 6
	MaxBumpAfter           = 1008
	// MinScheduleEvery is the shortest schedule.
	MinScheduleEvery = time.Minute
	// DefaultMinInputs is consolidate.min_inputs when absent; MaxConsolidateInputs its upper
	// bound (500 2-of-3 P2WSH inputs are about 52,000 vB, well inside a standard transaction's
	// 100,000 vB).
	DefaultMinInputs     = 2
	MaxConsolidateInputs = 500
)

// Automation returns the automation named name, or nil.
func (p *Policy) Automation(name string) *Automation {
	for i := range p.Automations {
		if p.Automations[i].Name == name {
			return &p.Automations[i]
		}
	}
	return nil
}

// AutomationsAt returns the automations in force at now, for the engine to run. While a change
// that loosens the policy waits (see WithPrior), an automation runs only if every policy in force
// has it (adding one waits for the loosen_delay; removing one applies at once), and in its newest
// version that loosens nothing against its versions in the older policies still in force (so a
// new destination, trigger or co-signer waits too, while a lower fee cap applies at once).
func (p *Policy) AutomationsAt(now time.Time) []Automation {
	stages := p.stages(now)
	var out []Automation
	for _, a := range p.Automations {
		versions := make([]*Automation, len(stages)) // newest first
		inAll := true
		for i, s := range stages {
			if versions[i] = s.Automation(a.Name); versions[i] == nil {
				inAll = false
				break
			}
		}
		if !inAll {
			continue
		}
	pick:
		for i, cand := range versions {
			for _, older := range versions[i+1:] {
				if len(automationLoosenings(older, cand)) > 0 {
					continue pick
				}
			}
			out = append(out, *cand)
			break
		}
	}
	return out
}

// ClientName is the client name of the PSBTs a builds: "automation:NAME".
func (a *Automation) ClientName() string { return AutomationClientPrefix + a.Name }

// Destination returns where a sweep or forward pays (Action.To), and false for consolidate
// (which pays the wallet's own next change address).
func (a *Automation) Destination() (Destination, bool) {
	switch a.Action.Kind {
	case ActionSweep, ActionForward:
		return a.Action.To, true
	}
	return Destination{}, false
}

// FiresOn reports whether a funding event of kind (TriggerFundingSeen for an output first seen
// in the mempool or a block, TriggerFundingConfirmed for one that gained a confirmation) with
// confs confirmations fires a funding trigger:
//   - funding_seen fires on either kind, whatever confs (a deposit first seen already
//     confirmed, e.g. while the daemon was down, was seen too);
//   - funding_confirmed: N fires on either kind once confs ≥ N (later reports of the same
//     output fire again: the engine's trigger_key keeps it to one proposal).
//
// For balance_above and schedule it reports whether kind is the automation's own trigger kind
// (see Crosses and Slot for when those fire).
func (a *Automation) FiresOn(kind TriggerKind, confs int32) bool {
	funding := kind == TriggerFundingSeen || kind == TriggerFundingConfirmed
	switch a.Trigger.Kind {
	case TriggerFundingSeen:
		return funding
	case TriggerFundingConfirmed:
		return funding && a.Trigger.Confirmations > 0 && confs >= a.Trigger.Confirmations
	}
	return kind == a.Trigger.Kind
}

// Crosses reports whether a balance_above trigger fires when the wallet's confirmed balance goes
// from before to after: after is above Trigger.Balance and before was not (once per crossing).
// False for other triggers.
func (a *Automation) Crosses(before, after btcutil.Amount) bool {
	return a.Trigger.Kind == TriggerBalanceAbove && before <= a.Trigger.Balance && after > a.Trigger.Balance
}

// Slot returns the start of t's schedule slot: slots are Trigger.Every long and aligned to the
// Unix epoch (so a 24h schedule's slots start at 00:00 UTC, a 1h schedule's on the hour). The
// engine fires once per slot (trigger_key "schedule:<Slot(t).Unix()>"). The zero time for
// triggers other than schedule.
func (a *Automation) Slot(t time.Time) time.Time {
	every := int64(a.Trigger.Every)
	if a.Trigger.Kind != TriggerSchedule || every <= 0 {
		return time.Time{}
	}
	ns := t.UnixNano()
	rem := ns % every
	if rem < 0 {
		rem += every
	}
	return time.Unix(0, ns-rem).UTC()
}

// FeeRate returns the feerate (sat/vB) for a's transaction: the server's estimate for
// Fee.TargetBlocks when ok (blockchain.estimatefee), else Fee.Fallback; at least
// MinRelayFeeRate; at most Fee.MaxFeeRate and limits.MaxFeeRate when set (the policy in force's
// limits: a lower cap than the one checked at load applies).
func (a *Automation) FeeRate(estimate FeeRate, ok bool, limits Limits) FeeRate {
	r := a.Fee.Fallback
	if ok && estimate > 0 {
		r = estimate
	}
	r = max(r, MinRelayFeeRate)
	if a.Fee.MaxFeeRate > 0 {
		r = min(r, a.Fee.MaxFeeRate)
	}
	if limits.MaxFeeRate.Set {
		r = min(r, limits.MaxFeeRate.V)
	}
	return r
}

// MaxFeeRateAt is the strictest limits.max_feerate of the policies in force at now (see
// WithPrior), unset when none sets one.
func (p *Policy) MaxFeeRateAt(now time.Time) Opt[FeeRate] {
	var out Opt[FeeRate]
	for _, s := range p.stages(now) {
		if c := s.Limits.MaxFeeRate; c.Set && (!out.Set || c.V < out.V) {
			out = c
		}
	}
	return out
}

// AutomationFeeRate is a.FeeRate(estimate, ok, …) under the strictest limits.max_feerate of the
// policies in force at now: the feerate the engine should build a's transaction with (sat/vB).
func (p *Policy) AutomationFeeRate(a *Automation, estimate FeeRate, ok bool, now time.Time) FeeRate {
	return a.FeeRate(estimate, ok, Limits{MaxFeeRate: p.MaxFeeRateAt(now)})
}

// Consolidates reports whether a consolidate automation may run at feerate rate (sat/vB, the one
// FeeRate returned): only while rate ≤ Action.MaxFeeRate. True for other actions.
func (a *Automation) Consolidates(rate FeeRate) bool {
	return a.Action.Kind != ActionConsolidate || rate <= a.Action.MaxFeeRate
}

// CosignerPubKeys returns the remote signer pubkeys (hex) of a's cosigners, in order; a URI that
// does not parse (never the case after Parse) is skipped.
func (a *Automation) CosignerPubKeys() []string {
	out := make([]string, 0, len(a.Cosigners))
	for _, u := range a.Cosigners {
		if bp, err := nip46.ParseBunkerURI(u); err == nil {
			out = append(out, bp.RemoteSignerPubKey)
		}
	}
	return out
}

// String describes a in one line for people (`cosigner policy check`, logs): trigger, action,
// fee strategy, co-signers (by pubkey; never their URIs, which carry secrets), timeout, bump.
func (a *Automation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: on %s → %s; fee: target %d blocks, fallback %s, max %s; ", a.Name, a.Trigger, a.Action, a.Fee.TargetBlocks, a.Fee.Fallback.text(), a.Fee.MaxFeeRate.text())
	sigs := "the wallet's threshold"
	if a.Signatures > 0 {
		sigs = strconv.Itoa(a.Signatures)
	}
	keys := a.CosignerPubKeys()
	for i, k := range keys {
		keys[i] = short(k)
	}
	fmt.Fprintf(&b, "signatures: %s, asking %s; timeout %s; ", sigs, strings.Join(keys, ", "), FormatDuration(a.Timeout))
	if a.BumpAfter == 0 {
		b.WriteString("no fee bump")
	} else {
		fmt.Fprintf(&b, "fee bump after %d block(s)", a.BumpAfter)
	}
	return b.String()
}

func (t Trigger) String() string {
	switch t.Kind {
	case TriggerFundingSeen:
		return "funding seen"
	case TriggerFundingConfirmed:
		return fmt.Sprintf("funding with %d confirmation(s)", t.Confirmations)
	case TriggerBalanceAbove:
		return "confirmed balance above " + t.Balance.String()
	case TriggerSchedule:
		return "schedule every " + FormatDuration(t.Every)
	}
	return string(t.Kind)
}

func (a Action) String() string {
	switch a.Kind {
	case ActionSweep:
		if a.Reserve > 0 {
			return fmt.Sprintf("sweep to %s keeping %s", a.To.Text, a.Reserve)
		}
		return "sweep everything to " + a.To.Text
	case ActionForward:
		return "forward the deposit to " + a.To.Text
	case ActionConsolidate:
		return fmt.Sprintf("consolidate ≥ %d UTXOs below %s while the feerate ≤ %s", a.MinInputs, a.Below, a.MaxFeeRate.text())
	}
	return string(a.Kind)
}

// text prints a feerate as written in the policy: "2 sat/vB", "1.5 sat/vB".
func (f FeeRate) text() string { return strconv.FormatFloat(float64(f), 'f', -1, 64) + " sat/vB" }
