package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcutil"
)

// Input is what Evaluate reads about one request: who asks, when, the facts of the PSBT analysis
// (filled by psbtflow from its Analysis), and the state the shell keeps (ledger totals,
// approvals) passed in as values.
type Input struct {
	Client string    // client pubkey, hex
	Method string    // NIP-46 method, e.g. "sign_psbt"
	Now    time.Time // the decision's time (time-of-day windows, cooling-off)

	UnsignedTxID string
	Inputs       []InputFact
	Outputs      []OutputFact
	InputTotal   btcutil.Amount
	ChangeTotal  btcutil.Amount
	Outflow      btcutil.Amount // inputs − change: what leaves the wallet, fee included
	Fee          btcutil.Amount
	VSize        int64   // virtual bytes of the finalized transaction (estimate)
	FeeRate      FeeRate // sat/vB
	LockTime     uint32
	RBF          bool // some input signals BIP-125 replaceability

	// PSBTVersion is 0 (BIP-174) or 2 (BIP-370); ScriptType is the wallet's output type
	// (p2wsh, p2sh-p2wsh, p2tr); LockTimeKind is "none", "height" or "time" (BIP-65 threshold).
	PSBTVersion  uint32
	ScriptType   string
	LockTimeKind string
	// Warnings are the analysis's warning codes (WarningCodes), in the analysis's order; the
	// same code may appear more than once (one per output or input concerned).
	Warnings []string

	// Spent is the spend exposure of each velocity window ending at Now, without this
	// transaction's own outflow: every signed transaction still outstanding (whatever its age)
	// plus those confirmed in the window, with this one counted as outstanding among them so that
	// what it conflicts with (an RBF original) is not counted twice (psbtflow/exposure.go). A
	// window missing from the map counts as zero.
	Spent map[time.Duration]btcutil.Amount

	// HeldSince is when this request was first held (zero for a new request); Approvals are the
	// pubkeys (hex) that approved it with the approve method since.
	HeldSince time.Time
	Approvals []string
}

// InputFact is one input of the PSBT as analysed.
type InputFact struct {
	OutPoint      string
	Value         btcutil.Amount
	Confirmations int32
	// SighashType is the sighash this co-signer would sign the input with (BIP-143 / BIP-341
	// values: 0 DEFAULT, 1 ALL, 2 NONE, 3 SINGLE, |0x80 ANYONECANPAY).
	SighashType uint32
	// ScriptType is the output type spent; SpendingPath says how it is spent ("2-of-3
	// multisig", "script path …"); RelativeLock is the BIP-68 lock nSequence sets, or "".
	ScriptType   string
	SpendingPath string
	RelativeLock string
}

// OutputFact is one output of the PSBT as analysed. Kind is "change", "spend" or "op_return".
type OutputFact struct {
	Index    int
	Address  string
	PkScript []byte
	Value    btcutil.Amount
	Kind     string
}

// Outcome of a decision.
type Outcome string

const (
	Allow Outcome = "allow"
	Deny  Outcome = "deny"
	// Hold means: neither sign nor refuse yet; wait for a cooling-off delay and/or approvals.
	Hold Outcome = "hold"
	// Unauthorized means the client is not allowed to call the method at all.
	Unauthorized Outcome = "unauthorized"
)

// Step is one line of a decision's explanation: a global limit ("pass"/"fail") or a rule
// ("matched", "not matched", "not reached") and why.
type Step struct {
	Rule   string `json:"rule"`
	Result string `json:"result"`
	Detail string `json:"detail"`
}

// HoldState says what a held request waits for.
type HoldState struct {
	Rule       string        `json:"rule"`
	CoolingOff time.Duration `json:"cooling_off_ns"`
	Until      time.Time     `json:"until"` // end of the cooling-off delay
	Required   int           `json:"approvals_required"`
	Have       int           `json:"approvals_have"`
	Approvers  []Approver    `json:"approvers"`
}

// Decision is Evaluate's answer: the outcome, the rule that decided it (a stable name for logs
// and error codes), words for people, the hash of the policy file, what a hold waits for, and
// the rule-by-rule explanation.
type Decision struct {
	Outcome     Outcome    `json:"outcome"`
	Rule        string     `json:"rule"`
	Reason      string     `json:"reason"`
	PolicyHash  string     `json:"policy_hash"`
	Hold        *HoldState `json:"hold,omitempty"`
	Explanation []Step     `json:"explanation"`
}

// Rule names used in decisions besides the policy's own rule names and velocity_<window>.
const (
	RuleClients     = "clients"
	RuleRateLimit   = "rate_limit"
	RuleMaxPerTx    = "max_per_tx"
	RuleMaxFee      = "max_fee"
	RuleMaxFeeRate  = "max_feerate"
	RuleMaxFeeShare = "max_fee_share"
	RuleMinConfs    = "min_confirmations"
	RuleHours       = "hours"
	RuleDenylist    = "destinations_deny"
	RuleAllowlist   = "destinations_allow"
	RuleWithin      = "within_limits"
	RuleNoMatch     = "no_rule_matched"
	RuleSighash     = "allow_sighash"
	RuleWarnings    = "deny_warnings"
)

