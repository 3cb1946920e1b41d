package policy

import (
	"strings"
	"testing"
	"time"
)

// TestLooseningNarrowedDenyDescriptor (issue 11, finding 8): a named descriptor with a smaller
// lookahead matches fewer scripts, so a deny (or a rule) that uses it refuses less: a
// loosening. Used only in the destination allowlist, it allows less: a tightening.
func TestLooseningNarrowedDenyDescriptor(t *testing.T) {
	desc := func(lookahead string, limits string) string {
		return "version: 1\nclients:\n  - {name: c, pubkey: " + pkA + "}\n" +
			"descriptors:\n  cold_vault: {descriptor: \"" + vaultDesc + "\", lookahead: " + lookahead + "}\n" +
			"limits:\n  max_per_tx: 1 BTC\n" + limits
	}
	deny := "  destinations: {deny: [\"descriptor:cold_vault\"]}\n"
	allow := "  destinations: {allow: [\"descriptor:cold_vault\"]}\n"
	rule := "rules:\n  - {name: vault, match: {destinations: [\"descriptor:cold_vault\"]}, action: hold, hold: {cooling_off: 1h}}\n  - {name: rest, action: allow}\n"
	cases := []struct {
		name, prev, next string
		loosens          string
	}{
		{"deny narrowed", desc("100", deny), desc("10", deny), `named descriptor "cold_vault" narrowed`},
		{"rule narrowed", desc("100", rule), desc("10", rule), `named descriptor "cold_vault" narrowed`},
		{"allowlist narrowed", desc("100", allow), desc("10", allow), ""},
		{"allowlist widened", desc("10", allow), desc("100", allow), "widened"},
		{"deny widened", desc("10", deny), desc("100", deny), "widened"}, // conservative
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := strings.Join(Loosenings(mustParse(t, c.prev), mustParse(t, c.next)), "; ")
			if c.loosens == "" && got != "" || c.loosens != "" && !strings.Contains(got, c.loosens) {
				t.Fatalf("Loosenings = %q, want %q", got, c.loosens)
			}
		})
	}
}

// TestPendingApproverNotYetAnApprover (issue 11, finding 8): an approver added by a loosened
// policy that does not apply alone yet is not an approver (ApproverName false) until it does;
// one named in every policy in force is.
func TestPendingApproverNotYetAnApprover(t *testing.T) {
	const pkD = "2f8bde4d1a07209355b4a7250a5c5128e88b84bddc619ab7cba8d569b240efe4"
	base := "version: 1\nloosen_delay: 7d\nclients:\n  - {name: c, pubkey: " + pkB + "}\napprovers:\n  - {name: alice, pubkey: " + pkA + "}\n"
	old := mustParse(t, base+"limits:\n  max_per_tx: 1 BTC\n")
	next := mustParse(t, base+"  - {name: dave, pubkey: "+pkD+"}\nlimits:\n  max_per_tx: 1 BTC\n")
	if !strings.Contains(strings.Join(Loosenings(old, next), ";"), `approver "dave" added`) {
		t.Fatal("adding an approver must be a loosening")
	}
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	staged := next.WithPrior(old, now.Add(7*24*time.Hour))
	if name, ok := ApproverName(staged, pkD, now); ok {
		t.Fatalf("dave is an approver (%q) before the policy adding him applies alone", name)
	}
	if name, ok := ApproverName(staged, pkA, now); !ok || name != "alice" {
		t.Fatalf("alice = %q, %v", name, ok)
	}
	if name, ok := ApproverName(staged, pkD, now.Add(7*24*time.Hour)); !ok || name != "dave" {
		t.Fatalf("dave once the policy applies alone = %q, %v", name, ok)
	}
}

// TestStagedHoldUntilIsTheLatest: while a loosened policy waits, a request both policies hold
// is released only when both cooling-offs are over, so the decision's Until is the later end
// (the shell schedules the next decision at Until).
func TestStagedHoldUntilIsTheLatest(t *testing.T) {
	doc := func(cool string) string {
		return "version: 1\nloosen_delay: 7d\nclients:\n  - {name: c, pubkey: " + pkA + "}\nlimits:\n  max_per_tx: 1 BTC\n" +
			"rules:\n  - {name: wait, action: hold, hold: {cooling_off: " + cool + "}}\n"
	}
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	staged := mustParse(t, doc("1h")).WithPrior(mustParse(t, doc("24h")), now.Add(7*24*time.Hour))
	d := Evaluate(staged, Input{Client: pkA, Method: "sign_psbt", Now: now, HeldSince: now})
	if d.Outcome != Hold || d.Hold == nil || !d.Hold.Until.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("decision = %s, hold %+v; want held until %s", d.Outcome, d.Hold, now.Add(24*time.Hour))
	}
}
