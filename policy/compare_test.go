package policy

import (
	"strings"
	"testing"
)

// addrY is BIP-173's example P2WPKH address (mainnet).
const addrY = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"

// looseBase sets every feature Loosenings compares.
const looseBase = "version: 1\ntimezone: Europe/Berlin\nloosen_delay: 7d\n" +
	"clients:\n  - {name: c, pubkey: " + pkA + ", methods: [sign_psbt], rate_limit: 10/1h}\n  - {name: d, pubkey: " + pkB + "}\n" +
	"approvers:\n  - {name: alice, pubkey: " + pkA + "}\n" +
	"descriptors:\n  cold_vault: {descriptor: \"" + vaultDesc + "\", lookahead: 4}\n" +
	"limits:\n" +
	"  max_per_tx: 1 BTC\n" +
	"  velocity: [{window: 1d, max: 2 BTC}, {window: 30d, max: 5 BTC}]\n" +
	"  max_fee: 10000 sat\n" +
	"  max_feerate: 50 sat/vB\n" +
	"  max_fee_share: 5%\n" +
	"  min_confirmations: 2\n" +
	"  hours: {from: \"08:00\", to: \"20:00\", days: [mon, tue, wed, thu, fri]}\n" +
	"  destinations: {deny: [" + addrX + "], allow: [" + addrY + ", \"descriptor:cold_vault\"]}\n" +
	"  allow_sighash: [ALL]\n" +
	"  deny_warnings: [op_return_output, locktime]\n" +
	"rules:\n" +
	"  - {name: big, match: {min_outflow: 0.5 BTC}, action: hold, hold: {approvals: 1, approvers: [alice]}}\n" +
	"  - {name: rest, action: allow}\n" +
	"automations:\n" +
	"  - name: sweep\n    trigger: {funding_confirmed: 2}\n    action: {sweep: {to: descriptor:cold_vault}}\n    cosigners: [" + qB + "]\n    timeout: 10m\n"

