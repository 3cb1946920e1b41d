package policy

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/custodyagents/cosigner/nip46"
)

// The keys of the `automations:` section (the JSON Schema is built from the same lists).
var (
	keysAutomation  = []string{"name", "trigger", "action", "fee", "cosigners", "signatures", "timeout", "bump_after"}
	keysTrigger     = []string{string(TriggerFundingSeen), string(TriggerFundingConfirmed), string(TriggerBalanceAbove), string(TriggerSchedule)}
	keysAction      = []string{string(ActionSweep), string(ActionForward), string(ActionConsolidate)}
	keysSweep       = []string{"to", "reserve"}
	keysForward     = []string{"to"}
	keysConsolidate = []string{"below", "min_inputs", "max_feerate"}
	keysFee         = []string{"target_blocks", "max_feerate", "fallback"}
)

var automationName = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// parse-time limits and defaults of an automation.
const (
	maxAutomationConfs = 10_000
	maxSignatures      = 1 + MaxCosigners
)

// automations parses the `automations:` list. It runs after descriptors and limits (it refers to
// named descriptors and to limits.max_feerate) and before rules (rules may match the client
// "automation:NAME").
func (v *validator) automations(n *yaml.Node) {
	names := map[string]int{}
	v.autoNames = map[string]bool{}
	for _, item := range v.list(n, "automations", "[{name: sweep_deposits, trigger: {funding_confirmed: 1}, action: {sweep: {to: descriptor:cold_vault}}, cosigners: [bunker://…]}]") {
		m := v.mapping(item, "an automation", keysAutomation)
		if m == nil {
			continue
		}
		a, ok := v.automation(item, m)
		if a.Name != "" {
			if line, dup := names[a.Name]; dup {
				v.errorf(m["name"], "automation name %q used twice (first on line %d)", a.Name, line)
				ok = false
			} else {
				names[a.Name] = item.Line
				v.autoNames[a.Name] = true
			}
		}
		if ok {
			v.p.Automations = append(v.p.Automations, a)
		}
	}
}

func (v *validator) automation(item *yaml.Node, m map[string]*yaml.Node) (Automation, bool) {
	a := Automation{Line: item.Line, Timeout: DefaultCosignerTimeout, BumpAfter: DefaultBumpAfter}
	errs := len(v.errs)
	label := "automation"
	if nm, ok := m["name"]; !ok {
		v.errorf(item, "automation needs a name (lower-case letters, digits, _ and -; proposals and logs refer to it)")
	} else if s, ok := v.scalar(nm, "name", "sweep_deposits"); ok {
		if !automationName.MatchString(s) {
			v.errorf(nm, "automation name %q must be 1 to 64 of a-z, 0-9, _ and - (it is stored with every proposal)", s)
		} else {
			a.Name = s
			label = fmt.Sprintf("automation %q", s)
		}
	}
	if tn, ok := m["trigger"]; !ok {
		v.errorf(item, "%s needs trigger: one of {funding_seen: true}, {funding_confirmed: 1}, {balance_above: 1 BTC}, {schedule: 24h}", label)
	} else {
		a.Trigger, _ = v.trigger(tn)
	}
	if an, ok := m["action"]; !ok {
		v.errorf(item, "%s needs action: one of {sweep: {to: …}}, {forward: {to: …}}, {consolidate: {below: …, max_feerate: …}}", label)
	} else {
		a.Action, _ = v.action(an, a.Trigger.Kind)
	}
	a.Fee = v.feeStrategy(item, m["fee"])
	if cn, ok := m["cosigners"]; !ok {
		v.errorf(item, "%s needs cosigners: the bunker:// URIs of the other co-signers to ask for signatures", label)
	} else {
		a.Cosigners = v.cosigners(cn)
	}
	if sn, ok := m["signatures"]; ok {
		if c, ok := v.intIn(sn, "signatures", 2, maxSignatures); ok {
			if _, listed := m["cosigners"]; listed && len(a.Cosigners) > 0 && c > 1+len(a.Cosigners) {
				v.errorf(sn, "signatures: %d needs %d co-signers besides this one, but cosigners lists %d", c, c-1, len(a.Cosigners))
			} else {
				a.Signatures = c
			}
		}
	}
	if tn, ok := m["timeout"]; ok {
		if d, ok := v.duration(tn, "timeout"); ok {
			if d < MinCosignerTimeout {
				v.errorf(tn, "timeout %s is shorter than %s (a co-signer needs time to answer over the relays)", FormatDuration(d), FormatDuration(MinCosignerTimeout))
			} else {
				a.Timeout = d
			}
		}
	}
	if bn, ok := m["bump_after"]; ok {
		if c, ok := v.intIn(bn, "bump_after", 0, MaxBumpAfter); ok {
			a.BumpAfter = int32(c)
		}
	}
	return a, len(v.errs) == errs
}

