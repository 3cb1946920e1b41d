package bench

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/policy"
)

const benchClient = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"

// policyWithRules builds a policy with the global limits of examples/treasury.yaml and n rules,
// none of which matches the benchmark's request except a final catch-all: the request is
// checked against every rule (the worst case of first-match).
func policyWithRules(b *testing.B, n int) *policy.Policy {
	var sb strings.Builder
	sb.WriteString("version: 1\ntimezone: Europe/Berlin\nclients:\n  - {name: coordinator, pubkey: " + benchClient + "}\n")
	sb.WriteString("limits:\n  max_per_tx: 2 BTC\n  velocity: [{window: 24h, max: 3 BTC}, {window: 30d, max: 10 BTC}]\n")
	sb.WriteString("  max_fee: 0.01 BTC\n  max_feerate: 200 sat/vB\n  max_fee_share: 5%\n  min_confirmations: 1\n")
	sb.WriteString("  destinations: {deny: [bcrt1qqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcruj60yu]}\n")
	if n > 0 {
		sb.WriteString("rules:\n")
		for i := range n - 1 {
			// Each rule has several conditions; the last one (hours) fails for the request.
			fmt.Fprintf(&sb, "  - name: r%d\n    match: {clients: [coordinator], max_outflow: %d sat, max_feerate: 100 sat/vB, min_confirmations: 1, hours: {from: \"03:00\", to: \"04:00\"}}\n    action: allow\n", i, 10_000_000+i)
		}
		sb.WriteString("  - {name: last, action: allow}\n")
	}
	p, err := policy.Parse("bench.yaml", []byte(sb.String()))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

func benchInput() policy.Input {
	return policy.Input{
		Client: benchClient, Method: "sign_psbt", Now: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC),
		Outflow: 5_000_000, Fee: 2_000, FeeRate: 8, VSize: 250, InputTotal: 100_000_000, ChangeTotal: 95_000_000,
		Inputs:  []policy.InputFact{{OutPoint: "00:0", Value: 100_000_000, Confirmations: 6}},
		Outputs: []policy.OutputFact{{Index: 0, Value: 4_998_000, Kind: "spend", PkScript: []byte{0, 20, 1, 2, 3}}, {Index: 1, Value: 95_000_000, Kind: "change"}},
		Spent:   map[time.Duration]btcutil.Amount{24 * time.Hour: 50_000_000, 30 * 24 * time.Hour: 200_000_000},
	}
}

// BenchmarkPolicyEvaluate measures policy.Evaluate with 100 rules (all tried, the last matches)
// and, in the same run, the floor: the same policy's global limits with no rules. Reported:
// p50_us and p99_us per evaluation, and evals/s, for both.
func BenchmarkPolicyEvaluate(b *testing.B) {
	if testing.Short() {
		b.Skip("benchmarks skip under -short")
	}
	const samples = 20_000
	in := benchInput()
	measure := func(p *policy.Policy, wantRule string) (p50, p99 float64, perSec float64) {
		if d := policy.Evaluate(p, in); d.Outcome != policy.Allow || d.Rule != wantRule {
			b.Fatalf("benchmark request decided %s by %s (%s), want allow by %s", d.Outcome, d.Rule, d.Reason, wantRule)
		}
		ds := make([]time.Duration, samples)
		start := time.Now()
		for i := range ds {
			t0 := time.Now()
			policy.Evaluate(p, in)
			ds[i] = time.Since(t0)
		}
		total := time.Since(start)
		slices.Sort(ds)
		us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
		return us(ds[samples/2]), us(ds[samples*99/100]), samples / total.Seconds()
	}
	for range b.N {
		p50, p99, rate := measure(policyWithRules(b, 100), "last")
		b.ReportMetric(p50, "p50_us")
		b.ReportMetric(p99, "p99_us")
		b.ReportMetric(rate, "evals/s")
		f50, f99, frate := measure(policyWithRules(b, 0), policy.RuleWithin)
		b.ReportMetric(f50, "limits_only_p50_us")
		b.ReportMetric(f99, "limits_only_p99_us")
		b.ReportMetric(frate, "limits_only_evals/s")
	}
}
