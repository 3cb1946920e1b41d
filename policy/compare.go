package policy

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/btcsuite/btcd/txscript"
)

// Loosenings lists the ways next may allow something that prev does not; empty means next only
// tightens (or keeps) prev. The comparison is by setting, and conservative: a change it cannot
// prove to be a tightening counts as loosening. Precisely, each of these is a loosening:
//   - timezone or loosen_delay changed to a shorter delay;
//   - max_per_tx raised; a velocity window (W, M) of prev without a window in next that is at
//     least as long with a max at most M; max_fee, max_feerate or max_fee_share raised or
//     removed; min_confirmations lowered or removed; hours changed or removed;
//   - a sighash type added to limits.allow_sighash; a warning removed from limits.deny_warnings;
//   - a destination added to (or the whole allowlist removed from) limits.destinations.allow;
//     a destination removed from limits.destinations.deny;
//   - a client added, a client's pubkey or name changed, a client given more methods, its
//     rate_limit removed or raised (more requests in an equal or longer period);
//   - an approver added or its pubkey changed; a named descriptor added, changed or widened
//     (a larger lookahead); a named descriptor narrowed (a smaller lookahead) unless only
//     limits.destinations.allow uses it, where fewer scripts only allow less;
//   - any change to the rules (added, removed, reordered or edited);
//   - an automation added or renamed, and in an automation of the same name: its trigger or
//     action kind or destination changed, sweep's reserve lowered, consolidate's below raised,
//     min_inputs lowered or max_feerate raised, fee max_feerate or fallback raised or
//     target_blocks lowered, a co-signer added (or its URI changed), signatures lowered (or set
//     where the wallet's threshold applied), timeout shortened, bump_after lowered or turned on
//     (see automationLoosenings). Removing an automation or a co-signer is a tightening.
//
// Changes that only tighten apply at once; a loosening applies only after prev's loosen_delay,
// and until then both policies are in force and the stricter decision wins (see WithPrior).
func Loosenings(prev, next *Policy) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	for _, compare := range looseningComparisons {
		compare(prev, next, add)
	}
	return out
}

// looseningComparisons are Loosenings' comparisons, one per feature of the policy, in the order
// their findings are listed. Each calls add once per loosening it finds.
var looseningComparisons = []func(prev, next *Policy, add func(format string, args ...any)){
	loosenedSettings,
	loosenedOutflowCaps,
	loosenedFeeCaps,
	loosenedCoinsAndHours,
	loosenedAnalysisLimits,
	loosenedDestinations,
	loosenedClients,
	loosenedApprovers,
	loosenedDescriptors,
	loosenedAutomations,
	loosenedRules,
}

// loosenedSettings: the time zone changed, or loosen_delay shortened.
func loosenedSettings(prev, next *Policy, add func(string, ...any)) {
	if prev.Zone.String() != next.Zone.String() {
		add("timezone changed from %s to %s", prev.Zone, next.Zone)
	}
	if next.LoosenDelay < prev.LoosenDelay {
		add("loosen_delay shortened from %s to %s", FormatDuration(prev.LoosenDelay), FormatDuration(next.LoosenDelay))
	}
}

// loosenedOutflowCaps: max_per_tx raised; a velocity window of prev that no window of next at
// least as long and with a max at most as high covers.
func loosenedOutflowCaps(prev, next *Policy, add func(string, ...any)) {
	pl, nl := &prev.Limits, &next.Limits
	if nl.MaxPerTx > pl.MaxPerTx {
		add("max_per_tx raised from %s to %s", pl.MaxPerTx, nl.MaxPerTx)
	}
	for _, w := range pl.Velocity {
		if !slices.ContainsFunc(nl.Velocity, func(x Window) bool { return x.Window >= w.Window && x.Max <= w.Max }) {
			add("velocity window %s (max %s) raised or removed", FormatDuration(w.Window), w.Max)
		}
	}
}

// loosenedFeeCaps: max_fee, max_feerate or max_fee_share raised or removed.
func loosenedFeeCaps(prev, next *Policy, add func(string, ...any)) {
	pl, nl := &prev.Limits, &next.Limits
	if pl.MaxFee.Set && (!nl.MaxFee.Set || nl.MaxFee.V > pl.MaxFee.V) {
		add("max_fee raised or removed")
	}
	if pl.MaxFeeRate.Set && (!nl.MaxFeeRate.Set || nl.MaxFeeRate.V > pl.MaxFeeRate.V) {
		add("max_feerate raised or removed")
	}
	if pl.MaxFeeShare.Set && (!nl.MaxFeeShare.Set || nl.MaxFeeShare.V > pl.MaxFeeShare.V) {
		add("max_fee_share raised or removed")
	}
}

