package policy

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
)

const pkA = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
const npubA = "npub10xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqpkge6d"

func TestParseAmount(t *testing.T) {
	cases := []struct {
		in   string
		want btcutil.Amount
		err  string
	}{
		{"0.5 BTC", 50_000_000, ""},
		{"1 btc", 100_000_000, ""},
		{"50000 sat", 50_000, ""},
		{"1_000 sats", 1_000, ""},
		{"0.00000001 BTC", 1, ""},
		{"0.000000001 BTC", 0, "whole number of satoshis"},
		{"100", 0, "needs a number and a unit"},
		{"1 ETH", 0, "unit must be"},
		{"-1 sat", 0, "negative"},
		{"1e3 sat", 0, "not a decimal"},
		{"21000001 BTC", 0, "more than 21 million"},
	}
	for _, c := range cases {
		got, err := ParseAmount(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseAmount(%q) error = %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseAmount(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestParseErrorsCarryLineColumn(t *testing.T) {
	cases := []struct {
		name, doc, want string
	}{
		{"unknown key", "version: 1\nclients: []\nlimits:\n  max_per_tx: 1 BTC\n  daily: 2 BTC\n", "p.yaml:5:3: unknown key \"daily\""},
		{"bad amount", "version: 1\nclients: []\nlimits:\n  max_per_tx: lots\n", "p.yaml:4:15: max_per_tx: amount \"lots\""},
		{"bad pubkey", "version: 1\nclients:\n  - name: x\n    pubkey: abc\nlimits: {max_per_tx: 1 BTC}\n", "p.yaml:4:13: pubkey:"},
		{"missing limits", "version: 1\nclients: []\n", "p.yaml:1:1: missing key \"limits\""},
		{"wrong version", "version: 2\nclients: []\nlimits: {max_per_tx: 1 BTC}\n", "p.yaml:1:10: version must be 1"},
		{"syntax", "version: 1\nclients: [\n", "p.yaml:"},
		{"unclosed flow mapping", "version: 1\nclients: []\nlimits: {max_per_tx: 1 BTC\nrules: []\n", "p.yaml:3:1: YAML syntax: did not find expected ',' or '}'"},
		{"empty", "", "p.yaml:1:1: empty policy"},
		{"unknown method", "version: 1\nclients:\n  - pubkey: " + pkA + "\n    methods: [sign_event]\nlimits: {max_per_tx: 1 BTC}\n", "p.yaml:4:15: unknown method \"sign_event\""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(c.doc))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse error = %v, want policy.Errors", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse error = %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestEvaluate(t *testing.T) {
	p, err := Parse("p.yaml", []byte("version: 1\nclients:\n  - name: coordinator\n    pubkey: "+npubA+"\nlimits:\n  max_per_tx: 0.5 BTC\n"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Clients[0].PubKey != pkA {
		t.Fatalf("npub decoded to %s", p.Clients[0].PubKey)
	}
	cases := []struct {
		name string
		in   Input
		want Outcome
		rule string
	}{
		{"allowed", Input{Client: pkA, Method: "sign_psbt", Outflow: 50_000_000}, Allow, RuleWithin},
		{"one sat over", Input{Client: pkA, Method: "sign_psbt", Outflow: 50_000_001}, Deny, RuleMaxPerTx},
		{"stranger", Input{Client: strings.Repeat("ab", 32), Method: "sign_psbt", Outflow: 1}, Unauthorized, RuleClients},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Evaluate(p, c.in)
			if d.Outcome != c.want || d.Rule != c.rule || d.Reason == "" {
				t.Fatalf("Evaluate = %+v, want %s by %s", d, c.want, c.rule)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("version: 1\nclients:\n  - pubkey: " + pkA + "\nlimits: {max_per_tx: 1 BTC}\n"))
	f.Add([]byte("version: 1\nclients: [{pubkey: " + npubA + ", methods: [sign_psbt]}]\nlimits: {max_per_tx: 10 sat}\n"))
	f.Add([]byte("version: 1\nclients: []\nlimits: {max_per_tx: 1 BTC, max_feerate: 30 sat/vB}\nautomations:\n" +
		"  - name: fwd\n    trigger: {funding_confirmed: 2}\n    action: {forward: {to: bcrt1qqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcruj60yu}}\n" +
		"    fee: {target_blocks: 2, fallback: 3 sat/vB}\n    cosigners:\n      - bunker://" + pkA + "?relay=wss://r.example.com&secret=s\n    signatures: 2\n"))
	files, _ := filepath.Glob("testdata/*.txt")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		pol, _, _ := strings.Cut(string(b), "\n--- ")
		f.Add([]byte(pol))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 || es[0].Line < 1 {
				t.Fatalf("Parse error without a position: %v", err)
			}
			return
		}
		if p == nil || p.Version != 1 || p.Hash == "" {
			t.Fatalf("Parse accepted a policy without version 1 or hash: %+v", p)
		}
		// Every automation that loaded keeps its fee inside the caps, whatever the server says.
		for i := range p.Automations {
			a := &p.Automations[i]
			if a.Name == "" || len(a.Cosigners) == 0 || a.Fee.Fallback > a.Fee.MaxFeeRate || a.Fee.MaxFeeRate < MinRelayFeeRate {
				t.Fatalf("automation loaded without name, co-signers or a sane fee strategy: %+v", a)
			}
			for _, est := range []FeeRate{0, 0.5, 7, 1e6} {
				r := a.FeeRate(est, true, p.Limits)
				if r < MinRelayFeeRate || r > a.Fee.MaxFeeRate || p.Limits.MaxFeeRate.Set && r > p.Limits.MaxFeeRate.V {
					t.Fatalf("FeeRate(%v) = %v outside the caps of %+v", est, r, a.Fee)
				}
			}
			if a.Action.Kind == ActionForward && a.Trigger.Kind != TriggerFundingSeen && a.Trigger.Kind != TriggerFundingConfirmed {
				t.Fatalf("forward loaded with trigger %s", a.Trigger.Kind)
			}
			if strings.Contains(a.String(), "secret") {
				t.Fatalf("String shows a secret: %s", a.String())
			}
		}
		// Whatever loaded must evaluate without panicking, and never allow over max_per_tx.
		for _, c := range p.Clients {
			d := Evaluate(p, Input{Client: c.PubKey, Method: "sign_psbt", Now: time.Unix(1_800_000_000, 0), Outflow: p.MaxPerTx() + 1})
			if d.Outcome == Allow || d.Outcome == Hold {
				t.Fatalf("outflow over max_per_tx decided %s", d.Outcome)
			}
		}
	})
}

func TestLoosenings(t *testing.T) {
	base := "version: 1\nloosen_delay: 7d\nclients:\n  - {name: c, pubkey: " + pkA + ", methods: [sign_psbt], rate_limit: 10/1h}\n" +
		"approvers:\n  - {name: alice, pubkey: " + pkA + "}\n"
	lim := "limits:\n  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 2 BTC}]\n  max_fee: 10000 sat\n  min_confirmations: 2\n"
	rules := "rules:\n  - {name: big, match: {min_outflow: 0.5 BTC}, action: hold, hold: {approvals: 1, approvers: [alice]}}\n  - {name: rest, action: allow}\n"
	prev, err := Parse("a.yaml", []byte(base+lim+rules))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, doc string
		loosens   string // "" means a pure tightening (or no change)
	}{
		{"same", base + lim + rules, ""},
		{"lower cap, shorter window at lower max is not enough", strings.Replace(base+lim+rules, "max_per_tx: 1 BTC", "max_per_tx: 0.5 BTC", 1), ""},
		{"longer window, same max", strings.Replace(base+lim+rules, "window: 1d", "window: 7d", 1), ""},
		{"higher cap", strings.Replace(base+lim+rules, "max_per_tx: 1 BTC", "max_per_tx: 2 BTC", 1), "max_per_tx raised"},
		{"window removed", strings.Replace(base+lim+rules, "  velocity: [{window: 1d, max: 2 BTC}]\n", "", 1), "velocity window 1d"},
		{"fewer confirmations", strings.Replace(base+lim+rules, "min_confirmations: 2", "min_confirmations: 1", 1), "min_confirmations"},
		{"fee cap removed", strings.Replace(base+lim+rules, "  max_fee: 10000 sat\n", "", 1), "max_fee raised or removed"},
		{"more methods", strings.Replace(base+lim+rules, "methods: [sign_psbt]", "methods: [sign_psbt, get_wallet]", 1), "more methods"},
		{"rate limit raised", strings.Replace(base+lim+rules, "10/1h", "11/1h", 1), "rate_limit"},
		{"rule edited", strings.Replace(base+lim+rules, "approvals: 1", "approvals: 1, cooling_off: 1h", 1), "rule 1"},
		{"shorter loosen delay", strings.Replace(base+lim+rules, "7d", "1d", 1), "loosen_delay"},
		{"ALL listed is no loosening", base + lim + "  allow_sighash: [ALL, DEFAULT]\n" + rules, ""},
		{"sighash opt-in", base + lim + "  allow_sighash: [ALL, NONE]\n" + rules, "sighash NONE added"},
		{"deny_warnings added", base + lim + "  deny_warnings: [locktime]\n" + rules, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			next, err := Parse("b.yaml", []byte(c.doc))
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(Loosenings(prev, next), "; ")
			if c.loosens == "" && got != "" || c.loosens != "" && !strings.Contains(got, c.loosens) {
				t.Fatalf("Loosenings = %q, want %q", got, c.loosens)
			}
		})
	}
}

// TestSchemaCoversEveryKey: the JSON Schema lists exactly the keys the loader accepts.
func TestSchemaCoversEveryKey(t *testing.T) {
	var s map[string]any
	if err := json.Unmarshal(Schema(), &s); err != nil {
		t.Fatal(err)
	}
	props := func(o map[string]any) []string {
		var ks []string
		for k := range o["properties"].(map[string]any) {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	sub := func(o map[string]any, path ...string) map[string]any {
		for _, p := range path {
			switch p {
			case "[]":
				o = o["items"].(map[string]any)
			case "*":
				o = o["additionalProperties"].(map[string]any)
			default:
				o = o["properties"].(map[string]any)[p].(map[string]any)
			}
		}
		return o
	}
	cases := []struct {
		path []string
		keys []string
	}{
		{nil, keysTop},
		{[]string{"clients", "[]"}, keysClient},
		{[]string{"approvers", "[]"}, keysApprover},
		{[]string{"descriptors", "*"}, keysDescriptor},
		{[]string{"limits"}, keysLimits},
		{[]string{"limits", "velocity", "[]"}, keysWindow},
		{[]string{"limits", "destinations"}, keysDest},
		{[]string{"limits", "hours"}, keysHours},
		{[]string{"rules", "[]"}, keysRule},
		{[]string{"rules", "[]", "match"}, keysMatch},
		{[]string{"rules", "[]", "hold"}, keysHold},
		{[]string{"automations", "[]"}, keysAutomation},
		{[]string{"automations", "[]", "trigger"}, keysTrigger},
		{[]string{"automations", "[]", "action"}, keysAction},
		{[]string{"automations", "[]", "action", "sweep"}, keysSweep},
		{[]string{"automations", "[]", "action", "forward"}, keysForward},
		{[]string{"automations", "[]", "action", "consolidate"}, keysConsolidate},
		{[]string{"automations", "[]", "fee"}, keysFee},
	}
	for _, c := range cases {
		o := sub(s, c.path...)
		want := slices.Sorted(slices.Values(c.keys))
		if got := props(o); !slices.Equal(got, want) {
			t.Errorf("schema at %v has %v, loader accepts %v", c.path, got, want)
		}
		if o["additionalProperties"] != false {
			t.Errorf("schema at %v allows unknown keys", c.path)
		}
	}
}

// TestSchemaFileUpToDate: policy/schema.json (the file editors point at) is Schema()'s output;
// regenerate it with `go run ./cmd/cosigner policy schema > policy/schema.json`.
func TestSchemaFileUpToDate(t *testing.T) {
	b, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != string(Schema()) {
		t.Fatal("policy/schema.json is out of date: go run ./cmd/cosigner policy schema > policy/schema.json")
	}
}

// TestAllowSighashStages: while a loosening change waits, only the sighash types every policy in
// force allows are passed to the analysis; ALL and DEFAULT are never listed (always signed).
func TestAllowSighashStages(t *testing.T) {
	doc := func(sh string) *Policy {
		p, err := Parse("p.yaml", []byte("version: 1\nclients:\n  - {name: c, pubkey: "+pkA+"}\nlimits:\n  max_per_tx: 1 BTC\n"+sh))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	old := doc("  allow_sighash: [ALL, SINGLE|ANYONECANPAY]\n")
	next := doc("  allow_sighash: [ALL, NONE, SINGLE|ANYONECANPAY]\n").WithPrior(old, now.Add(time.Hour))
	name := func(hs []txscript.SigHashType) string {
		var out []string
		for _, h := range hs {
			out = append(out, SighashName(uint32(h)))
		}
		return strings.Join(out, ",")
	}
	for _, c := range []struct {
		p    *Policy
		at   time.Time
		want string
	}{
		{doc(""), now, ""},
		{doc("  allow_sighash: [ALL]\n"), now, ""},
		{old, now, "SINGLE|ANYONECANPAY"},
		{next, now, "SINGLE|ANYONECANPAY"},
		{next, now.Add(time.Hour), "NONE,SINGLE|ANYONECANPAY"},
		{doc("").WithPrior(old, now.Add(time.Hour)), now, ""},
	} {
		if got := name(c.p.AllowSighash(c.at)); got != c.want {
			t.Errorf("AllowSighash = %q, want %q", got, c.want)
		}
	}
}
