package policy

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite the expected sections of testdata/*.txt")

// Golden files (Caddy style): testdata/NAME.txt holds a policy, then a line "--- request" and
// the request's facts as YAML, then "--- decision" and the expected decision with its
// rule-by-rule explanation. A policy that does not load has no request section and expects its
// errors. A policy with automations also gets them listed after the decision, one line each
// (Automation.String, defaults filled in). `go test ./policy -run Golden -update` rewrites the expected sections.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txt")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txt"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			body, want, ok := strings.Cut(string(raw), "\n--- decision\n")
			if !ok && !*update {
				t.Fatal("no --- decision section")
			}
			pol, req, _ := strings.Cut(body, "\n--- request\n")
			got := runGolden(t, filepath.Base(file), pol, req)
			if *update {
				if err := os.WriteFile(file, []byte(body+"\n--- decision\n"+got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != want {
				t.Errorf("decision differs from %s (rerun with -update after checking):\n--- got\n%s--- want\n%s", file, got, want)
			}
		})
	}
}

type goldenFacts struct {
	Client    string            `yaml:"client"`
	Method    string            `yaml:"method"`
	Now       string            `yaml:"now"`
	Outflow   string            `yaml:"outflow"`
	Fee       string            `yaml:"fee"`
	FeeRate   string            `yaml:"feerate"`
	RBF       bool              `yaml:"rbf"`
	Inputs    []goldenInput     `yaml:"inputs"`
	Outputs   []goldenOutput    `yaml:"outputs"`
	Spent     map[string]string `yaml:"spent"`
	HeldSince string            `yaml:"held_since"`
	Approvals []string          `yaml:"approvals"`
	Warnings  []string          `yaml:"warnings"`
	Script    string            `yaml:"script_type"`
	Version   uint32            `yaml:"psbt_version"`
	LockTime  uint32            `yaml:"locktime"`
}

type goldenInput struct {
	Confirmations int32  `yaml:"confirmations"`
	Value         string `yaml:"value"`
	Sighash       string `yaml:"sighash"`
}

type goldenOutput struct {
	Address string `yaml:"address"`
	Value   string `yaml:"value"`
	Kind    string `yaml:"kind"`
}

func runGolden(t *testing.T, name, pol, req string) string {
	p, err := Parse(name, []byte(pol))
	if err != nil {
		if req != "" {
			t.Fatalf("policy does not load: %v", err)
		}
		return "errors:\n" + err.Error() + "\n"
	}
	var f goldenFacts
	dec := yaml.NewDecoder(strings.NewReader(req))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("request facts: %v", err)
	}
	in := Input{Client: f.Client, Method: f.Method, RBF: f.RBF, Spent: map[time.Duration]btcutil.Amount{},
		Warnings: f.Warnings, ScriptType: f.Script, PSBTVersion: f.Version, LockTime: f.LockTime, LockTimeKind: "none"}
	switch {
	case f.LockTime >= 500_000_000:
		in.LockTimeKind = "time"
	case f.LockTime > 0:
		in.LockTimeKind = "height"
	}
	if in.ScriptType == "" {
		in.ScriptType = "p2wsh"
	}
	for _, c := range p.Clients {
		if c.Name == f.Client {
			in.Client = c.PubKey
		}
	}
	if in.Method == "" {
		in.Method = "sign_psbt"
	}
	mustTime := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatalf("time %q: %v", s, err)
		}
		return tm
	}
	mustAmount := func(s string) btcutil.Amount {
		if s == "" {
			return 0
		}
		a, err := ParseAmount(s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	in.Now = mustTime(f.Now)
	if f.HeldSince != "" {
		in.HeldSince = mustTime(f.HeldSince)
	}
	in.Outflow, in.Fee = mustAmount(f.Outflow), mustAmount(f.Fee)
	if f.FeeRate != "" {
		fr, err := ParseFeeRate(f.FeeRate)
		if err != nil {
			t.Fatal(err)
		}
		in.FeeRate = fr
	}
	for i, gi := range f.Inputs {
		sh := uint32(txscript.SigHashAll)
		if gi.Sighash != "" {
			h, ok := sighashNames[gi.Sighash]
			if !ok {
				t.Fatalf("sighash %q", gi.Sighash)
			}
			sh = uint32(h)
		}
		in.Inputs = append(in.Inputs, InputFact{OutPoint: fmt.Sprintf("%064d:%d", 0, i), Value: mustAmount(gi.Value), Confirmations: gi.Confirmations, SighashType: sh})
		in.InputTotal += mustAmount(gi.Value)
	}
	for i, o := range f.Outputs {
		of := OutputFact{Index: i, Address: o.Address, Value: mustAmount(o.Value), Kind: o.Kind}
		if of.Kind == "" {
			of.Kind = "spend"
		}
		if o.Address != "" {
			a, err := btcutil.DecodeAddress(o.Address, &chaincfg.RegressionNetParams)
			if err != nil {
				t.Fatal(err)
			}
			of.PkScript, _ = txscript.PayToAddrScript(a)
		}
		if of.Kind == "change" {
			in.ChangeTotal += of.Value
		}
		in.Outputs = append(in.Outputs, of)
	}
	for w, a := range f.Spent {
		d, err := ParseDuration(w)
		if err != nil {
			t.Fatal(err)
		}
		in.Spent[d] = mustAmount(a)
	}
	for _, name := range f.Approvals {
		pk, ok := "", false
		for _, a := range p.Approvers {
			if a.Name == name {
				pk, ok = a.PubKey, true
			}
		}
		if !ok {
			pk = name
		}
		in.Approvals = append(in.Approvals, pk)
	}
	out := renderDecision(Evaluate(p, in))
	if len(p.Automations) > 0 {
		out += "automations:\n"
		for i := range p.Automations {
			out += "  " + p.Automations[i].String() + "\n"
		}
	}
	return out
}

func renderDecision(d Decision) string {
	var b strings.Builder
	fmt.Fprintf(&b, "outcome: %s\nrule: %s\nreason: %s\n", d.Outcome, d.Rule, d.Reason)
	if d.Hold != nil {
		fmt.Fprintf(&b, "hold: until %s, approvals %d/%d\n", d.Hold.Until.UTC().Format(time.RFC3339), d.Hold.Have, d.Hold.Required)
	}
	b.WriteString("explanation:\n")
	for _, s := range d.Explanation {
		fmt.Fprintf(&b, "  %-12s %-20s %s\n", s.Result, s.Rule, s.Detail)
	}
	return b.String()
}
