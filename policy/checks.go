package policy

import (
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"gopkg.in/yaml.v3"
)

// Checks shared by the global limits (limits:) and the rules' match conditions (match:). Each is
// compiled once at load time into a check; Evaluate only runs them.

func capOutflow(name string, cap btcutil.Amount) check {
	return check{name, func(in *Input) bool { return in.Outflow <= cap }, func(in *Input) (bool, string) {
		if in.Outflow > cap {
			return false, fmt.Sprintf("outflow %s (fee included) is over %s", in.Outflow, cap)
		}
		return true, fmt.Sprintf("outflow %s ≤ %s", in.Outflow, cap)
	}}
}

func minOutflow(name string, floor btcutil.Amount) check {
	return check{name, func(in *Input) bool { return in.Outflow >= floor }, func(in *Input) (bool, string) {
		if in.Outflow < floor {
			return false, fmt.Sprintf("outflow %s is under %s", in.Outflow, floor)
		}
		return true, fmt.Sprintf("outflow %s ≥ %s", in.Outflow, floor)
	}}
}

func velocity(w Window) check {
	return check{w.Name(), func(in *Input) bool { return in.Spent[w.Window]+in.Outflow <= w.Max }, func(in *Input) (bool, string) {
		spent := in.Spent[w.Window]
		if total := spent + in.Outflow; total > w.Max {
			return false, fmt.Sprintf("%s already counted in the last %s (signed and outstanding, or confirmed); with this outflow of %s it would be %s, over the limit of %s",
				spent, FormatDuration(w.Window), in.Outflow, total, w.Max)
		}
		return true, fmt.Sprintf("%s spent in the last %s + %s ≤ %s", spent, FormatDuration(w.Window), in.Outflow, w.Max)
	}}
}

func capFee(name string, cap btcutil.Amount) check {
	return check{name, func(in *Input) bool { return in.Fee <= cap }, func(in *Input) (bool, string) {
		if in.Fee > cap {
			return false, fmt.Sprintf("fee %s is over %s", in.Fee, cap)
		}
		return true, fmt.Sprintf("fee %s ≤ %s", in.Fee, cap)
	}}
}

func capFeeRate(name string, cap FeeRate) check {
	return check{name, func(in *Input) bool { return in.FeeRate <= cap }, func(in *Input) (bool, string) {
		if in.FeeRate > cap {
			return false, fmt.Sprintf("feerate %.2f sat/vB is over %g sat/vB", float64(in.FeeRate), float64(cap))
		}
		return true, fmt.Sprintf("feerate %.2f sat/vB ≤ %g sat/vB", float64(in.FeeRate), float64(cap))
	}}
}

func feeShareOK(in *Input, cap Share) bool {
	// fee / outflow ≤ cap / 1e6, exactly: fee × 1e6 ≤ cap × outflow.
	lhs := new(big.Int).Mul(big.NewInt(int64(in.Fee)), big.NewInt(1_000_000))
	rhs := new(big.Int).Mul(big.NewInt(int64(cap)), big.NewInt(int64(in.Outflow)))
	return lhs.Cmp(rhs) <= 0
}

func capFeeShare(name string, cap Share) check {
	return check{name, func(in *Input) bool { return feeShareOK(in, cap) }, func(in *Input) (bool, string) {
		share := "n/a"
		if in.Outflow > 0 {
			share = fmt.Sprintf("%.4g%%", float64(in.Fee)*100/float64(in.Outflow))
		}
		if !feeShareOK(in, cap) {
			return false, fmt.Sprintf("fee %s is %s of the outflow %s, over %s", in.Fee, share, in.Outflow, cap)
		}
		return true, fmt.Sprintf("fee share %s ≤ %s", share, cap)
	}}
}