// check is one compiled condition: a global limit or a rule's match condition. test reports
// whether in passes; explain reports it again with the reason in words (slower: called only for
// the lines an explanation shows).
type check struct {
	name    string
	test    func(in *Input) bool
	explain func(in *Input) (bool, string)
}

// Evaluate decides a request. It is a pure function of its arguments: no I/O, no clock.
//
// Order: the client must be listed and allowed the method (or be "automation:NAME", the client
// name psbtflow gives a PSBT built by automation NAME of this policy: allowed sign_psbt); then every global limit is checked
// (all are reported, the first failure decides: deny); then the rules are tried in order and the
// first whose every match condition holds decides (allow, deny or hold); with no rules, a request
// within the limits is allowed, and with rules, a request no rule matches is denied. A hold is
// released (allow) once in.HeldSince + cooling_off ≤ in.Now and enough named approvers are in
// in.Approvals.
//
// While a loosening change waits (see WithPrior), the request is evaluated under every policy in
// force and the strictest outcome wins (unauthorized > deny > hold > allow).
func Evaluate(p *Policy, in Input) Decision {
	stages := p.stages(in.Now)
	d := evaluateOne(stages[0], &in)
	for i, s := range stages[1:] {
		e := evaluateOne(s, &in)
		expl := append(slices.Clone(d.Explanation), Step{Rule: "pending_change", Result: "info",
			Detail: fmt.Sprintf("policy %s is loosened by %s, which applies alone from %s; until then the stricter decision wins", short(s.Hash), short(stages[i].Hash), stages[i].effectiveAt.UTC().Format(time.RFC3339))})
		expl = append(expl, e.Explanation...)
		if severity(e.Outcome) > severity(d.Outcome) {
			d = e
		} else if d.Outcome == Hold && e.Outcome == Hold && d.Hold != nil && e.Hold != nil && e.Hold.Until.After(d.Hold.Until) {
			// Both hold: released only when both are, so the cooling-off ends at the later end.
			h := *d.Hold
			h.Until = e.Hold.Until
			d.Hold = &h
		}
		d.Explanation = expl
	}
	d.PolicyHash = p.Hash
	return d
}

func severity(o Outcome) int {
	switch o {
	case Unauthorized:
		return 3
	case Deny:
		return 2
	case Hold:
		return 1
	}
	return 0
}

func evaluateOne(p *Policy, in *Input) Decision {
	if d := authorizeOne(p, in.Client, in.Method); d.Outcome != Allow {
		d.Explanation = []Step{{Rule: RuleClients, Result: "fail", Detail: d.Reason}}
		return d
	}
	var steps []Step
	var failed *Step
	for _, c := range p.limitChecks {
		ok, detail := c.explain(in)
		st := Step{Rule: c.name, Result: "pass", Detail: detail}
		if !ok {
			st.Result = "fail"
		}
		steps = append(steps, st)
		if !ok && failed == nil {
			failed = &steps[len(steps)-1]
		}
	}
	if failed != nil {
		f := *failed
		for i := range p.Rules {
			steps = append(steps, Step{Rule: p.Rules[i].Name, Result: "not reached", Detail: "a global limit already refused the request"})
		}
		return Decision{Outcome: Deny, Rule: f.Rule, Reason: f.Detail, Explanation: steps}
	}
	if len(p.Rules) == 0 {
		return Decision{Outcome: Allow, Rule: RuleWithin, Reason: fmt.Sprintf("outflow %s is within every limit", in.Outflow), Explanation: steps}
	}
	var d *Decision
	for i := range p.Rules {
		r := &p.Rules[i]
		if d != nil {
			steps = append(steps, Step{Rule: r.Name, Result: "not reached", Detail: fmt.Sprintf("rule %q matched first", d.Rule)})
			continue
		}
		ok, why := r.matches(in)
		if !ok {
			steps = append(steps, Step{Rule: r.Name, Result: "not matched", Detail: why})
			continue
		}
		dec := r.decide(in, why)
		steps = append(steps, Step{Rule: r.Name, Result: "matched", Detail: dec.Reason})
		d = &dec
	}
	if d == nil {
		return Decision{Outcome: Deny, Rule: RuleNoMatch, Reason: "no rule matched this request (a request no rule allows is refused)", Explanation: steps}
	}
	d.Explanation = steps
	return *d
}

func (r *Rule) matches(in *Input) (bool, string) {
	for _, c := range r.conds {
		if !c.test(in) {
			_, detail := c.explain(in)
			return false, c.name + ": " + detail
		}
	}
	var why []string
	for _, c := range r.conds {
		_, detail := c.explain(in)
		why = append(why, detail)
	}
	if len(why) == 0 {
		return true, "matches every request"
	}
	return true, strings.Join(why, "; ")
}

