package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
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
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err == nil && (p == nil || p.Version != 1) {
			t.Fatalf("Parse accepted a policy without version 1: %+v", p)
		}
	})
}