// loosenedCoinsAndHours: min_confirmations lowered or removed; limits.hours changed (any change,
// conservatively) or removed.
func loosenedCoinsAndHours(prev, next *Policy, add func(string, ...any)) {
	pl, nl := &prev.Limits, &next.Limits
	if pl.MinConfirmations.Set && (!nl.MinConfirmations.Set || nl.MinConfirmations.V < pl.MinConfirmations.V) {
		add("min_confirmations lowered or removed")
	}
	if pl.Hours != nil && (nl.Hours == nil || *nl.Hours != *pl.Hours && nl.Hours.String() != pl.Hours.String()) {
		add("hours changed or removed")
	}
}

// loosenedAnalysisLimits: a sighash type added to allow_sighash (ALL and DEFAULT are always
// signed); a warning removed from deny_warnings.
func loosenedAnalysisLimits(prev, next *Policy, add func(string, ...any)) {
	pl, nl := &prev.Limits, &next.Limits
	for _, h := range nl.AllowSighash {
		if h != txscript.SigHashAll && h != txscript.SigHashDefault && !slices.Contains(pl.AllowSighash, h) {
			add("sighash %s added to allow_sighash", SighashName(uint32(h)))
		}
	}
	for _, w := range pl.DenyWarnings {
		if !slices.Contains(nl.DenyWarnings, w) {
			add("warning %s removed from deny_warnings", w)
		}
	}
}

// loosenedDestinations: the allowlist removed or a destination added to it; a destination
// removed from the denylist. Destinations compare by their text.
func loosenedDestinations(prev, next *Policy, add func(string, ...any)) {
	pl, nl := &prev.Limits, &next.Limits
	if pl.Allow.Set {
		if !nl.Allow.Set {
			add("destination allowlist removed")
		} else {
			for _, d := range nl.Allow.V {
				if !slices.ContainsFunc(pl.Allow.V, func(x Destination) bool { return x.Text == d.Text }) {
					add("destination %s added to the allowlist", d.Text)
				}
			}
		}
	}
	for _, d := range pl.Deny {
		if !slices.ContainsFunc(nl.Deny, func(x Destination) bool { return x.Text == d.Text }) {
			add("destination %s removed from the denylist", d.Text)
		}
	}
}

// loosenedClients: per client of next (by pubkey): added, renamed, allowed a method prev did not
// list (or every method), rate_limit removed or raised.
func loosenedClients(prev, next *Policy, add func(string, ...any)) {
	for _, c := range next.Clients {
		i := slices.IndexFunc(prev.Clients, func(x Client) bool { return x.PubKey == c.PubKey })
		if i < 0 {
			add("client %q added", c.Name)
			continue
		}
		o := prev.Clients[i]
		if o.Name != c.Name {
			add("client %q renamed to %q", o.Name, c.Name)
		}
		if len(o.Methods) > 0 && (len(c.Methods) == 0 || slices.ContainsFunc(c.Methods, func(m string) bool { return !slices.Contains(o.Methods, m) })) {
			add("client %q may call more methods", c.Name)
		}
		if o.RateLimit != nil && (c.RateLimit == nil || c.RateLimit.Count > o.RateLimit.Count || c.RateLimit.Per < o.RateLimit.Per) {
			add("client %q rate_limit raised or removed", c.Name)
		}
	}
}

// loosenedApprovers: an approver of next (name and pubkey) that prev does not have.
func loosenedApprovers(prev, next *Policy, add func(string, ...any)) {
	for _, a := range next.Approvers {
		if !slices.Contains(prev.Approvers, a) {
			add("approver %q added or changed", a.Name)
		}
	}
}

// loosenedDescriptors, in name order: a named descriptor added, changed or widened (a larger
// lookahead), or narrowed (a smaller one) unless only the allowlist uses it (onlyAllowed).
func loosenedDescriptors(prev, next *Policy, add func(string, ...any)) {
	for _, name := range slices.Sorted(maps.Keys(next.Descriptors)) {
		d := next.Descriptors[name]
		o, ok := prev.Descriptors[name]
		switch {
		case !ok || o.Descriptor != d.Descriptor || o.Lookahead < d.Lookahead:
			add("named descriptor %q added or widened", name)
		case o.Lookahead > d.Lookahead && !(onlyAllowed(prev, name) && onlyAllowed(next, name)):
			// Fewer scripts: a deny (or a hold, or a rule that an earlier match kept a request
			// from) matches fewer outputs.
			add("named descriptor %q narrowed (lookahead %d → %d) while a deny, a rule or an automation uses it", name, o.Lookahead, d.Lookahead)
		}
	}
}