func (r *Rule) decide(in *Input, why string) Decision {
	reason := why
	if r.Reason != "" {
		reason = r.Reason + " (" + why + ")"
	}
	switch r.Action {
	case Deny:
		return Decision{Outcome: Deny, Rule: r.Name, Reason: reason}
	case Allow:
		return Decision{Outcome: Allow, Rule: r.Name, Reason: reason}
	}
	h := r.Hold
	since := in.HeldSince
	if since.IsZero() {
		since = in.Now
	}
	st := &HoldState{Rule: r.Name, CoolingOff: h.CoolingOff, Until: since.Add(h.CoolingOff), Required: h.Approvals, Approvers: h.Approvers}
	for _, a := range h.Approvers {
		if slices.Contains(in.Approvals, a.PubKey) {
			st.Have++
		}
	}
	var waits []string
	if in.HeldSince.IsZero() && h.CoolingOff > 0 || in.Now.Before(st.Until) {
		waits = append(waits, fmt.Sprintf("cooling-off of %s until %s", FormatDuration(h.CoolingOff), st.Until.UTC().Format(time.RFC3339)))
	}
	if st.Have < st.Required {
		names := make([]string, len(h.Approvers))
		for i, a := range h.Approvers {
			names[i] = a.Name
		}
		waits = append(waits, fmt.Sprintf("%d of %d approvals (%s), %d so far", st.Required, len(h.Approvers), strings.Join(names, ", "), st.Have))
	}
	if len(waits) == 0 {
		return Decision{Outcome: Allow, Rule: r.Name, Reason: fmt.Sprintf("%s; hold released: cooling-off over and %d of %d approvals", reason, st.Have, st.Required), Hold: st}
	}
	return Decision{Outcome: Hold, Rule: r.Name, Reason: fmt.Sprintf("%s; held: waiting for %s", reason, strings.Join(waits, " and ")), Hold: st}
}

// Authorize decides only whether client may call method at all (the "clients" section), so that
// a request from a stranger is refused before its payload is even decoded. Pure. While a
// loosening change waits, every policy in force must authorize the client.
func Authorize(p *Policy, client, method string, now time.Time) Decision {
	var d Decision
	for _, s := range p.stages(now) {
		if d = authorizeOne(s, client, method); d.Outcome != Allow {
			break
		}
	}
	d.PolicyHash = p.Hash
	return d
}

func authorizeOne(p *Policy, client, method string) Decision {
	if name, ok := strings.CutPrefix(client, AutomationClientPrefix); ok {
		if p.Automation(name) == nil {
			return Decision{Outcome: Unauthorized, Rule: RuleClients, Reason: fmt.Sprintf("no automation named %q in this policy", name)}
		}
		if method != "sign_psbt" {
			return Decision{Outcome: Unauthorized, Rule: RuleClients, Reason: fmt.Sprintf("automation %q may only call sign_psbt", name)}
		}
		return Decision{Outcome: Allow, Rule: RuleClients, Reason: fmt.Sprintf("automation %q of this policy may call sign_psbt", name)}
	}
	idx := slices.IndexFunc(p.Clients, func(c Client) bool { return c.PubKey == client })
	if idx < 0 {
		return Decision{Outcome: Unauthorized, Rule: RuleClients, Reason: fmt.Sprintf("client %s is not listed in the policy's clients", short(client))}
	}
	c := p.Clients[idx]
	if len(c.Methods) > 0 && !slices.Contains(c.Methods, method) || len(c.Methods) == 0 && !slices.Contains(knownMethods, method) {
		return Decision{Outcome: Unauthorized, Rule: RuleClients, Reason: fmt.Sprintf("client %q may not call %s", c.Name, method)}
	}
	return Decision{Outcome: Allow, Rule: RuleClients, Reason: fmt.Sprintf("client %q may call %s", c.Name, method)}
}

// CheckRate decides whether a client that made recent[i] requests in the last rates[i].Per
// (rates from RateLimits) may make one more. Pure.
func CheckRate(rates []Rate, recent []int) Decision {
	for i, r := range rates {
		if i < len(recent) && recent[i] >= r.Count {
			return Decision{Outcome: Deny, Rule: RuleRateLimit, Reason: fmt.Sprintf("%d requests in the last %s; the limit is %s", recent[i], FormatDuration(r.Per), r)}
		}
	}
	return Decision{Outcome: Allow, Rule: RuleRateLimit, Reason: "within the rate limit"}
}

// ApproverName returns the name (in p) of the approver with pubkey (hex), and whether pubkey is
// an approver of every policy in force at now: one added by a loosened policy that does not yet
// apply alone (see WithPrior) may not approve, deny or cancel until it does.
func ApproverName(p *Policy, pubkey string, now time.Time) (string, bool) {
	name := ""
	for i, s := range p.stages(now) {
		j := slices.IndexFunc(s.Approvers, func(a Approver) bool { return a.PubKey == pubkey })
		if j < 0 {
			return "", false
		}
		if i == 0 {
			name = s.Approvers[j].Name
		}
	}
	return name, true
}

func short(pk string) string {
	if len(pk) > 16 {
		return pk[:16] + "…"
	}
	return pk
}
