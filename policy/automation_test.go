package policy

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
)

const (
	pkB     = "c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
	pkC     = "f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9"
	bunkerB = "bunker://" + pkB + "?relay=wss://relay.example.com&secret=b-secret"
	bunkerC = "bunker://" + pkC + "?relay=wss://relay.example.com"
	// qB and qC are the URIs quoted: yaml.v3 does not read a plain "…?…" inside [ ] (flow) lists.
	qB    = `"` + bunkerB + `"`
	qC    = `"` + bunkerC + `"`
	addrX = "bcrt1qqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcruj60yu"
	// vaultDesc is the cold vault of the golden files (2-of-3, regtest/testnet keys).
	vaultDesc = "wsh(sortedmulti(2,[e2867bb6/48h/1h/0h/2h]tpubDFmMwTXpkvHSSZdwNYkf8rmq4WBLrn4sgpijxznXLY7NgUtWapXZj8UE4ciG4G5m57X1n4qaFmTi2M7W2ZbrdFL9o2qArr6fBGsbkUSB2JC/<0;1>/*,[adc4083b/48h/1h/0h/2h]tpubDEPbFA3jaN62veY6m2mFDSpKcHcGBzd2mW8nhMJDZUSzcq5tZYeK3pzebKd3yuEEQELcMidfCjx7vUcDSnEha3TtFx6P926ZqgxuQLQt9CN/<0;1>/*,[e89702d2/48h/1h/0h/2h]tpubDE9yHu4U5JUifgdVakerLrYz9wavQRbNqhvHW1SNhqJULbgesujbzigDmDVBGgNs9BjCnxQvet2aue18rBTi5M3ZGWKevGyBEAGnPo33RM4/<0;1>/*))#4pyf2g3h"
)

// autoDoc is a policy with a vault descriptor, the given limits lines (under limits:, after
// max_per_tx) and the given automations section body.
func autoDoc(limits, automations string) string {
	return "version: 1\nclients:\n  - {name: c, pubkey: " + pkA + "}\n" +
		"descriptors:\n  cold_vault: {descriptor: \"" + vaultDesc + "\", lookahead: 5}\n" +
		"limits:\n  max_per_tx: 1 BTC\n" + limits +
		"automations:\n" + automations
}

func mustParse(t *testing.T, doc string) *Policy {
	t.Helper()
	p, err := Parse("p.yaml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse:\n%v\n--- document\n%s", err, doc)
	}
	return p
}

func TestAutomationDefaults(t *testing.T) {
	p := mustParse(t, autoDoc("", "  - name: sweep\n    trigger: {funding_confirmed: 3}\n    action: {sweep: {to: descriptor:cold_vault}}\n    cosigners: ["+qB+"]\n"))
	if len(p.Automations) != 1 {
		t.Fatalf("automations: %+v", p.Automations)
	}
	a := p.Automations[0]
	if a.Name != "sweep" || a.Line != 9 || a.Trigger != (Trigger{Kind: TriggerFundingConfirmed, Confirmations: 3}) {
		t.Errorf("name/line/trigger: %q %d %+v", a.Name, a.Line, a.Trigger)
	}
	if a.Action.Kind != ActionSweep || a.Action.To.Descriptor != p.Descriptors["cold_vault"] || a.Action.Reserve != 0 {
		t.Errorf("action: %+v", a.Action)
	}
	if a.Fee != (FeeStrategy{TargetBlocks: 6, MaxFeeRate: 100, Fallback: 2}) {
		t.Errorf("fee defaults: %+v", a.Fee)
	}
	if a.Signatures != 0 || a.Timeout != 10*time.Minute || a.BumpAfter != 6 || len(a.Cosigners) != 1 || a.Cosigners[0] != bunkerB {
		t.Errorf("signatures %d timeout %s bump %d cosigners %v", a.Signatures, a.Timeout, a.BumpAfter, a.Cosigners)
	}
	// fee.max_feerate defaults to limits.max_feerate when that is set.
	p = mustParse(t, autoDoc("  max_feerate: 25 sat/vB\n", "  - name: fwd\n    trigger: {funding_seen: true}\n    action: {forward: {to: "+addrX+"}}\n    cosigners: ["+qB+", "+qC+"]\n    signatures: 3\n    bump_after: 0\n"))
	a = p.Automations[0]
	if a.Fee.MaxFeeRate != 25 || a.Signatures != 3 || a.BumpAfter != 0 || a.Action.To.Text != addrX || len(a.Action.To.PkScript) != 22 {
		t.Errorf("%+v", a)
	}
	if d, ok := a.Destination(); !ok || d.Text != addrX {
		t.Errorf("Destination = %+v, %v", d, ok)
	}
	p = mustParse(t, autoDoc("", "  - name: tidy\n    trigger: {schedule: 1d}\n    action: {consolidate: {below: 0.001 BTC, max_feerate: 3 sat/vB}}\n    cosigners: ["+qB+"]\n"))
	a = p.Automations[0]
	if a.Action.MinInputs != 2 || a.Action.Below != 100_000 || a.Action.MaxFeeRate != 3 || a.Trigger.Every != 24*time.Hour {
		t.Errorf("%+v", a)
	}
	if _, ok := a.Destination(); ok {
		t.Error("consolidate has a destination")
	}
	if p.Automation("tidy") == nil || p.Automation("nope") != nil {
		t.Error("Policy.Automation lookup")
	}
}

