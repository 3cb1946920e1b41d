package policy

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/btcsuite/btcd/txscript"
	"gopkg.in/yaml.v3"
)

// WarningCodes are the PSBT analysis's warning codes (psbt.Warn*, psbt/analyze.go) that
// limits.deny_warnings and a rule's match.warnings may name.
var WarningCodes = []string{
	"op_return_output",    // an OP_RETURN output (value burned if non-zero)
	"nonstandard_output",  // an output script of no standard type
	"pays_receive_branch", // pays one of the wallet's own receive scripts (counted as spend)
	"foreign_path",        // a BIP32 derivation of our fingerprint outside the descriptor's paths
	"locktime_future",     // nLockTime is a height above the next block
	"locktime",            // nLockTime is enforced (some input not final)
	"relative_locktime",   // an input's nSequence sets a BIP-68 relative lock
	"taproot_key_path",    // the tr() internal key can spend without the multisig
	"tx_version",          // a transaction version other than 1 or 2
}

// ScriptTypes are the wallet output types a rule's match.script_types may name
// (descriptor.ScriptType values).
var ScriptTypes = []string{"p2wsh", "p2sh-p2wsh", "p2tr"}

// LockTimeKinds are the nLockTime kinds a rule's match.locktime may name: "none" (0, or not
// enforced because every input is final), "height" or "time" (BIP-65 threshold 500,000,000).
var LockTimeKinds = []string{"none", "height", "time"}

// sighashNames are the sighash types limits.allow_sighash may name (BIP-143 / BIP-341 values).
// ALL, and DEFAULT on taproot, are always signed; listing them changes nothing.
var sighashNames = map[string]txscript.SigHashType{
	"DEFAULT":             txscript.SigHashDefault,
	"ALL":                 txscript.SigHashAll,
	"NONE":                txscript.SigHashNone,
	"SINGLE":              txscript.SigHashSingle,
	"ALL|ANYONECANPAY":    txscript.SigHashAll | txscript.SigHashAnyOneCanPay,
	"NONE|ANYONECANPAY":   txscript.SigHashNone | txscript.SigHashAnyOneCanPay,
	"SINGLE|ANYONECANPAY": txscript.SigHashSingle | txscript.SigHashAnyOneCanPay,
}