func minConfs(name string, n int32) check {
	return check{name, func(in *Input) bool {
		for _, f := range in.Inputs {
			if f.Confirmations < n {
				return false
			}
		}
		return true
	}, func(in *Input) (bool, string) {
		for i, f := range in.Inputs {
			if f.Confirmations < n {
				return false, fmt.Sprintf("input %d (%s) has %d confirmation(s), fewer than %d", i, f.OutPoint, f.Confirmations, n)
			}
		}
		return true, fmt.Sprintf("every input has ≥ %d confirmation(s)", n)
	}}
}

func inHours(name string, h *Hours) check {
	return check{name, func(in *Input) bool { return h.Contains(in.Now) }, func(in *Input) (bool, string) {
		at := in.Now.In(h.Zone).Format("Mon 15:04 MST")
		if !h.Contains(in.Now) {
			return false, fmt.Sprintf("%s is outside %s", at, h)
		}
		return true, fmt.Sprintf("%s is inside %s", at, h)
	}}
}

func denyDests(name string, ds []Destination) check {
	return check{name, func(in *Input) bool {
		for _, o := range in.Outputs {
			for _, d := range ds {
				if d.Matches(o.PkScript) {
					return false
				}
			}
		}
		return true
	}, func(in *Input) (bool, string) {
		for _, o := range in.Outputs {
			for _, d := range ds {
				if d.Matches(o.PkScript) {
					return false, fmt.Sprintf("output %d (%s) pays denied destination %s", o.Index, o.Address, d.Text)
				}
			}
		}
		return true, fmt.Sprintf("no output pays any of %d denied destination(s)", len(ds))
	}}
}

// allowDests: every output that is not change must pay one of ds.
func allowDests(name string, ds []Destination) check {
	return check{name, func(in *Input) bool {
		for _, o := range in.Outputs {
			if o.Kind != "change" && !slices.ContainsFunc(ds, func(d Destination) bool { return d.Matches(o.PkScript) }) {
				return false
			}
		}
		return true
	}, func(in *Input) (bool, string) {
		n := 0
		for _, o := range in.Outputs {
			if o.Kind == "change" {
				continue
			}
			n++
			if !slices.ContainsFunc(ds, func(d Destination) bool { return d.Matches(o.PkScript) }) {
				what := o.Address
				if what == "" {
					what = o.Kind + " output"
				}
				return false, fmt.Sprintf("output %d (%s) pays a destination not in the list", o.Index, what)
			}
		}
		return true, fmt.Sprintf("all %d spend output(s) pay listed destinations", n)
	}}
}

func limitChecks(l *Limits) []check {
	cs := []check{capOutflow(RuleMaxPerTx, l.MaxPerTx)}
	for _, w := range l.Velocity {
		cs = append(cs, velocity(w))
	}
	if l.MaxFee.Set {
		cs = append(cs, capFee(RuleMaxFee, l.MaxFee.V))
	}
	if l.MaxFeeRate.Set {
		cs = append(cs, capFeeRate(RuleMaxFeeRate, l.MaxFeeRate.V))
	}
	if l.MaxFeeShare.Set {
		cs = append(cs, capFeeShare(RuleMaxFeeShare, l.MaxFeeShare.V))
	}
	if l.MinConfirmations.Set {
		cs = append(cs, minConfs(RuleMinConfs, l.MinConfirmations.V))
	}
	if l.Hours != nil {
		cs = append(cs, inHours(RuleHours, l.Hours))
	}
	if len(l.Deny) > 0 {
		cs = append(cs, denyDests(RuleDenylist, l.Deny))
	}
	if l.Allow.Set {
		cs = append(cs, allowDests(RuleAllowlist, l.Allow.V))
	}
	if l.allowSighashSet {
		var extra []txscript.SigHashType
		for _, h := range l.AllowSighash {
			if h != txscript.SigHashAll && h != txscript.SigHashDefault {
				extra = append(extra, h)
			}
		}
		cs = append(cs, sighashCheck(RuleSighash, extra))
	}
	if len(l.DenyWarnings) > 0 {
		cs = append(cs, denyWarnings(RuleWarnings, l.DenyWarnings))
	}
	return cs
}

