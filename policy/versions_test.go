package policy

import (
	"testing"
	"time"
)

// TestLoosenedBy: a new version is compared with every policy in force; the delay is the longest
// loosen_delay among those it loosens (not among all of them), the loosenings are sorted without
// repeats, and a pure tightening waits for nothing.
func TestLoosenedBy(t *testing.T) {
	doc := func(delay, maxPerTx string) *Policy {
		return mustParse(t, "version: 1\nloosen_delay: "+delay+"\nclients:\n  - {name: c, pubkey: "+pkA+"}\nlimits:\n  max_per_tx: "+maxPerTx+"\n")
	}
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	// In force: cur (1 BTC, delay 2d) and, until tomorrow, its prior (0.5 BTC, delay 7d). New
	// versions keep loosen_delay at 7d, which shortens neither.
	prior := doc("7d", "0.5 BTC")
	cur := doc("2d", "1 BTC").WithPrior(prior, now.Add(24*time.Hour))

	if l, d := cur.LoosenedBy(doc("7d", "0.4 BTC"), now); len(l) != 0 || d != 0 {
		t.Fatalf("a tightening of both: %v, %s", l, d)
	}
	// 0.8 BTC loosens only the prior (0.5 BTC): the prior's 7d applies.
	if l, d := cur.LoosenedBy(doc("7d", "0.8 BTC"), now); len(l) != 1 || d != 7*24*time.Hour {
		t.Fatalf("loosening the prior only: %v, %s", l, d)
	}
	// 2 BTC loosens both: the longest delay, both findings, sorted.
	l, d := cur.LoosenedBy(doc("7d", "2 BTC"), now)
	if d != 7*24*time.Hour || len(l) != 2 || l[0] > l[1] {
		t.Fatalf("loosening both: %v, %s", l, d)
	}
	// Once the prior has lapsed, only cur counts: 0.8 BTC tightens it.
	if l, d := cur.LoosenedBy(doc("7d", "0.8 BTC"), now.Add(24*time.Hour)); len(l) != 0 || d != 0 {
		t.Fatalf("after the prior lapsed: %v, %s", l, d)
	}
	// Against cur alone, 2 BTC waits cur's own 2d; the same finding against two equal
	// policies in force is listed once.
	if _, d := doc("2d", "1 BTC").LoosenedBy(doc("2d", "2 BTC"), now); d != 2*24*time.Hour {
		t.Fatalf("single policy: %s", d)
	}
	twice := doc("2d", "1 BTC").WithPrior(doc("2d", "1 BTC"), now.Add(time.Hour))
	if l, _ := twice.LoosenedBy(doc("2d", "2 BTC"), now); len(l) != 1 {
		t.Fatalf("a repeated finding: %v", l)
	}
}
