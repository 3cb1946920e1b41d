package policy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

// compiledSchema compiles Schema() with an independent JSON Schema (draft 2020-12) validator.
func compiledSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema()))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(SchemaID)
	if err != nil {
		t.Fatalf("the policy schema does not compile: %v", err)
	}
	return s
}

// yamlInstance turns a policy YAML document into the JSON value an editor's schema check sees.
func yamlInstance(t *testing.T, doc string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatalf("yaml: %v", err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("json: %v", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// TestSchemaAcceptsValidPolicies: every example in examples/ and every golden policy that the
// loader accepts is valid under the JSON Schema (so editors do not flag good policies).
func TestSchemaAcceptsValidPolicies(t *testing.T) {
	s := compiledSchema(t)
	docs := map[string]string{}
	examples, _ := filepath.Glob("../examples/*.yaml")
	golden, _ := filepath.Glob("testdata/*.txt")
	if len(examples) == 0 || len(golden) == 0 {
		t.Fatal("no examples or golden files")
	}
	for _, f := range append(examples, golden...) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc, _, _ := strings.Cut(string(b), "\n--- ")
		if _, err := Parse(f, []byte(doc)); err != nil {
			if strings.HasSuffix(f, ".yaml") {
				t.Errorf("%s does not load: %v", f, err)
			}
			continue // a golden file of loader errors
		}
		docs[f] = doc
	}
	for f, doc := range docs {
		if err := s.Validate(yamlInstance(t, doc)); err != nil {
			t.Errorf("%s loads but the schema refuses it: %v", f, err)
		}
	}
	if len(docs) < len(examples)+10 {
		t.Fatalf("only %d valid policies checked", len(docs))
	}
}

// TestSchemaRefusesInvalidPolicies: documents the loader refuses for a key or value error are
// refused by the schema too.
func TestSchemaRefusesInvalidPolicies(t *testing.T) {
	s := compiledSchema(t)
	const head = "version: 1\nclients:\n  - {name: c, pubkey: " + pkA + "}\n"
	const lim = "limits: {max_per_tx: 1 BTC}\n"
	auto := func(trigger, action, extra string) string {
		return "automations:\n  - name: a\n    trigger: " + trigger + "\n    action: " + action + "\n    cosigners:\n      - " + bunkerB + "\n" + extra
	}
	for name, doc := range map[string]string{
		"unknown top-level key": head + "limits: {max_per_tx: 1 BTC}\nrulez: []\n",
		"typo in limits":        head + "limits: {max_per_tx: 1 BTC, max_fees: 1000 sat}\n",
		"amount without unit":   head + "limits: {max_per_tx: 0.5}\n",
		"missing limits":        head,
		"wrong version":         "version: 2\n" + head[len("version: 1\n"):] + "limits: {max_per_tx: 1 BTC}\n",
		"bad pubkey":            "version: 1\nclients: [{name: c, pubkey: abc}]\nlimits: {max_per_tx: 1 BTC}\n",
		"unknown action":        head + "limits: {max_per_tx: 1 BTC}\nrules: [{name: r, action: sign}]\n",
		"unknown sighash":       head + "limits: {max_per_tx: 1 BTC, allow_sighash: [NONEE]}\n",
		"unknown warning":       head + "limits: {max_per_tx: 1 BTC, deny_warnings: [op_return]}\n",
		"bad psbt_version":      head + "limits: {max_per_tx: 1 BTC}\nrules: [{name: r, match: {psbt_version: 1}, action: allow}]\n",
		"bad clock time":        head + "limits: {max_per_tx: 1 BTC, hours: {from: \"8\", to: \"18:00\"}}\n",
		"unknown match key":     head + "limits: {max_per_tx: 1 BTC}\nrules: [{name: r, match: {max_outflw: 1 BTC}, action: allow}]\n",
		// automations:
		"two triggers":               head + lim + auto("{funding_seen: true, schedule: 1h}", "{sweep: {to: "+addrX+"}}", ""),
		"no trigger key":             head + lim + auto("{}", "{sweep: {to: "+addrX+"}}", ""),
		"zero confirmations":         head + lim + auto("{funding_confirmed: 0}", "{sweep: {to: "+addrX+"}}", ""),
		"funding_seen false":         head + lim + auto("{funding_seen: false}", "{sweep: {to: "+addrX+"}}", ""),
		"balance without unit":       head + lim + auto("{balance_above: 1}", "{sweep: {to: "+addrX+"}}", ""),
		"two actions":                head + lim + auto("{funding_seen: true}", "{sweep: {to: "+addrX+"}, forward: {to: "+addrX+"}}", ""),
		"sweep without to":           head + lim + auto("{funding_seen: true}", "{sweep: {reserve: 1 BTC}}", ""),
		"action typo":                head + lim + auto("{funding_seen: true}", "{swep: {to: "+addrX+"}}", ""),
		"consolidate no max_feerate": head + lim + auto("{schedule: 1d}", "{consolidate: {below: 1000 sat}}", ""),
		"fee target 0":               head + lim + auto("{funding_seen: true}", "{sweep: {to: "+addrX+"}}", "    fee: {target_blocks: 0}\n"),
		"fee without unit":           head + lim + auto("{funding_seen: true}", "{sweep: {to: "+addrX+"}}", "    fee: {fallback: 5}\n"),
		"one signature":              head + lim + auto("{funding_seen: true}", "{sweep: {to: "+addrX+"}}", "    signatures: 1\n"),
		"negative bump_after":        head + lim + auto("{funding_seen: true}", "{sweep: {to: "+addrX+"}}", "    bump_after: -1\n"),
		"bad automation name":        head + lim + strings.Replace(auto("{funding_seen: true}", "{sweep: {to: "+addrX+"}}", ""), "name: a", "name: Sweep All", 1),
		"automation key typo":        head + lim + auto("{funding_seen: true}", "{sweep: {to: "+addrX+"}}", "    timout: 1m\n"),
		"cosigner not bunker":        head + lim + strings.Replace(auto("{funding_seen: true}", "{sweep: {to: "+addrX+"}}", ""), "bunker://", "nostrconnect://", 1),
		"forward on a schedule":      head + lim + auto("{schedule: 1d}", "{forward: {to: "+addrX+"}}", ""),
		"empty cosigners":            head + lim + "automations:\n  - {name: a, trigger: {funding_seen: true}, action: {sweep: {to: " + addrX + "}}, cosigners: []}\n",
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			if _, err := Parse("p.yaml", []byte(doc)); err == nil {
				t.Fatalf("the loader accepts it; the test document is wrong")
			}
			if err := s.Validate(yamlInstance(t, doc)); err == nil {
				t.Fatalf("the schema accepts:\n%s", doc)
			}
		})
	}
}