// match compiles a rule's match: mapping into its conditions, in a fixed order, and returns its
// time-of-day window (match.hours, nil when absent) for NextChange.
func (v *validator) match(n *yaml.Node) (cs []check, hours *Hours) {
	m := v.mapping(n, "match", keysMatch)
	if m == nil {
		return nil, nil
	}
	if cn, ok := m["clients"]; ok {
		var pks, names []string
		for _, item := range v.list(cn, "clients", "[coordinator]") {
			if pk, ok := v.clientByName(item); ok {
				pks, names = append(pks, pk), append(names, item.Value)
			}
		}
		cs = append(cs, check{"clients", func(in *Input) bool { return slices.Contains(pks, in.Client) }, func(in *Input) (bool, string) {
			if !slices.Contains(pks, in.Client) {
				return false, fmt.Sprintf("client is not one of %s", strings.Join(names, ", "))
			}
			return true, "client is one of " + strings.Join(names, ", ")
		}})
	}
	minO, maxO := v.optAmount(m, "min_outflow"), v.optAmount(m, "max_outflow")
	if minO.Set && maxO.Set && minO.V > maxO.V {
		v.errorf(m["min_outflow"], "min_outflow %s is above max_outflow %s: the rule can never match", minO.V, maxO.V)
	}
	if minO.Set {
		cs = append(cs, minOutflow("min_outflow", minO.V))
	}
	if maxO.Set {
		cs = append(cs, capOutflow("max_outflow", maxO.V))
	}
	if dn, ok := m["destinations"]; ok {
		cs = append(cs, allowDests("destinations", v.destinations(dn, "destinations")))
	}
	if f := v.optAmount(m, "max_fee"); f.Set {
		cs = append(cs, capFee("max_fee", f.V))
	}
	if f := v.optFeeRate(m, "max_feerate"); f.Set {
		cs = append(cs, capFeeRate("max_feerate", f.V))
	}
	if f := v.optShare(m, "max_fee_share"); f.Set {
		cs = append(cs, capFeeShare("max_fee_share", f.V))
	}
	if c := v.optConfs(m, "min_confirmations"); c.Set {
		cs = append(cs, minConfs("min_confirmations", c.V))
	}
	if hn, ok := m["hours"]; ok {
		if h := v.hours(hn); h != nil {
			cs, hours = append(cs, inHours("hours", h)), h
		}
	}
	if wn, ok := m["warnings"]; ok {
		if ws := v.enumList(wn, "warning", "[op_return_output]", WarningCodes); len(ws) > 0 {
			cs = append(cs, matchWarnings("warnings", ws))
		}
	}
	if tn, ok := m["script_types"]; ok {
		if ts := v.enumList(tn, "script type", "[p2tr]", ScriptTypes); len(ts) > 0 {
			cs = append(cs, matchScriptTypes("script_types", ts))
		}
	}
	if ln, ok := m["locktime"]; ok {
		if ks := v.enumList(ln, "locktime kind", "[none, height]", LockTimeKinds); len(ks) > 0 {
			cs = append(cs, matchLockTime("locktime", ks))
		}
	}
	if pn, ok := m["psbt_version"]; ok {
		if pn.Value != "0" && pn.Value != "2" || pn.Kind != yaml.ScalarNode {
			v.errorf(pn, "psbt_version must be 0 (BIP-174) or 2 (BIP-370)")
		} else {
			ver := uint32(pn.Value[0] - '0')
			cs = append(cs, matchPSBTVersion("psbt_version", ver))
		}
	}
	if rn, ok := m["rbf"]; ok {
		if rn.Value != "true" && rn.Value != "false" {
			v.errorf(rn, "rbf must be true or false")
		} else {
			want := rn.Value == "true"
			cs = append(cs, check{"rbf", func(in *Input) bool { return in.RBF == want }, func(in *Input) (bool, string) {
				if in.RBF != want {
					return false, fmt.Sprintf("RBF signalled is %v, not %v", in.RBF, want)
				}
				return true, fmt.Sprintf("RBF signalled is %v", in.RBF)
			}})
		}
	}
	return cs, hours
}