// SighashNames lists the names limits.allow_sighash accepts, sorted.
func SighashNames() []string {
	out := make([]string, 0, len(sighashNames))
	for k := range sighashNames {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// SighashName is the name of a sighash type ("ALL", "SINGLE|ANYONECANPAY", …), or its hex value
// for a type of no name.
func SighashName(h uint32) string {
	for k, v := range sighashNames {
		if uint32(v) == h {
			return k
		}
	}
	return fmt.Sprintf("%#x", h)
}

// AllowSighash returns the sighash types besides ALL (and DEFAULT on taproot) that every policy
// in force at now allows (limits.allow_sighash; the intersection while a loosening change
// waits), for psbt.AnalyzeOptions.AllowSighash. Empty means only ALL / DEFAULT.
func (p *Policy) AllowSighash(now time.Time) []txscript.SigHashType {
	stages := p.stages(now)
	var out []txscript.SigHashType
	for _, h := range stages[0].Limits.AllowSighash {
		if h == txscript.SigHashAll || h == txscript.SigHashDefault {
			continue
		}
		all := true
		for _, s := range stages[1:] {
			all = all && slices.Contains(s.Limits.AllowSighash, h)
		}
		if all {
			out = append(out, h)
		}
	}
	return out
}

func sighashOK(allowed []txscript.SigHashType, h uint32) bool {
	return h == uint32(txscript.SigHashDefault) || h == uint32(txscript.SigHashAll) || slices.Contains(allowed, txscript.SigHashType(h))
}

// sighashCheck: every input is signed with ALL, DEFAULT or an allowed type (the analysis already
// refuses others; this shows the opt-in in the explanation and guards against a caller that
// analysed with more options than the policy allows).
func sighashCheck(name string, allowed []txscript.SigHashType) check {
	names := make([]string, len(allowed))
	for i, h := range allowed {
		names[i] = SighashName(uint32(h))
	}
	list := strings.Join(append([]string{"ALL", "DEFAULT"}, names...), ", ")
	return check{name, func(in *Input) bool {
		for _, f := range in.Inputs {
			if !sighashOK(allowed, f.SighashType) {
				return false
			}
		}
		return true
	}, func(in *Input) (bool, string) {
		var used []string
		for i, f := range in.Inputs {
			if !sighashOK(allowed, f.SighashType) {
				return false, fmt.Sprintf("input %d asks for sighash %s; allowed: %s", i, SighashName(f.SighashType), list)
			}
			if n := SighashName(f.SighashType); !slices.Contains(used, n) {
				used = append(used, n)
			}
		}
		return true, fmt.Sprintf("sighash %s; allowed: %s", strings.Join(used, ", "), list)
	}}
}

// present returns the codes of ws that are in in.Warnings, in ws's order.
func present(in *Input, ws []string) []string {
	var out []string
	for _, w := range ws {
		if slices.Contains(in.Warnings, w) {
			out = append(out, w)
		}
	}
	return out
}

// denyWarnings fails when the analysis raised any of ws.
func denyWarnings(name string, ws []string) check {
	return check{name, func(in *Input) bool { return len(present(in, ws)) == 0 }, func(in *Input) (bool, string) {
		if got := present(in, ws); len(got) > 0 {
			return false, fmt.Sprintf("the analysis warns %s, which the policy refuses", strings.Join(got, ", "))
		}
		return true, fmt.Sprintf("none of the warnings %s", strings.Join(ws, ", "))
	}}
}

// matchWarnings holds when the analysis raised at least one of ws.
func matchWarnings(name string, ws []string) check {
	return check{name, func(in *Input) bool { return len(present(in, ws)) > 0 }, func(in *Input) (bool, string) {
		if got := present(in, ws); len(got) > 0 {
			return true, "the analysis warns " + strings.Join(got, ", ")
		}
		return false, fmt.Sprintf("none of the warnings %s", strings.Join(ws, ", "))
	}}
}

func matchScriptTypes(name string, ts []string) check {
	return check{name, func(in *Input) bool { return slices.Contains(ts, in.ScriptType) }, func(in *Input) (bool, string) {
		if !slices.Contains(ts, in.ScriptType) {
			return false, fmt.Sprintf("script type %s is not one of %s", in.ScriptType, strings.Join(ts, ", "))
		}
		return true, "script type " + in.ScriptType
	}}
}

func matchLockTime(name string, kinds []string) check {
	return check{name, func(in *Input) bool { return slices.Contains(kinds, in.LockTimeKind) }, func(in *Input) (bool, string) {
		if !slices.Contains(kinds, in.LockTimeKind) {
			return false, fmt.Sprintf("locktime kind %s (nLockTime %d) is not one of %s", in.LockTimeKind, in.LockTime, strings.Join(kinds, ", "))
		}
		return true, fmt.Sprintf("locktime kind %s", in.LockTimeKind)
	}}
}

func matchPSBTVersion(name string, v uint32) check {
	return check{name, func(in *Input) bool { return in.PSBTVersion == v }, func(in *Input) (bool, string) {
		if in.PSBTVersion != v {
			return false, fmt.Sprintf("PSBT version %d, not %d", in.PSBTVersion, v)
		}
		return true, fmt.Sprintf("PSBT version %d", v)
	}}
}

// enumList reads a list of names from allowed (each unknown one is an error with a hint), without
// duplicates.
func (v *validator) enumList(n *yaml.Node, what, example string, allowed []string) []string {
	var out []string
	for _, item := range v.list(n, what, example) {
		if item.Kind != yaml.ScalarNode || !slices.Contains(allowed, item.Value) {
			hint := suggest(item.Value, allowed)
			if hint == "" {
				hint = "; one of " + strings.Join(allowed, ", ")
			}
			v.errorf(item, "unknown %s %q%s", what, item.Value, hint)
			continue
		}
		if slices.Contains(out, item.Value) {
			v.errorf(item, "%s %q is listed twice", what, item.Value)
			continue
		}
		out = append(out, item.Value)
	}
	return out
}