// intIn reads a whole number from lo to hi.
func (v *validator) intIn(n *yaml.Node, what string, lo, hi int) (int, bool) {
	s, ok := v.scalar(n, what, strconv.Itoa(lo))
	if !ok {
		return 0, false
	}
	c, err := strconv.Atoi(s)
	if err != nil || c < lo || c > hi {
		v.errorf(n, "%s must be a whole number from %d to %d, got %q", what, lo, hi, s)
		return 0, false
	}
	return c, true
}

// oneKey checks that the mapping n (already read into m) has exactly one of keys and returns it.
// It returns the key's node and its value's.
func (v *validator) oneKey(n *yaml.Node, m map[string]*yaml.Node, what, example string, keys []string) (*yaml.Node, *yaml.Node, bool) {
	if m == nil {
		return nil, nil, false
	}
	var found []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		if _, ok := m[n.Content[i].Value]; ok && !slices.ContainsFunc(found, func(k *yaml.Node) bool { return k.Value == n.Content[i].Value }) {
			found = append(found, n.Content[i])
		}
	}
	switch {
	case len(found) == 1:
		return found[0], m[found[0].Value], true
	case len(found) > 1:
		v.errorf(found[1], "%s takes exactly one of %s; this one has %s and %s (make two automations)", what, strings.Join(keys, ", "), found[0].Value, found[1].Value)
	case len(n.Content) == 0:
		v.errorf(n, "%s is empty: give one of %s, e.g. %s", what, strings.Join(keys, ", "), example)
	}
	// otherwise only unknown keys, already reported by mapping
	return nil, nil, false
}

func (v *validator) trigger(n *yaml.Node) (Trigger, bool) {
	m := v.mapping(n, "trigger", keysTrigger)
	key, val, ok := v.oneKey(n, m, "trigger", "{funding_confirmed: 1}", keysTrigger)
	if !ok {
		return Trigger{}, false
	}
	t := Trigger{Kind: TriggerKind(key.Value)}
	switch t.Kind {
	case TriggerFundingSeen:
		if val.Kind != yaml.ScalarNode || val.Value != "true" {
			v.errorf(val, "funding_seen takes true (it fires when a deposit is first seen); to wait for confirmations use funding_confirmed: N")
			return Trigger{}, false
		}
	case TriggerFundingConfirmed:
		c, ok := v.intIn(val, "funding_confirmed", 1, maxAutomationConfs)
		if !ok {
			return Trigger{}, false
		}
		t.Confirmations = int32(c)
	case TriggerBalanceAbove:
		amt, ok := v.amount(val, "balance_above")
		if !ok {
			return Trigger{}, false
		}
		if amt <= 0 {
			v.errorf(val, "balance_above must be more than 0 (it fires when the confirmed balance rises above it)")
			return Trigger{}, false
		}
		t.Balance = amt
	case TriggerSchedule:
		d, ok := v.duration(val, "schedule")
		if !ok {
			return Trigger{}, false
		}
		if d < MinScheduleEvery {
			v.errorf(val, "schedule %s is shorter than %s", FormatDuration(d), FormatDuration(MinScheduleEvery))
			return Trigger{}, false
		}
		t.Every = d
	}
	return t, true
}

