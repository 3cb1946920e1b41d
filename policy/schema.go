package policy

import "encoding/json"

// SchemaID is the $id of the policy JSON Schema.
const SchemaID = "https://github.com/custodyagents/cosigner/policy/schema.json"

// Patterns of the language's scalar values, shared by the schema and the docs.
const (
	patAmount   = `^\s*[0-9][0-9_]*(\.[0-9]+)?\s+(BTC|btc|sat|sats)\s*$`
	patDuration = `^\s*([0-9]+[dw]|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)\s*$`
	patFeeRate  = `^\s*[0-9][0-9_]*(\.[0-9]+)?\s+sats?/[vV][bB]\s*$`
	patShare    = `^\s*[0-9]+(\.[0-9]{1,4})?\s*%\s*$`
	patClock    = `^([01][0-9]|2[0-3]):[0-5][0-9]$`
	patRate     = `^\s*[0-9]+\s*/\s*\S+\s*$`
	patPubKey   = `^(npub1[02-9ac-hj-np-z]{58}|[0-9a-fA-F]{64})$`
)

type js = map[string]any

func str(desc, pattern string) js {
	s := js{"type": "string", "description": desc}
	if pattern != "" {
		s["pattern"] = pattern
	}
	return s
}

func obj(keys []string, props js, required ...string) js {
	p := js{}
	for _, k := range keys {
		p[k] = props[k]
	}
	o := js{"type": "object", "additionalProperties": false, "properties": p}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func list(items js, desc string) js { return js{"type": "array", "items": items, "description": desc} }

// Schema returns the policy language's JSON Schema (draft 2020-12), for editors
// (yaml-language-server: put "# yaml-language-server: $schema=<path or URL>" at the top of the
// policy file). Every mapping lists exactly the keys the loader accepts, so an editor flags the
// same unknown keys that `cosigner policy check` refuses; values are checked by pattern (the
// loader's checks are stricter: ranges, references by name, semantic checks).
func Schema() []byte {
	amount := func(d string) js { return str(d+` Amount with unit: "0.5 BTC", "50000 sat".`, patAmount) }
	duration := func(d string) js { return str(d+` Go duration or days/weeks: "90m", "24h", "7d", "2w".`, patDuration) }
	confs := js{"type": "integer", "minimum": 0, "maximum": 10000, "description": "Minimum confirmations of every input."}
	dest := list(str(`An address, or "descriptor:NAME" for a named descriptor.`, ""), "Destinations.")
	days := list(js{"enum": weekdays}, "Days of the week (default: every day).")
	hours := obj(keysHours, js{
		"from": str("Start, HH:MM (24-hour clock), inclusive.", patClock),
		"to":   str("End, HH:MM, exclusive; before from means the window wraps past midnight.", patClock),
		"days": days,
		"zone": str(`IANA time zone, e.g. "Europe/Berlin" (default: the policy's timezone).`, ""),
	}, "from", "to")
	hours["description"] = "Time-of-day window."
	pubkey := str("Nostr pubkey: npub1… or 64 hex characters.", patPubKey)
	s := obj(keysTop, js{
		"version":      js{"const": 1, "description": "Policy language version."},
		"timezone":     str(`Default IANA time zone of time-of-day windows (default UTC).`, ""),
		"loosen_delay": js{"anyOf": []any{duration("A change that loosens this policy applies alone only after this delay; tightening applies at once."), js{"const": 0}}},
		"clients": list(exactlyOne(obj(keysClient, js{
			"name":       str("Name used in rules and logs.", ""),
			"pubkey":     pubkey,
			"channel":    js{"enum": channels, "description": "Instead of pubkey: a channel whose senders are unauthenticated (electrum_nostr: Electrum's \"Send to cosigner\"; docs/electrum-cosigning.md)."},
			"methods":    list(js{"enum": knownMethods}, "Methods it may call (default: all policy-gated methods; a channel: sign_psbt only)."),
			"rate_limit": str(`Requests per rolling window: "20/1h".`, patRate),
		}), "pubkey", "channel"), "NIP-46 clients (pubkey) and channels (channel) allowed to ask."),
		"approvers": list(obj(keysApprover, js{"name": str("Name used in hold rules.", ""), "pubkey": pubkey}, "name", "pubkey"),
			"People who may approve held requests with the approve method."),
		"descriptors": js{"type": "object", "description": "Named output descriptors (e.g. a cold vault) for destination lists.",
			"additionalProperties": obj(keysDescriptor, js{
				"descriptor": str("Output descriptor with #checksum.", ""),
				"lookahead":  js{"type": "integer", "minimum": 1, "maximum": MaxLookahead, "description": "Scripts per branch matched (default 100)."},
			}, "descriptor")},
		"limits": obj(keysLimits, js{
			"max_per_tx": amount("Per-transaction cap on outflow (inputs − change, fee included)."),
			"velocity": list(obj(keysWindow, js{"window": duration("Rolling window length."), "max": amount("Most outflow in any such window.")}, "window", "max"),
				"Rolling-window limits counted in the spend ledger."),
			"max_fee":           amount("Absolute fee cap."),
			"max_feerate":       str(`Feerate cap: "100 sat/vB".`, patFeeRate),
			"max_fee_share":     str(`Fee cap as a share of outflow: "2%".`, patShare),
			"min_confirmations": confs,
			"hours":             hours,
			"destinations":      obj(keysDest, js{"allow": dest, "deny": dest}),
			"release_after":     duration("Deprecated and ignored: a signed transaction counts in the velocity windows until it confirms (then at its confirmation time) or one of its inputs is spent by another confirmed transaction; time alone never releases it."),
			"allow_sighash": js{"type": "array", "uniqueItems": true, "items": js{"enum": SighashNames()},
				"description": "Sighash types signed besides ALL (and DEFAULT on taproot); NONE, SINGLE and ANYONECANPAY let others change what is signed."},
			"deny_warnings": js{"type": "array", "uniqueItems": true, "items": js{"enum": WarningCodes},
				"description": "PSBT analysis warnings that refuse a request."},
		}, "max_per_tx"),
		"automations": list(automationSchema(amount, duration), "Transactions this co-signer builds itself on chain events; each goes through the limits and rules above like any request (client name \"automation:NAME\")."),
		"rules": list(obj(keysRule, js{
			"name":   str("Rule name (a word; appears in decisions and error codes).", `^[^:\s]+$`),
			"reason": str("Words for people, shown in decisions.", ""),
			"action": js{"enum": []string{"allow", "deny", "hold"}},
			"match": obj(keysMatch, js{
				"clients":           list(str("Client name.", ""), "The request comes from one of these clients."),
				"min_outflow":       amount("Outflow at least this."),
				"max_outflow":       amount("Outflow at most this."),
				"destinations":      dest,
				"max_fee":           amount("Fee at most this."),
				"max_feerate":       str(`Feerate at most this: "20 sat/vB".`, patFeeRate),
				"max_fee_share":     str(`Fee share of outflow at most this: "1%".`, patShare),
				"min_confirmations": confs,
				"hours":             hours,
				"rbf":               js{"type": "boolean", "description": "The transaction signals RBF (BIP-125) or not."},
				"warnings": js{"type": "array", "uniqueItems": true, "items": js{"enum": WarningCodes},
					"description": "The PSBT analysis raised at least one of these warnings."},
				"script_types": js{"type": "array", "uniqueItems": true, "items": js{"enum": ScriptTypes},
					"description": "The wallet's script type is one of these."},
				"locktime": js{"type": "array", "uniqueItems": true, "items": js{"enum": LockTimeKinds},
					"description": "The transaction's nLockTime kind is one of these: none, height, time (BIP-65)."},
				"psbt_version": js{"enum": []int{0, 2}, "description": "The request's PSBT version: 0 (BIP-174) or 2 (BIP-370)."},
			}),
			"hold": obj(keysHold, js{
				"cooling_off": duration("Delay before a held request can be signed (cancellable)."),
				"approvals":   js{"type": "integer", "minimum": 1, "maximum": 100, "description": "Approvals required (M of the named approvers)."},
				"approvers":   list(str("Approver name.", ""), "Approvers who may approve."),
			}),
		}, "action"), "First-match rules under the global limits."),
	}, "version", "clients", "limits")
	s["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	s["$id"] = SchemaID
	s["title"] = "cosigner policy"
	b, _ := json.MarshalIndent(s, "", "  ")
	return append(b, '\n')
}

// exactlyOne makes o require exactly one of keys (a client's pubkey or channel).
func exactlyOne(o js, keys ...string) js {
	var alts []any
	for _, k := range keys {
		alts = append(alts, js{"required": []string{k}})
	}
	o["oneOf"] = alts
	return o
}

// oneOf is an object with exactly one of keys (a trigger, an action).
func oneOf(keys []string, props js, desc string) js {
	o := obj(keys, props)
	o["minProperties"], o["maxProperties"] = 1, 1
	o["description"] = desc
	return o
}

func automationSchema(amount, duration func(string) js) js {
	feeRate := func(d string) js { return str(d+` Feerate: "5 sat/vB" (at least 1 sat/vB).`, patFeeRate) }
	dest := str(`An address of the wallet's network, or "descriptor:NAME" for a named descriptor (e.g. a cold vault).`, "")
	a := obj(keysAutomation, js{
		"name": str("Automation name (stored with every proposal; rules match its PSBTs as client automation:NAME).", `^[a-z0-9_-]{1,64}$`),
		"trigger": oneOf(keysTrigger, js{
			"funding_seen":      js{"const": true, "description": "Fire when a deposit to the wallet is first seen (mempool or block)."},
			"funding_confirmed": js{"type": "integer", "minimum": 1, "maximum": maxAutomationConfs, "description": "Fire when a deposit has this many confirmations."},
			"balance_above":     amount("Fire when the confirmed balance rises above this (once per crossing)."),
			"schedule":          duration("Fire once per period (at least 1m; periods aligned to the Unix epoch, UTC)."),
		}, "Exactly one trigger."),
		"action": oneOf(keysAction, js{
			"sweep": obj(keysSweep, js{
				"to":      dest,
				"reserve": amount("Kept in the wallet as change (default 0: sweep everything)."),
			}, "to"),
			"forward": obj(keysForward, js{"to": dest}, "to"),
			"consolidate": obj(keysConsolidate, js{
				"below":       amount("Consolidate UTXOs smaller than this."),
				"min_inputs":  js{"type": "integer", "minimum": 2, "maximum": MaxConsolidateInputs, "description": "Only when at least this many such UTXOs exist (default 2)."},
				"max_feerate": feeRate("Only while the feerate is at most this."),
			}, "below", "max_feerate"),
		}, "Exactly one action: sweep (all confirmed coins less a reserve), forward (the deposit that fired a funding trigger), consolidate (small UTXOs back to the wallet)."),
		"fee": obj(keysFee, js{
			"target_blocks": js{"type": "integer", "minimum": 1, "maximum": MaxTargetBlocks, "description": "Confirmation target for blockchain.estimatefee (default 6)."},
			"max_feerate":   feeRate("Never pay more (default: limits.max_feerate, else 100 sat/vB; at most limits.max_feerate)."),
			"fallback":      feeRate("Used when the server has no estimate (default 2 sat/vB; at most max_feerate)."),
		}),
		"cosigners": js{"type": "array", "minItems": 1, "maxItems": MaxCosigners, "uniqueItems": true,
			"items":       str("The other co-signer's bunker URI (`cosigner bunker-uri` on it): bunker://<64-hex pubkey>?relay=wss://…&secret=….", `^\s*bunker:(//)?[0-9a-f]{64}/?\?`),
			"description": "Co-signers to ask with sign_psbt (NIP-46), in parallel."},
		"signatures": js{"type": "integer", "minimum": 2, "maximum": maxSignatures, "description": "Signatures needed, this co-signer's included (default: the wallet's threshold)."},
		"timeout":    duration("How long to wait for one co-signer's answer before asking again (default 10m, at least 10s)."),
		"bump_after": js{"type": "integer", "minimum": 0, "maximum": MaxBumpAfter, "description": "Blocks unconfirmed before an RBF fee bump (default 6; 0: never)."},
	}, "name", "trigger", "action", "cosigners")
	a["description"] = "One automation."
	// forward spends the deposit that fired the trigger: only with a funding trigger.
	a["if"] = js{"required": []string{"action"}, "properties": js{"action": js{"required": []string{"forward"}}}}
	a["then"] = js{"properties": js{"trigger": js{"anyOf": []any{
		js{"required": []string{"funding_seen"}}, js{"required": []string{"funding_confirmed"}}}}}}
	return a
}