// loosenedAutomations: an automation added (or renamed), or one of the same name loosened
// (automationLoosenings).
func loosenedAutomations(prev, next *Policy, add func(string, ...any)) {
	for i := range next.Automations {
		n := &next.Automations[i]
		o := prev.Automation(n.Name)
		if o == nil {
			add("automation %q added", n.Name)
			continue
		}
		for _, l := range automationLoosenings(o, n) {
			add("automation %q: %s", n.Name, l)
		}
	}
}

// loosenedRules: any change to the rules (first-match rules make every change a possible
// loosening): their number, or each rule whose YAML differs at the same position.
func loosenedRules(prev, next *Policy, add func(string, ...any)) {
	if len(prev.Rules) != len(next.Rules) {
		add("rules changed (%d → %d rules)", len(prev.Rules), len(next.Rules))
		return
	}
	for i := range next.Rules {
		if prev.Rules[i].source != next.Rules[i].source {
			add("rule %d (%q) changed", i+1, next.Rules[i].Name)
		}
	}
}

// automationLoosenings lists the ways n (the new version of an automation) may build or sign
// more than o: firing on another event, paying elsewhere, spending more coins or more fee,
// asking more co-signers, needing fewer signatures, asking more often, bumping sooner.
func automationLoosenings(o, n *Automation) []string {
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if o.Trigger != n.Trigger {
		add("trigger changed from %s to %s", o.Trigger, n.Trigger)
	}
	oa, na := &o.Action, &n.Action
	switch {
	case oa.Kind != na.Kind:
		add("action changed from %s to %s", oa.Kind, na.Kind)
	default:
		if oa.To.Text != na.To.Text {
			add("destination changed from %s to %s", oa.To.Text, na.To.Text)
		}
		if na.Reserve < oa.Reserve {
			add("reserve lowered from %s to %s", oa.Reserve, na.Reserve)
		}
		if na.Below > oa.Below {
			add("consolidate below raised from %s to %s", oa.Below, na.Below)
		}
		if na.MinInputs < oa.MinInputs {
			add("consolidate min_inputs lowered from %d to %d", oa.MinInputs, na.MinInputs)
		}
		if na.MaxFeeRate > oa.MaxFeeRate {
			add("consolidate max_feerate raised from %s to %s", oa.MaxFeeRate.text(), na.MaxFeeRate.text())
		}
		if na.To.Descriptor != nil && oa.To.Descriptor != nil && na.To.Descriptor.Descriptor != oa.To.Descriptor.Descriptor {
			add("destination descriptor %s changed", na.To.Text)
		}
	}
	if n.Fee.MaxFeeRate > o.Fee.MaxFeeRate {
		add("fee max_feerate raised from %s to %s", o.Fee.MaxFeeRate.text(), n.Fee.MaxFeeRate.text())
	}
	if n.Fee.Fallback > o.Fee.Fallback {
		add("fee fallback raised from %s to %s", o.Fee.Fallback.text(), n.Fee.Fallback.text())
	}
	if n.Fee.TargetBlocks < o.Fee.TargetBlocks {
		add("fee target_blocks lowered from %d to %d", o.Fee.TargetBlocks, n.Fee.TargetBlocks)
	}
	for _, u := range n.Cosigners {
		if !slices.Contains(o.Cosigners, u) {
			add("co-signer added or its URI changed")
			break
		}
	}
	if n.Signatures != o.Signatures && (o.Signatures == 0 || n.Signatures != 0 && n.Signatures < o.Signatures) {
		add("signatures lowered")
	}
	if n.Timeout < o.Timeout {
		add("timeout shortened from %s to %s", FormatDuration(o.Timeout), FormatDuration(n.Timeout))
	}
	if n.BumpAfter != o.BumpAfter && (o.BumpAfter == 0 || n.BumpAfter != 0 && n.BumpAfter < o.BumpAfter) {
		add("bump_after lowered or turned on")
	}
	return out
}

// onlyAllowed reports whether the named descriptor is used only in p's destination allowlist
// (where narrowing it only tightens): not in the denylist, in no rule (first-match rules make
// any change of what one matches a possible loosening) and in no automation.
func onlyAllowed(p *Policy, name string) bool {
	ref := "descriptor:" + name
	if slices.ContainsFunc(p.Limits.Deny, func(d Destination) bool { return d.Text == ref }) {
		return false
	}
	for _, r := range p.Rules {
		if strings.Contains(r.source, ref) {
			return false
		}
	}
	for _, a := range p.Automations {
		if a.Action.To.Descriptor != nil && a.Action.To.Descriptor.Name == name || strings.Contains(a.Action.To.Text, ref) {
			return false
		}
	}
	return true
}