func (v *validator) action(n *yaml.Node, trig TriggerKind) (Action, bool) {
	m := v.mapping(n, "action", keysAction)
	key, val, ok := v.oneKey(n, m, "action", "{sweep: {to: descriptor:cold_vault}}", keysAction)
	if !ok {
		return Action{}, false
	}
	a := Action{Kind: ActionKind(key.Value)}
	errs := len(v.errs)
	switch a.Kind {
	case ActionSweep:
		am := v.mapping(val, "sweep", keysSweep)
		if am == nil {
			return Action{}, false
		}
		a.To = v.automationTo(val, am, "sweep")
		if rn, ok := am["reserve"]; ok {
			a.Reserve, _ = v.amount(rn, "reserve")
		}
	case ActionForward:
		if trig != "" && trig != TriggerFundingSeen && trig != TriggerFundingConfirmed {
			v.errorf(key, "forward spends the deposit that fired the trigger, so it needs a funding_seen or funding_confirmed trigger, not %s (use sweep)", trig)
		}
		am := v.mapping(val, "forward", keysForward)
		if am == nil {
			return Action{}, false
		}
		a.To = v.automationTo(val, am, "forward")
	case ActionConsolidate:
		am := v.mapping(val, "consolidate", keysConsolidate)
		if am == nil {
			return Action{}, false
		}
		if bn, ok := am["below"]; !ok {
			v.errorf(val, "consolidate needs below: the value under which a UTXO is consolidated, e.g. below: 100000 sat")
		} else if amt, ok := v.amount(bn, "below"); ok {
			if amt <= 0 {
				v.errorf(bn, "below must be more than 0")
			}
			a.Below = amt
		}
		a.MinInputs = DefaultMinInputs
		if mn, ok := am["min_inputs"]; ok {
			a.MinInputs, _ = v.intIn(mn, "min_inputs", 2, MaxConsolidateInputs)
		}
		if fn, ok := am["max_feerate"]; !ok {
			v.errorf(val, "consolidate needs max_feerate: it runs only while the feerate is at most this, e.g. max_feerate: 5 sat/vB")
		} else if fr, ok := v.feeRate(fn, "max_feerate"); ok {
			a.MaxFeeRate = fr
		}
	}
	return a, len(v.errs) == errs
}

// feeRate reads a feerate of at least MinRelayFeeRate.
func (v *validator) feeRate(n *yaml.Node, what string) (FeeRate, bool) {
	s, ok := v.scalar(n, what, `"5 sat/vB"`)
	if !ok {
		return 0, false
	}
	f, err := ParseFeeRate(s)
	if err != nil {
		v.errorf(n, "%s: %v", what, err)
		return 0, false
	}
	if f < MinRelayFeeRate {
		v.errorf(n, "%s %s is below %s: nodes do not relay such a transaction", what, f.text(), MinRelayFeeRate.text())
		return 0, false
	}
	return f, true
}

// automationTo reads the `to:` of sweep and forward and checks that the global destination
// limits do not refuse it (else every proposal would be denied).
func (v *validator) automationTo(n *yaml.Node, m map[string]*yaml.Node, what string) Destination {
	tn, ok := m["to"]
	if !ok {
		v.errorf(n, "%s needs to: an address or descriptor:NAME (a named descriptor such as a cold vault)", what)
		return Destination{}
	}
	d, ok := v.destination(tn, "to")
	if !ok {
		return Destination{}
	}
	l := &v.p.Limits
	for _, x := range l.Deny {
		if x.Text == d.Text || d.Descriptor == nil && x.Matches(d.PkScript) {
			as := ""
			if x.Text != d.Text {
				as = " (as " + x.Text + ")"
			}
			v.errorf(tn, "to: %s is in limits.destinations.deny%s: every proposal would be denied", d.Text, as)
			return d
		}
	}
	if l.Allow.Set && !slices.ContainsFunc(l.Allow.V, func(x Destination) bool {
		return x.Text == d.Text || d.Descriptor == nil && x.Matches(d.PkScript)
	}) {
		v.errorf(tn, "to: %s is not in limits.destinations.allow: every proposal would be denied (add it there)", d.Text)
	}
	return d
}