// TestLooseningsExact pins Loosenings' whole answer, in order, for a change of each feature it
// compares (and for all of them at once), so that splitting it changes nothing.
func TestLooseningsExact(t *testing.T) {
	prev := mustParse(t, looseBase)
	edit := func(doc string, pairs ...string) string {
		for i := 0; i < len(pairs); i += 2 {
			if !strings.Contains(doc, pairs[i]) {
				t.Fatalf("test edit %q not in the document", pairs[i])
			}
			doc = strings.Replace(doc, pairs[i], pairs[i+1], 1)
		}
		return doc
	}
	everything := []string{
		"timezone: Europe/Berlin", "timezone: UTC",
		"loosen_delay: 7d", "loosen_delay: 1d",
		"max_per_tx: 1 BTC", "max_per_tx: 2 BTC",
		"{window: 1d, max: 2 BTC}, {window: 30d, max: 5 BTC}", "{window: 1d, max: 3 BTC}",
		"  max_fee: 10000 sat\n", "",
		"max_feerate: 50 sat/vB", "max_feerate: 60 sat/vB",
		"max_fee_share: 5%", "max_fee_share: 6%",
		"min_confirmations: 2", "min_confirmations: 1",
		"allow_sighash: [ALL]", "allow_sighash: [ALL, NONE, SINGLE|ANYONECANPAY]",
		"deny_warnings: [op_return_output, locktime]", "deny_warnings: [op_return_output]",
		"deny: [" + addrX + "], allow: [" + addrY + ", \"descriptor:cold_vault\"]", "deny: [], allow: [" + addrY + ", " + addrX + ", \"descriptor:cold_vault\", \"descriptor:hot\"]",
		"methods: [sign_psbt], rate_limit: 10/1h", "rate_limit: 20/1h",
		"{name: d, pubkey: " + pkB + "}", "{name: dee, pubkey: " + pkB + "}\n  - {name: e, pubkey: " + pkC + "}",
		"approvers:\n", "approvers:\n  - {name: bob, pubkey: " + pkB + "}\n",
		"lookahead: 4}\n", "lookahead: 2}\n  hot: {descriptor: \"" + vaultDesc + "\", lookahead: 1}\n",
		"timeout: 10m\n", "timeout: 1m\n  - name: fwd\n    trigger: {funding_seen: true}\n    action: {forward: {to: " + addrY + "}}\n    cosigners: [" + qB + "]\n",
		"approvals: 1, approvers", "approvals: 1, cooling_off: 1h, approvers",
	}
	cases := []struct {
		name, doc string
		want      string // the loosenings joined with "; "
	}{
		{"same", looseBase, ""},
		{"timezone (and so hours)", edit(looseBase, "timezone: Europe/Berlin", "timezone: UTC"),
			"timezone changed from Europe/Berlin to UTC; hours changed or removed"},
		{"loosen_delay shortened", edit(looseBase, "loosen_delay: 7d", "loosen_delay: 1d"), "loosen_delay shortened from 7d to 1d"},
		{"loosen_delay lengthened", edit(looseBase, "loosen_delay: 7d", "loosen_delay: 14d"), ""},
		{"max_per_tx raised", edit(looseBase, "max_per_tx: 1 BTC", "max_per_tx: 1.5 BTC"), "max_per_tx raised from 1 BTC to 1.50000000 BTC"},
		{"max_per_tx lowered", edit(looseBase, "max_per_tx: 1 BTC", "max_per_tx: 0.5 BTC"), ""},
		{"velocity max raised", edit(looseBase, "{window: 1d, max: 2 BTC}", "{window: 1d, max: 2.5 BTC}"), "velocity window 1d (max 2 BTC) raised or removed"},
		{"velocity window removed", edit(looseBase, ", {window: 30d, max: 5 BTC}", ""), "velocity window 30d (max 5 BTC) raised or removed"},
		{"velocity covered by a longer window", edit(looseBase, "{window: 1d, max: 2 BTC}, {window: 30d, max: 5 BTC}", "{window: 30d, max: 2 BTC}"), ""},
		{"max_fee removed", edit(looseBase, "  max_fee: 10000 sat\n", ""), "max_fee raised or removed"},
		{"max_fee lowered", edit(looseBase, "max_fee: 10000 sat", "max_fee: 5000 sat"), ""},
		// The automation's fee cap defaults to limits.max_feerate: raised with it.
		{"max_feerate raised", edit(looseBase, "max_feerate: 50 sat/vB", "max_feerate: 51 sat/vB"),
			`max_feerate raised or removed; automation "sweep": fee max_feerate raised from 50 sat/vB to 51 sat/vB`},
		{"max_fee_share removed", edit(looseBase, "  max_fee_share: 5%\n", ""), "max_fee_share raised or removed"},
		{"min_confirmations removed", edit(looseBase, "  min_confirmations: 2\n", ""), "min_confirmations lowered or removed"},
		{"min_confirmations raised", edit(looseBase, "min_confirmations: 2", "min_confirmations: 3"), ""},
		{"hours widened", edit(looseBase, "to: \"20:00\"", "to: \"21:00\""), "hours changed or removed"},
		{"hours narrowed (conservative)", edit(looseBase, "to: \"20:00\"", "to: \"19:00\""), "hours changed or removed"},
		{"hours removed", edit(looseBase, "  hours: {from: \"08:00\", to: \"20:00\", days: [mon, tue, wed, thu, fri]}\n", ""), "hours changed or removed"},
		{"hours in the same zone written out", edit(looseBase, "days: [mon, tue, wed, thu, fri]}", "days: [mon, tue, wed, thu, fri], zone: Europe/Berlin}"), ""},
		{"sighash added", edit(looseBase, "allow_sighash: [ALL]", "allow_sighash: [ALL, NONE]"), "sighash NONE added to allow_sighash"},
		{"sighash list removed", edit(looseBase, "  allow_sighash: [ALL]\n", ""), ""},
		{"warning removed", edit(looseBase, "deny_warnings: [op_return_output, locktime]", "deny_warnings: [locktime]"), "warning op_return_output removed from deny_warnings"},
		{"warning added", edit(looseBase, "deny_warnings: [op_return_output, locktime]", "deny_warnings: [op_return_output, locktime, tx_version]"), ""},
		{"allowlist removed", edit(looseBase, ", allow: ["+addrY+", \"descriptor:cold_vault\"]", ""), "destination allowlist removed"},
		{"allowlist grown", edit(looseBase, "allow: ["+addrY, "allow: ["+addrY+", "+addrX), "destination " + addrX + " added to the allowlist"},
		{"allowlist shrunk", edit(looseBase, "allow: ["+addrY+", ", "allow: ["), ""},
		{"denylist shrunk", edit(looseBase, "deny: ["+addrX+"], ", ""), "destination " + addrX + " removed from the denylist"},
		{"denylist grown", edit(looseBase, "deny: ["+addrX+"]", "deny: ["+addrX+", "+addrY+"]"), ""},
		{"client added", edit(looseBase, "  - {name: d, pubkey: "+pkB+"}\n", "  - {name: d, pubkey: "+pkB+"}\n  - {name: e, pubkey: "+pkC+"}\n"), `client "e" added`},
		{"client removed", edit(looseBase, "  - {name: d, pubkey: "+pkB+"}\n", ""), ""},
		{"client renamed", edit(looseBase, "{name: d, pubkey: "+pkB+"}", "{name: dee, pubkey: "+pkB+"}"), `client "d" renamed to "dee"`},
		{"client given every method", edit(looseBase, "methods: [sign_psbt], ", ""), `client "c" may call more methods`},
		{"client given fewer methods", edit(looseBase, "methods: [sign_psbt]", "methods: [psbt_status]"), `client "c" may call more methods`},
		{"rate_limit raised", edit(looseBase, "rate_limit: 10/1h", "rate_limit: 10/30m"), `client "c" rate_limit raised or removed`},
		{"rate_limit lowered", edit(looseBase, "rate_limit: 10/1h", "rate_limit: 5/2h"), ""},
		{"rate_limit given", edit(looseBase, "{name: d, pubkey: "+pkB+"}", "{name: d, pubkey: "+pkB+", rate_limit: 1/1h}"), ""},
		{"approver added", edit(looseBase, "approvers:\n", "approvers:\n  - {name: bob, pubkey: "+pkB+"}\n"), `approver "bob" added or changed`},
		{"approver renamed", edit(looseBase, "{name: alice, pubkey: "+pkA+"}", "{name: alicia, pubkey: "+pkA+"}", "approvers: [alice]", "approvers: [alicia]"),
			`approver "alicia" added or changed; rule 1 ("big") changed`},
		{"descriptor added", edit(looseBase, "lookahead: 4}\n", "lookahead: 4}\n  hot: {descriptor: \""+vaultDesc+"\", lookahead: 1}\n"), `named descriptor "hot" added or widened`},
		{"descriptor widened", edit(looseBase, "lookahead: 4}", "lookahead: 8}"), `named descriptor "cold_vault" added or widened`},
		{"descriptor narrowed while an automation uses it", edit(looseBase, "lookahead: 4}", "lookahead: 2}"),
			`named descriptor "cold_vault" narrowed (lookahead 4 → 2) while a deny, a rule or an automation uses it`},
		{"automation added", edit(looseBase, "timeout: 10m\n", "timeout: 10m\n  - name: fwd\n    trigger: {funding_seen: true}\n    action: {forward: {to: "+addrY+"}}\n    cosigners: ["+qB+"]\n"), `automation "fwd" added`},
		{"automation edited", edit(looseBase, "timeout: 10m", "timeout: 1m"), `automation "sweep": timeout shortened from 10m to 1m`},
		{"automation removed", edit(looseBase, "automations:\n  - name: sweep\n    trigger: {funding_confirmed: 2}\n    action: {sweep: {to: descriptor:cold_vault}}\n    cosigners: ["+qB+"]\n    timeout: 10m\n", ""), ""},
		{"rule added", edit(looseBase, "  - {name: rest", "  - {name: tiny, match: {max_outflow: 1000 sat}, action: deny}\n  - {name: rest"), "rules changed (2 → 3 rules)"},
		{"rule edited", edit(looseBase, "approvals: 1, approvers", "approvals: 1, cooling_off: 1h, approvers"), `rule 1 ("big") changed`},
		{"rules swapped", edit(looseBase, "  - {name: big, match: {min_outflow: 0.5 BTC}, action: hold, hold: {approvals: 1, approvers: [alice]}}\n  - {name: rest, action: allow}\n",
			"  - {name: big, match: {min_outflow: 0.6 BTC}, action: hold, hold: {approvals: 1, approvers: [alice]}}\n  - {name: rest2, action: allow}\n"),
			`rule 1 ("big") changed; rule 2 ("rest2") changed`},
		{"everything", edit(looseBase, everything...), strings.Join([]string{
			"timezone changed from Europe/Berlin to UTC",
			"loosen_delay shortened from 7d to 1d",
			"max_per_tx raised from 1 BTC to 2 BTC",
			"velocity window 1d (max 2 BTC) raised or removed",
			"velocity window 30d (max 5 BTC) raised or removed",
			"max_fee raised or removed",
			"max_feerate raised or removed",
			"max_fee_share raised or removed",
			"min_confirmations lowered or removed",
			"hours changed or removed",
			"sighash NONE added to allow_sighash",
			"sighash SINGLE|ANYONECANPAY added to allow_sighash",
			"warning locktime removed from deny_warnings",
			"destination " + addrX + " added to the allowlist",
			"destination descriptor:hot added to the allowlist",
			"destination " + addrX + " removed from the denylist",
			`client "c" may call more methods`,
			`client "c" rate_limit raised or removed`,
			`client "d" renamed to "dee"`,
			`client "e" added`,
			`approver "bob" added or changed`,
			`named descriptor "cold_vault" narrowed (lookahead 4 → 2) while a deny, a rule or an automation uses it`,
			`named descriptor "hot" added or widened`,
			`automation "sweep": fee max_feerate raised from 50 sat/vB to 60 sat/vB`,
			`automation "sweep": timeout shortened from 10m to 1m`,
			`automation "fwd" added`,
			`rule 1 ("big") changed`,
		}, "; ")},
	}
	for _, c := range cases {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			next := mustParse(t, c.doc)
			if got := strings.Join(Loosenings(prev, next), "; "); got != c.want {
				t.Fatalf("Loosenings =\n%q\nwant\n%q", got, c.want)
			}
		})
	}
}
