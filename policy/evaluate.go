package policy

import (
	"fmt"
	"slices"

	"github.com/btcsuite/btcd/btcutil"
)

// Input is what Evaluate reads about one request: who asks, for what, and the facts of the PSBT
// analysis that the policy rules look at.
type Input struct {
	Client  string         // client pubkey, hex
	Method  string         // NIP-46 method, e.g. "sign_psbt"
	Outflow btcutil.Amount // inputs − change: what leaves the wallet, fee included
	Fee     btcutil.Amount
}

// Outcome of a decision.
type Outcome string

const (
	Allow Outcome = "allow"
	Deny  Outcome = "deny"
	// Unauthorized means the client is not allowed to call the method at all.
	Unauthorized Outcome = "unauthorized"
)

// Decision is Evaluate's answer: the outcome, the rule that decided it (a stable name for logs
// and error codes), and words for people.
type Decision struct {
	Outcome Outcome `json:"outcome"`
	Rule    string  `json:"rule"`
	Reason  string  `json:"reason"`
}

// Rule names used in decisions.
const (
	RuleClients  = "clients"
	RuleMaxPerTx = "max_per_tx"
	RuleWithin   = "within_limits"
)

// Evaluate decides a request. It is a pure function of its arguments: no I/O, no clock.
// Order: the client must be listed (and allowed the method), then the outflow must not exceed
// max_per_tx.
func Evaluate(p *Policy, in Input) Decision {
	if d := Authorize(p, in.Client, in.Method); d.Outcome != Allow {
		return d
	}
	if in.Outflow > p.MaxPerTx {
		return Decision{Outcome: Deny, Rule: RuleMaxPerTx, Reason: fmt.Sprintf("outflow %s (fee included) is over the per-transaction cap of %s", in.Outflow, p.MaxPerTx)}
	}
	return Decision{Outcome: Allow, Rule: RuleWithin, Reason: fmt.Sprintf("outflow %s is within the per-transaction cap of %s", in.Outflow, p.MaxPerTx)}
}

// Authorize decides only whether client may call method at all (the "clients" section), so that
// a request from a stranger is refused before its payload is even decoded. Pure.
func Authorize(p *Policy, client, method string) Decision {
	idx := slices.IndexFunc(p.Clients, func(c Client) bool { return c.PubKey == client })
	if idx < 0 {
		return Decision{Outcome: Unauthorized, Rule: RuleClients, Reason: fmt.Sprintf("client %s is not listed in the policy's clients", short(client))}
	}
	c := p.Clients[idx]
	if len(c.Methods) > 0 && !slices.Contains(c.Methods, method) {
		return Decision{Outcome: Unauthorized, Rule: RuleClients, Reason: fmt.Sprintf("client %q may not call %s", c.Name, method)}
	}
	return Decision{Outcome: Allow, Rule: RuleClients, Reason: fmt.Sprintf("client %q may call %s", c.Name, method)}
}

func short(pk string) string {
	if len(pk) > 16 {
		return pk[:16] + "…"
	}
	return pk
}