// TestAutomationErrors: each bad automation is refused with its line:column and a specific
// message; the secret of a bunker URI never appears in a message.
func TestAutomationErrors(t *testing.T) {
	ok := "    cosigners: [" + qB + "]\n"
	cases := []struct {
		name, limits, body, want string
	}{
		{"no name", "", "  - trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "p.yaml:9:5: automation needs a name"},
		{"upper-case name", "", "  - name: Sweep\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "p.yaml:9:11: automation name \"Sweep\" must be"},
		{"no trigger", "", "  - name: s\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "p.yaml:9:5: automation \"s\" needs trigger"},
		{"empty trigger", "", "  - name: s\n    trigger: {}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "p.yaml:10:14: trigger is empty"},
		{"two triggers", "", "  - name: s\n    trigger: {funding_seen: true, balance_above: 1 BTC}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "p.yaml:10:35: trigger takes exactly one"},
		{"trigger typo", "", "  - name: s\n    trigger: {funding_confirmd: 1}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "(did you mean \"funding_confirmed\"?)"},
		{"zero confirmations", "", "  - name: s\n    trigger: {funding_confirmed: 0}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "p.yaml:10:34: funding_confirmed must be a whole number from 1"},
		{"balance without unit", "", "  - name: s\n    trigger: {balance_above: 1}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "p.yaml:10:30: balance_above: amount \"1\" needs a number and a unit"},
		{"schedule too short", "", "  - name: s\n    trigger: {schedule: 59s}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "p.yaml:10:25: schedule 59s is shorter than 1m"},
		{"two actions", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}, forward: {to: " + addrX + "}}\n" + ok, "p.yaml:11:73: action takes exactly one"},
		{"forward on balance", "", "  - name: s\n    trigger: {balance_above: 1 BTC}\n    action: {forward: {to: " + addrX + "}}\n" + ok, "p.yaml:11:14: forward spends the deposit that fired the trigger"},
		{"sweep without to", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {reserve: 1 BTC}}\n" + ok, "p.yaml:11:21: sweep needs to:"},
		{"mainnet address on regtest", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: nope}}\n" + ok, "p.yaml:11:26: \"nope\" is neither an address"},
		{"unknown descriptor", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: descriptor:vault}}\n" + ok, "no descriptor named \"vault\""},
		{"denied destination", "  destinations: {deny: [" + addrX + "]}\n", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "is in limits.destinations.deny: every proposal would be denied"},
		{"not on the allowlist", "  destinations: {allow: [descriptor:cold_vault]}\n", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "is not in limits.destinations.allow"},
		{"consolidate without max_feerate", "", "  - name: s\n    trigger: {schedule: 1d}\n    action: {consolidate: {below: 1000 sat}}\n" + ok, "consolidate needs max_feerate"},
		{"consolidate below zero sat", "", "  - name: s\n    trigger: {schedule: 1d}\n    action: {consolidate: {below: 0 sat, max_feerate: 2 sat/vB}}\n" + ok, "below must be more than 0"},
		{"feerate below relay", "", "  - name: s\n    trigger: {schedule: 1d}\n    action: {consolidate: {below: 1000 sat, max_feerate: 0.5 sat/vB}}\n" + ok, "max_feerate 0.5 sat/vB is below 1 sat/vB"},
		{"fee cap above limits", "  max_feerate: 20 sat/vB\n", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n    fee: {max_feerate: 21 sat/vB}\n" + ok, "p.yaml:13:24: fee max_feerate 21 sat/vB is above limits.max_feerate 20 sat/vB"},
		{"default fallback above cap", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n    fee: {max_feerate: 1.5 sat/vB}\n" + ok, "p.yaml:12:24: fee fallback 2 sat/vB (the default) is above max_feerate 1.5 sat/vB"},
		{"limits cap below relay", "  max_feerate: 0.5 sat/vB\n", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "p.yaml:10:5: fee max_feerate defaults to limits.max_feerate 0.5 sat/vB"},
		{"target blocks", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n    fee: {target_blocks: 0}\n" + ok, "target_blocks must be a whole number from 1 to 1008"},
		{"no cosigners", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n", "needs cosigners"},
		{"sixteen cosigners", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n    cosigners: [" + strings.Repeat(qB+", ", 15) + qB + "]\n", "cosigners lists 16 URIs; at most 15"},
		{"duplicate cosigner", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n    cosigners:\n      - " + qB + "\n      - bunker://" + pkB + "?relay=wss://other.example.com\n", "p.yaml:14:9: co-signer " + pkB[:16] + "… is listed twice (first on line 13)"},
		{"cosigner without relay", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n    cosigners: [\"bunker://" + pkB + "?secret=b-secret\"]\n", "co-signer: malformed NIP-46 URI: no relay= parameter"},
		{"cosigner not a URI", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n    cosigners: [\"bunker://%zz?relay=wss://r&secret=b-secret\"]\n", "co-signer: not a URI"},
		{"nostrconnect is not a bunker", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n    cosigners: [\"nostrconnect://" + pkB + "?relay=wss://r.example.com&secret=b-secret\"]\n", "scheme must be bunker://"},
		{"one signature", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok + "    signatures: 1\n", "signatures must be a whole number from 2 to 16"},
		{"more signatures than signers", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok + "    signatures: 3\n", "signatures: 3 needs 2 co-signers besides this one, but cosigners lists 1"},
		{"timeout too short", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok + "    timeout: 9s\n", "timeout 9s is shorter than 10s"},
		{"bump_after negative", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok + "    bump_after: -1\n", "bump_after must be a whole number from 0 to 1008"},
		{"duplicate name", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok + "  - name: s\n    trigger: {schedule: 1h}\n    action: {sweep: {to: " + addrX + "}}\n" + ok, "p.yaml:13:11: automation name \"s\" used twice (first on line 9)"},
		{"not a list", "", "  name: s\n", "automations must be a list"},
		{"unknown key", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok + "    timout: 1m\n", "unknown key \"timout\" in an automation (did you mean \"timeout\"?)"},
		{"unquoted URI in a flow list", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n    cosigners: [" + bunkerB + "]\n", "p.yaml:12:1: YAML syntax: did not find expected ',' or ']' (quote bunker:// URIs inside [ ]"},
		{"rule names a missing automation", "", "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n" + ok + "rules:\n  - {name: r, match: {clients: [automation:t]}, action: allow}\n", "no automation named \"t\" under automations:"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			_, err := Parse("p.yaml", []byte(autoDoc(c.limits, c.body)))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse error = %v, want policy.Errors", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Parse error =\n%v\nwant it to contain %q", err, c.want)
			}
			if strings.Contains(err.Error(), "b-secret") {
				t.Fatalf("a bunker URI's secret reached the error: %v", err)
			}
		})
	}
}

func TestAutomationFiresOn(t *testing.T) {
	seen := Automation{Trigger: Trigger{Kind: TriggerFundingSeen}}
	conf3 := Automation{Trigger: Trigger{Kind: TriggerFundingConfirmed, Confirmations: 3}}
	bal := Automation{Trigger: Trigger{Kind: TriggerBalanceAbove, Balance: 100}}
	sched := Automation{Trigger: Trigger{Kind: TriggerSchedule, Every: time.Hour}}
	cases := []struct {
		a     Automation
		kind  TriggerKind
		confs int32
		want  bool
	}{
		{seen, TriggerFundingSeen, 0, true},
		{seen, TriggerFundingConfirmed, 6, true},
		{seen, TriggerBalanceAbove, 0, false},
		{conf3, TriggerFundingSeen, 0, false},
		{conf3, TriggerFundingConfirmed, 2, false},
		{conf3, TriggerFundingConfirmed, 3, true},
		{conf3, TriggerFundingSeen, 4, true}, // first seen already deep in the chain
		{conf3, TriggerSchedule, 10, false},
		{bal, TriggerBalanceAbove, 0, true},
		{bal, TriggerFundingConfirmed, 1, false},
		{sched, TriggerSchedule, 0, true},
		{sched, TriggerFundingSeen, 0, false},
	}
	for _, c := range cases {
		if got := c.a.FiresOn(c.kind, c.confs); got != c.want {
			t.Errorf("%s.FiresOn(%s, %d) = %v, want %v", c.a.Trigger.Kind, c.kind, c.confs, got, c.want)
		}
	}
	for _, c := range []struct {
		before, after btcutil.Amount
		want          bool
	}{{50, 101, true}, {100, 101, true}, {101, 200, false}, {50, 100, false}, {200, 50, false}} {
		if got := bal.Crosses(c.before, c.after); got != c.want {
			t.Errorf("Crosses(%d, %d) = %v, want %v", c.before, c.after, got, c.want)
		}
	}
	if seen.Crosses(0, 1_000) {
		t.Error("a funding trigger crosses a balance")
	}
}

func TestAutomationSlot(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	day := Automation{Trigger: Trigger{Kind: TriggerSchedule, Every: 24 * time.Hour}}
	week := Automation{Trigger: Trigger{Kind: TriggerSchedule, Every: 7 * 24 * time.Hour}}
	ninety := Automation{Trigger: Trigger{Kind: TriggerSchedule, Every: 90 * time.Minute}}
	cases := []struct {
		a    Automation
		t    time.Time
		want string
	}{
		{day, at("2026-11-22T13:45:10.5Z"), "2026-11-22T00:00:00Z"},
		{day, at("2026-11-22T00:00:00Z"), "2026-11-22T00:00:00Z"},
		{day, at("2026-11-21T23:59:59.999999999Z"), "2026-11-21T00:00:00Z"},
		{day, at("2026-11-22T00:30:00Z").In(berlin), "2026-11-22T00:00:00Z"}, // the zone of t does not matter
		{week, at("2026-11-22T13:00:00Z"), "2026-11-19T00:00:00Z"},           // epoch weeks start on Thursday
		{ninety, at("2026-11-22T01:29:00Z"), "2026-11-22T00:00:00Z"},
		{ninety, at("2026-11-22T01:30:00Z"), "2026-11-22T01:30:00Z"},
		{ninety, at("1969-12-31T23:00:00Z"), "1969-12-31T22:30:00Z"}, // floor, not truncation toward zero
	}
	for _, c := range cases {
		if got := c.a.Slot(c.t).Format(time.RFC3339Nano); got != c.want {
			t.Errorf("Slot(%s) every %s = %s, want %s", c.t, c.a.Trigger.Every, got, c.want)
		}
	}
	if seen := (Automation{Trigger: Trigger{Kind: TriggerFundingSeen}}); !seen.Slot(time.Now()).IsZero() {
		t.Error("Slot of a funding trigger is not zero")
	}
}

func TestAutomationFeeRate(t *testing.T) {
	a := Automation{Fee: FeeStrategy{TargetBlocks: 6, MaxFeeRate: 50, Fallback: 5}}
	none := Limits{}
	capped := Limits{MaxFeeRate: Opt[FeeRate]{V: 30, Set: true}}
	cases := []struct {
		name     string
		estimate FeeRate
		ok       bool
		limits   Limits
		want     FeeRate
	}{
		{"estimate", 12.5, true, none, 12.5},
		{"no estimate: fallback", 12.5, false, none, 5},
		{"zero estimate: fallback", 0, true, none, 5},
		{"above the automation's cap", 80, true, none, 50},
		{"above the policy's cap", 40, true, capped, 30},
		{"below relay", 0.2, true, none, 1},
	}
	for _, c := range cases {
		if got := a.FeeRate(c.estimate, c.ok, c.limits); got != c.want {
			t.Errorf("%s: FeeRate = %v, want %v", c.name, got, c.want)
		}
	}
	cons := Automation{Action: Action{Kind: ActionConsolidate, MaxFeeRate: 3}}
	if !cons.Consolidates(3) || cons.Consolidates(3.01) || !a.Consolidates(1000) {
		t.Error("Consolidates")
	}
}

// TestAutomationClientAuthorized: the PSBT an automation builds is evaluated as client
// "automation:NAME" — authorized for sign_psbt only, only while the automation is in the policy,
// and still under every limit.
func TestAutomationClientAuthorized(t *testing.T) {
	p := mustParse(t, autoDoc("", "  - name: sweep\n    trigger: {funding_seen: true}\n    action: {sweep: {to: "+addrX+"}}\n    cosigners: ["+qB+"]\n"))
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		client, method string
		outflow        btcutil.Amount
		want           Outcome
		rule           string
	}{
		{"automation:sweep", "sign_psbt", 1000, Allow, RuleWithin},
		{"automation:sweep", "sign_psbt", 100_000_001, Deny, RuleMaxPerTx},
		{"automation:sweep", "get_wallet", 1000, Unauthorized, RuleClients},
		{"automation:other", "sign_psbt", 1000, Unauthorized, RuleClients},
		{"automation:", "sign_psbt", 1000, Unauthorized, RuleClients},
	} {
		d := Evaluate(p, Input{Client: c.client, Method: c.method, Now: now, Outflow: c.outflow})
		if d.Outcome != c.want || d.Rule != c.rule {
			t.Errorf("%s %s: %s by %s (%s), want %s by %s", c.client, c.method, d.Outcome, d.Rule, d.Reason, c.want, c.rule)
		}
	}
	// An automation added by a change that still waits for loosen_delay is not yet authorized.
	prev := mustParse(t, autoDoc("", "  []\n"))
	staged := p.WithPrior(prev, now.Add(time.Hour))
	if d := Evaluate(staged, Input{Client: "automation:sweep", Method: "sign_psbt", Now: now, Outflow: 1000}); d.Outcome != Unauthorized {
		t.Errorf("staged: %s (%s)", d.Outcome, d.Reason)
	}
	if d := Evaluate(staged, Input{Client: "automation:sweep", Method: "sign_psbt", Now: now.Add(time.Hour), Outflow: 1000}); d.Outcome != Allow {
		t.Errorf("after the delay: %s (%s)", d.Outcome, d.Reason)
	}
}

func TestAutomationLoosenings(t *testing.T) {
	base := "  - name: sweep\n    trigger: {funding_confirmed: 2}\n    action: {sweep: {to: descriptor:cold_vault, reserve: 0.1 BTC}}\n" +
		"    fee: {target_blocks: 6, max_feerate: 20 sat/vB, fallback: 3 sat/vB}\n    cosigners: [" + qB + ", " + qC + "]\n" +
		"    signatures: 3\n    timeout: 10m\n    bump_after: 6\n" +
		"  - name: tidy\n    trigger: {schedule: 1d}\n    action: {consolidate: {below: 10000 sat, min_inputs: 5, max_feerate: 3 sat/vB}}\n    cosigners: [" + qB + "]\n"
	prev := mustParse(t, autoDoc("", base))
	edit := func(old, new string) string {
		if !strings.Contains(base, old) {
			t.Fatalf("test edit %q not in the base", old)
		}
		return strings.Replace(base, old, new, 1)
	}
	cases := []struct {
		name, body, loosens string // "" means a pure tightening (or no change)
	}{
		{"same", base, ""},
		{"automation removed", base[:strings.Index(base, "  - name: tidy")], ""},
		{"automation added", base + "  - name: fwd\n    trigger: {funding_seen: true}\n    action: {forward: {to: " + addrX + "}}\n    cosigners: [" + qB + "]\n", "automation \"fwd\" added"},
		{"automation renamed", edit("name: tidy", "name: tidy2"), "automation \"tidy2\" added"},
		{"trigger changed", edit("funding_confirmed: 2", "funding_confirmed: 3"), "trigger changed"},
		{"destination changed", edit("to: descriptor:cold_vault", "to: "+addrX), "destination changed"},
		{"reserve lowered", edit("reserve: 0.1 BTC", "reserve: 0.05 BTC"), "reserve lowered"},
		{"reserve raised", edit("reserve: 0.1 BTC", "reserve: 0.2 BTC"), ""},
		{"fee cap raised", edit("max_feerate: 20 sat/vB", "max_feerate: 21 sat/vB"), "fee max_feerate raised"},
		{"fee cap lowered", edit("max_feerate: 20 sat/vB", "max_feerate: 10 sat/vB"), ""},
		{"fallback raised", edit("fallback: 3 sat/vB", "fallback: 4 sat/vB"), "fee fallback raised"},
		{"target lowered", edit("target_blocks: 6", "target_blocks: 1"), "target_blocks lowered"},
		{"target raised", edit("target_blocks: 6", "target_blocks: 12"), ""},
		{"cosigner added", edit("cosigners: ["+qB+"]\n", "cosigners: ["+qB+", "+qC+"]\n"), "automation \"tidy\": co-signer added"},
		{"cosigner's URI changed", edit(qB+", "+qC, `"`+bunkerB+`x", `+qC), "co-signer added or its URI changed"},
		{"cosigner removed", edit(", "+qC+"]\n    signatures: 3", "]\n    signatures: 2"), "signatures lowered"},
		{"signatures to the wallet's threshold", edit("    signatures: 3\n", ""), ""},
		{"timeout shortened", edit("timeout: 10m", "timeout: 1m"), "timeout shortened"},
		{"timeout lengthened", edit("timeout: 10m", "timeout: 1h"), ""},
		{"bump sooner", edit("bump_after: 6", "bump_after: 2"), "bump_after lowered"},
		{"bump never", edit("bump_after: 6", "bump_after: 0"), ""},
		{"consolidate more", edit("below: 10000 sat", "below: 20000 sat"), "below raised"},
		{"consolidate fewer inputs", edit("min_inputs: 5", "min_inputs: 2"), "min_inputs lowered"},
		{"consolidate at higher feerates", edit("max_feerate: 3 sat/vB", "max_feerate: 4 sat/vB"), "consolidate max_feerate raised"},
		{"consolidate at lower feerates", edit("max_feerate: 3 sat/vB", "max_feerate: 2 sat/vB"), ""},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			next := mustParse(t, autoDoc("", c.body))
			got := strings.Join(Loosenings(prev, next), "; ")
			if c.loosens == "" && got != "" || c.loosens != "" && !strings.Contains(got, c.loosens) {
				t.Fatalf("Loosenings = %q, want %q", got, c.loosens)
			}
			if strings.Contains(got, "b-secret") {
				t.Fatalf("a secret reached the loosenings: %q", got)
			}
		})
	}
}

// TestAutomationsAt: while a loosening waits, the engine runs only automations every policy in
// force has, in their newest version that loosens nothing; a tightening applies at once.
func TestAutomationsAt(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	sweep := func(to, maxFee string) string {
		return "  - name: sweep\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + to + "}}\n    fee: {max_feerate: " + maxFee + "}\n    cosigners: [" + qB + "]\n"
	}
	tidy := "  - name: tidy\n    trigger: {schedule: 1d}\n    action: {consolidate: {below: 1000 sat, max_feerate: 2 sat/vB}}\n    cosigners: [" + qB + "]\n"
	old := mustParse(t, autoDoc("", sweep("descriptor:cold_vault", "20 sat/vB")+tidy))
	names := func(as []Automation) string {
		var out []string
		for _, a := range as {
			out = append(out, a.Name+"→"+a.Action.To.Text+"@"+a.Fee.MaxFeeRate.text())
		}
		return strings.Join(out, ",")
	}
	cases := []struct {
		name, next, want string
	}{
		{"new destination waits", sweep(addrX, "20 sat/vB") + tidy, "sweep→descriptor:cold_vault@20 sat/vB,tidy→@100 sat/vB"},
		{"lower fee cap at once", sweep("descriptor:cold_vault", "10 sat/vB") + tidy, "sweep→descriptor:cold_vault@10 sat/vB,tidy→@100 sat/vB"},
		{"removal at once", tidy, "tidy→@100 sat/vB"},
		{"addition waits", sweep("descriptor:cold_vault", "20 sat/vB") + tidy + strings.ReplaceAll(tidy, "tidy", "tidy2"), "sweep→descriptor:cold_vault@20 sat/vB,tidy→@100 sat/vB"},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			next := mustParse(t, autoDoc("", c.next))
			staged := next.WithPrior(old, now.Add(time.Hour))
			if got := names(staged.AutomationsAt(now)); got != c.want {
				t.Errorf("during the delay: %s, want %s", got, c.want)
			}
			if got, want := names(staged.AutomationsAt(now.Add(time.Hour))), names(next.Automations); got != want {
				t.Errorf("after the delay: %s, want %s", got, want)
			}
		})
	}
}

func TestAutomationString(t *testing.T) {
	p := mustParse(t, autoDoc("", "  - name: sweep\n    trigger: {balance_above: 2 BTC}\n    action: {sweep: {to: descriptor:cold_vault, reserve: 0.5 BTC}}\n    cosigners: ["+qB+", "+qC+"]\n    signatures: 2\n    bump_after: 0\n"))
	got := p.Automations[0].String()
	want := "sweep: on confirmed balance above 2 BTC → sweep to descriptor:cold_vault keeping 0.50000000 BTC; fee: target 6 blocks, fallback 2 sat/vB, max 100 sat/vB; " +
		"signatures: 2, asking " + pkB[:16] + "…, " + pkC[:16] + "…; timeout 10m; no fee bump"
	if got != want {
		t.Fatalf("String =\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(got, "secret") {
		t.Fatal("String shows a bunker URI's secret")
	}
}

func TestDestinationForNetwork(t *testing.T) {
	p := mustParse(t, autoDoc("", "  - name: v\n    trigger: {funding_seen: true}\n    action: {sweep: {to: descriptor:cold_vault}}\n    cosigners: ["+qB+"]\n"+
		"  - name: a\n    trigger: {funding_seen: true}\n    action: {sweep: {to: "+addrX+"}}\n    cosigners: ["+qB+"]\n"+
		"  - name: m\n    trigger: {funding_seen: true}\n    action: {sweep: {to: bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4}}\n    cosigners: ["+qB+"]\n"))
	cases := []struct {
		name string
		net  *chaincfg.Params
		ok   bool
	}{
		{"v", &chaincfg.RegressionNetParams, true},
		{"v", &chaincfg.TestNet3Params, true},
		{"v", &chaincfg.MainNetParams, false}, // tpub keys
		{"a", &chaincfg.RegressionNetParams, true},
		{"a", &chaincfg.TestNet3Params, false}, // bcrt1 is regtest only
		{"m", &chaincfg.MainNetParams, true},
		{"m", &chaincfg.RegressionNetParams, false},
	}
	for _, c := range cases {
		d, _ := p.Automation(c.name).Destination()
		err := d.ForNetwork(c.net)
		if c.ok != (err == nil) || err != nil && !errors.Is(err, ErrWrongNetwork) {
			t.Errorf("%s on %s: %v", d.Text, c.net.Name, err)
		}
	}
	// With WithNetwork, Parse itself refuses an address of another network.
	_, err := Parse("p.yaml", []byte(autoDoc("", "  - name: m\n    trigger: {funding_seen: true}\n    action: {sweep: {to: bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4}}\n    cosigners: ["+qB+"]\n")), WithNetwork(&chaincfg.RegressionNetParams))
	if err == nil || !strings.Contains(err.Error(), "p.yaml:11:26: \"bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4\" is neither an address") {
		t.Errorf("WithNetwork(regtest) and a mainnet to: %v", err)
	}
}

// TestAutomationFeeRateStaged: while a raised limits.max_feerate waits for loosen_delay, the
// engine's feerate stays under the old, lower cap.
func TestAutomationFeeRateStaged(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	auto := "  - name: s\n    trigger: {funding_seen: true}\n    action: {sweep: {to: " + addrX + "}}\n    cosigners: [" + qB + "]\n"
	old := mustParse(t, autoDoc("  max_feerate: 10 sat/vB\n", auto))
	next := mustParse(t, autoDoc("  max_feerate: 40 sat/vB\n", auto)).WithPrior(old, now.Add(time.Hour))
	a := next.AutomationsAt(now)[0]
	if got := next.AutomationFeeRate(&a, 30, true, now); got != 10 {
		t.Errorf("during the delay: %v sat/vB, want 10", got)
	}
	if a.Fee.MaxFeeRate != 10 {
		t.Errorf("during the delay the old version runs, with its fee cap 10 sat/vB: %+v", a.Fee)
	}
	a = next.AutomationsAt(now.Add(time.Hour))[0]
	if got := next.AutomationFeeRate(&a, 30, true, now.Add(time.Hour)); got != 30 {
		t.Errorf("after the delay: %v sat/vB, want 30", got)
	}
	if c := next.MaxFeeRateAt(now); !c.Set || c.V != 10 {
		t.Errorf("MaxFeeRateAt during the delay: %+v", c)
	}
	if c := next.MaxFeeRateAt(now.Add(time.Hour)); !c.Set || c.V != 40 {
		t.Errorf("MaxFeeRateAt after the delay: %+v", c)
	}
	wide := Automation{Fee: FeeStrategy{MaxFeeRate: 100, Fallback: 2}}
	if got := next.AutomationFeeRate(&wide, 30, true, now); got != 10 {
		t.Errorf("the old policy's cap does not bound the feerate: %v", got)
	}
	if c := mustParse(t, autoDoc("", auto)).MaxFeeRateAt(now); c.Set {
		t.Errorf("no cap set: %+v", c)
	}
}

// TestAutomationErrorNotRepeatedByRules: a rule naming an automation that has an error is not
// reported as well (one mistake, one message).
func TestAutomationErrorNotRepeatedByRules(t *testing.T) {
	doc := autoDoc("", "  - name: s\n    trigger: {schedule: 10s}\n    action: {sweep: {to: "+addrX+"}}\n    cosigners: ["+qB+"]\n"+
		"rules:\n  - {name: r, match: {clients: [automation:s]}, action: allow}\n")
	_, err := Parse("p.yaml", []byte(doc))
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || !strings.Contains(es[0].Msg, "schedule 10s is shorter than 1m") {
		t.Fatalf("Parse = %v, want only the schedule error", err)
	}
}