func (v *validator) feeStrategy(item, n *yaml.Node) FeeStrategy {
	f := FeeStrategy{TargetBlocks: DefaultTargetBlocks, MaxFeeRate: DefaultAutomationMaxFeeRate, Fallback: DefaultFallbackFeeRate}
	capped := v.p.Limits.MaxFeeRate
	if capped.Set {
		f.MaxFeeRate = capped.V
	}
	where := item // where a default's problem is reported
	var m map[string]*yaml.Node
	if n != nil {
		where = n
		if m = v.mapping(n, "fee", keysFee); m == nil {
			return f
		}
	}
	if tn, ok := m["target_blocks"]; ok {
		f.TargetBlocks, _ = v.intIn(tn, "target_blocks", 1, MaxTargetBlocks)
	}
	maxNode, fbNode := where, where
	maxSet, fbSet := false, false
	if mn, ok := m["max_feerate"]; ok {
		maxNode, maxSet = mn, true
		fr, ok := v.feeRate(mn, "max_feerate")
		if !ok {
			return f
		}
		if capped.Set && fr > capped.V {
			v.errorf(mn, "fee max_feerate %s is above limits.max_feerate %s: the policy would deny such a transaction (lower it to at most %s)", fr.text(), capped.V.text(), capped.V.text())
			return f
		}
		f.MaxFeeRate = fr
	} else if f.MaxFeeRate < MinRelayFeeRate {
		v.errorf(where, "fee max_feerate defaults to limits.max_feerate %s, which is below %s: nodes do not relay such a transaction", f.MaxFeeRate.text(), MinRelayFeeRate.text())
		return f
	}
	if fn, ok := m["fallback"]; ok {
		fbNode, fbSet = fn, true
		fr, ok := v.feeRate(fn, "fallback")
		if !ok {
			return f
		}
		f.Fallback = fr
	}
	if f.Fallback > f.MaxFeeRate {
		node := fbNode
		if !fbSet && maxSet {
			node = maxNode
		}
		v.errorf(node, "fee fallback %s%s is above max_feerate %s%s", f.Fallback.text(), defaultNote(!fbSet), f.MaxFeeRate.text(), defaultNote(!maxSet))
	}
	return f
}

func defaultNote(isDefault bool) string {
	if isDefault {
		return " (the default)"
	}
	return ""
}

func (v *validator) cosigners(n *yaml.Node) []string {
	items := v.list(n, "cosigners", "[bunker://<64-hex pubkey>?relay=wss://…&secret=…]")
	if n.Kind == yaml.SequenceNode {
		switch {
		case len(items) == 0:
			v.errorf(n, "cosigners is empty: list at least one bunker:// URI (this co-signer alone cannot reach the threshold)")
		case len(items) > MaxCosigners:
			v.errorf(items[MaxCosigners], "cosigners lists %d URIs; at most %d", len(items), MaxCosigners)
			return nil
		}
	}
	var out []string
	seen := map[string]int{}
	for _, item := range items {
		// Never echo the URI: its secret= is a credential.
		s, ok := v.scalar(item, "a co-signer", "bunker://<64-hex pubkey>?relay=wss://…&secret=…")
		if !ok {
			continue
		}
		if _, err := url.Parse(strings.TrimSpace(s)); err != nil {
			v.errorf(item, "co-signer: not a URI; write bunker://<64-hex pubkey>?relay=wss://…&secret=… as printed by the other co-signer's `cosigner bunker-uri`")
			continue
		}
		bp, err := nip46.ParseBunkerURI(s)
		if err != nil {
			v.errorf(item, "co-signer: %s", strings.TrimPrefix(err.Error(), "signer: "))
			continue
		}
		if line, dup := seen[bp.RemoteSignerPubKey]; dup {
			v.errorf(item, "co-signer %s is listed twice (first on line %d)", short(bp.RemoteSignerPubKey), line)
			continue
		}
		seen[bp.RemoteSignerPubKey] = item.Line
		out = append(out, strings.TrimSpace(s))
	}
	return out
}
