package policy

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // time zones work in minimal containers too

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
	"gopkg.in/yaml.v3"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/nip46"
)

// The keys each mapping of the language accepts; the JSON Schema is built from the same lists.
var (
	keysTop        = []string{"version", "timezone", "loosen_delay", "clients", "approvers", "descriptors", "limits", "automations", "rules"}
	keysClient     = []string{"name", "pubkey", "channel", "methods", "rate_limit"}
	keysApprover   = []string{"name", "pubkey"}
	keysDescriptor = []string{"descriptor", "lookahead"}
	keysLimits     = []string{"max_per_tx", "velocity", "max_fee", "max_feerate", "max_fee_share", "min_confirmations", "hours", "destinations", "release_after", "allow_sighash", "deny_warnings"}
	keysWindow     = []string{"window", "max"}
	keysDest       = []string{"allow", "deny"}
	keysHours      = []string{"from", "to", "days", "zone"}
	keysRule       = []string{"name", "match", "action", "hold", "reason"}
	keysMatch      = []string{"clients", "min_outflow", "max_outflow", "destinations", "max_fee", "max_feerate", "max_fee_share", "min_confirmations", "hours", "rbf", "warnings", "script_types", "psbt_version", "locktime"}
	keysHold       = []string{"cooling_off", "approvals", "approvers"}
)

// Methods a policy may grant to clients (NIP-46 extension methods gated by the policy).
var knownMethods = []string{"sign_psbt", "psbt_status", "get_wallet"}

var weekdays = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// Parse validates a policy document. name is used in error messages. Every problem is
// reported (an Errors value, file order) with its line and column and a hint.
func Parse(name string, data []byte, opts ...Option) (*Policy, error) {
	var o parseOptions
	for _, opt := range opts {
		opt(&o)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(name, err, data)
	}
	v := &validator{file: name, opts: o}
	p := v.document(&root)
	if len(v.errs) > 0 {
		slices.SortStableFunc(v.errs, func(a, b *Error) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Column - b.Column
		})
		return nil, v.errs
	}
	p.Name, p.Hash = name, HashBytes(data)
	return p, nil
}

type validator struct {
	file string
	opts parseOptions
	errs Errors
	p    *Policy
	// autoNames are the automation names in the file, also of automations with errors (so that
	// a rule naming one is not reported as well).
	autoNames map[string]bool
}

func (v *validator) errorf(n *yaml.Node, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// mapping checks n is a mapping with only the allowed keys and returns key → value nodes.
func (v *validator) mapping(n *yaml.Node, what string, allowed []string) map[string]*yaml.Node {
	if n.Kind == yaml.AliasNode {
		v.errorf(n, "YAML aliases are not allowed in a policy (write it out)")
		return nil
	}
	if n.Kind != yaml.MappingNode {
		v.errorf(n, "%s must be a mapping (key: value lines)", what)
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			v.errorf(k, "unknown key %q in %s%s (allowed: %s)", k.Value, what, suggest(k.Value, allowed), strings.Join(allowed, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			v.errorf(k, "key %q appears twice in %s", k.Value, what)
			continue
		}
		if val.Kind == yaml.AliasNode {
			v.errorf(val, "YAML aliases are not allowed in a policy (write it out)")
			continue
		}
		out[k.Value] = val
	}
	return out
}

// suggest returns `; did you mean "x"?` for a close allowed key.
func suggest(got string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		if d := editDistance(got, a); d < bestD {
			best, bestD = a, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+c)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (v *validator) scalar(n *yaml.Node, what, example string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		v.errorf(n, "%s must be a single value, e.g. %s", what, example)
		return "", false
	}
	return n.Value, true
}

func (v *validator) amount(n *yaml.Node, what string) (btcutil.Amount, bool) {
	s, ok := v.scalar(n, what, `"0.5 BTC" or "50000 sat"`)
	if !ok {
		return 0, false
	}
	a, err := ParseAmount(s)
	if err != nil {
		v.errorf(n, "%s: %v", what, err)
		return 0, false
	}
	return a, true
}

func (v *validator) optAmount(m map[string]*yaml.Node, key string) Opt[btcutil.Amount] {
	if n, ok := m[key]; ok {
		if a, ok := v.amount(n, key); ok {
			return Opt[btcutil.Amount]{V: a, Set: true}
		}
	}
	return Opt[btcutil.Amount]{}
}

func (v *validator) optFeeRate(m map[string]*yaml.Node, key string) Opt[FeeRate] {
	if n, ok := m[key]; ok {
		if s, ok := v.scalar(n, key, `"50 sat/vB"`); ok {
			f, err := ParseFeeRate(s)
			if err != nil {
				v.errorf(n, "%s: %v", key, err)
			} else {
				return Opt[FeeRate]{V: f, Set: true}
			}
		}
	}
	return Opt[FeeRate]{}
}

func (v *validator) optShare(m map[string]*yaml.Node, key string) Opt[Share] {
	if n, ok := m[key]; ok {
		if s, ok := v.scalar(n, key, `"2%"`); ok {
			f, err := ParseShare(s)
			if err != nil {
				v.errorf(n, "%s: %v", key, err)
			} else {
				return Opt[Share]{V: f, Set: true}
			}
		}
	}
	return Opt[Share]{}
}

func (v *validator) optConfs(m map[string]*yaml.Node, key string) Opt[int32] {
	if n, ok := m[key]; ok {
		if s, ok := v.scalar(n, key, "1"); ok {
			c, err := strconv.ParseInt(s, 10, 32)
			if err != nil || c < 0 || c > 10_000 {
				v.errorf(n, "%s must be a whole number of blocks from 0 to 10000, got %q", key, s)
			} else {
				return Opt[int32]{V: int32(c), Set: true}
			}
		}
	}
	return Opt[int32]{}
}

func (v *validator) duration(n *yaml.Node, what string) (time.Duration, bool) {
	s, ok := v.scalar(n, what, `"24h" or "7d"`)
	if !ok {
		return 0, false
	}
	d, err := ParseDuration(s)
	if err != nil {
		v.errorf(n, "%s: %v", what, err)
		return 0, false
	}
	return d, true
}

func (v *validator) list(n *yaml.Node, what, example string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		v.errorf(n, "%s must be a list, e.g. %s", what, example)
		return nil
	}
	return n.Content
}

func (v *validator) document(root *yaml.Node) *Policy {
	p := &Policy{Zone: time.UTC, Descriptors: map[string]*NamedDescriptor{}}
	v.p = p
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		v.errs = append(v.errs, &Error{File: v.file, Line: 1, Column: 1, Msg: "empty policy: it needs version, clients and limits"})
		return p
	}
	doc := root.Content[0]
	top := v.mapping(doc, "the policy", keysTop)
	if top == nil {
		return p
	}
	if n, ok := top["version"]; !ok {
		v.errorf(doc, "missing key \"version\" (this cosigner reads version: 1)")
	} else if n.Kind != yaml.ScalarNode || n.Value != "1" {
		v.errorf(n, "version must be 1, got %q", n.Value)
	} else {
		p.Version = 1
	}
	if n, ok := top["timezone"]; ok {
		if s, ok := v.scalar(n, "timezone", "Europe/Berlin"); ok {
			if z, err := loadZone(s); err != nil {
				v.errorf(n, "timezone: %v", err)
			} else {
				p.Zone = z
			}
		}
	}
	if n, ok := top["loosen_delay"]; ok {
		if n.Kind == yaml.ScalarNode && n.Value == "0" {
			p.LoosenDelay = 0
		} else if d, ok := v.duration(n, "loosen_delay"); ok {
			p.LoosenDelay = d
		}
	}
	if n, ok := top["clients"]; !ok {
		v.errorf(doc, "missing key \"clients\": list the Nostr pubkeys allowed to ask for signatures")
	} else {
		p.Clients = v.clients(n)
	}
	if n, ok := top["approvers"]; ok {
		p.Approvers = v.approvers(n)
	}
	if n, ok := top["descriptors"]; ok {
		v.descriptors(n)
	}
	if n, ok := top["limits"]; !ok {
		v.errorf(doc, "missing key \"limits\" (with max_per_tx)")
	} else {
		v.limits(n)
	}
	if n, ok := top["automations"]; ok {
		v.automations(n)
	}
	if n, ok := top["rules"]; ok {
		v.rules(n)
	}
	return p
}

func loadZone(s string) (*time.Location, error) {
	if s == "" || strings.EqualFold(s, "local") {
		return nil, fmt.Errorf("name an IANA time zone such as \"Europe/Berlin\" or \"UTC\" (the machine's local zone is not allowed)")
	}
	z, err := time.LoadLocation(s)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q (use an IANA name such as \"Europe/Berlin\")", s)
	}
	return z, nil
}

func parsePubKey(s string) (string, error) { return nip46.ParsePubKey(s) }

func (v *validator) clients(n *yaml.Node) []Client {
	var out []Client
	seen := map[string]bool{}
	names := map[string]bool{}
	for _, item := range v.list(n, "clients", "[{name: coordinator, pubkey: npub1…}]") {
		m := v.mapping(item, "a client", keysClient)
		if m == nil {
			continue
		}
		c := Client{}
		if nm, ok := m["name"]; ok {
			c.Name, _ = v.scalar(nm, "name", "coordinator")
			if names[c.Name] {
				v.errorf(nm, "client name %q used twice", c.Name)
			}
			names[c.Name] = true
		}
		hexpk, ok := v.clientID(item, m)
		if !ok {
			continue
		}
		if seen[hexpk] {
			if _, isChannel := m["channel"]; isChannel {
				v.errorf(m["channel"], "channel %s listed twice", hexpk)
			} else {
				v.errorf(m["pubkey"], "client pubkey listed twice")
			}
			continue
		}
		seen[hexpk] = true
		c.PubKey = hexpk
		if ms, ok := m["methods"]; ok {
			for _, mn := range v.list(ms, "methods", "[sign_psbt]") {
				if !slices.Contains(knownMethods, mn.Value) {
					v.errorf(mn, "unknown method %q (known: %s)", mn.Value, strings.Join(knownMethods, ", "))
					continue
				}
				if IsChannel(hexpk) && mn.Value != "sign_psbt" {
					v.errorf(mn, "channel %s can only ask for signatures (methods: [sign_psbt])", hexpk)
					continue
				}
				c.Methods = append(c.Methods, mn.Value)
			}
		}
		if IsChannel(hexpk) && len(c.Methods) == 0 {
			c.Methods = []string{"sign_psbt"}
		}
		if rl, ok := m["rate_limit"]; ok {
			if s, ok := v.scalar(rl, "rate_limit", `"20/1h"`); ok {
				if r, err := ParseRate(s); err != nil {
					v.errorf(rl, "rate_limit: %v", err)
				} else {
					c.RateLimit = &r
				}
			}
		}
		if c.Name == "" && IsChannel(hexpk) {
			c.Name = hexpk
		} else if c.Name == "" {
			c.Name = hexpk[:12]
		}
		out = append(out, c)
	}
	return out
}

func (v *validator) approvers(n *yaml.Node) []Approver {
	var out []Approver
	seen := map[string]bool{}
	for _, item := range v.list(n, "approvers", "[{name: alice, pubkey: npub1…}]") {
		m := v.mapping(item, "an approver", keysApprover)
		if m == nil {
			continue
		}
		nm, ok := m["name"]
		if !ok {
			v.errorf(item, "approver needs a name (rules refer to approvers by name)")
			continue
		}
		pk, ok := m["pubkey"]
		if !ok {
			v.errorf(item, "approver needs a pubkey (npub1… or 64 hex characters)")
			continue
		}
		hexpk, err := parsePubKey(pk.Value)
		if err != nil {
			v.errorf(pk, "pubkey: %v", err)
			continue
		}
		if seen[nm.Value] || seen[hexpk] {
			v.errorf(nm, "approver %q (or its pubkey) listed twice", nm.Value)
			continue
		}
		seen[nm.Value], seen[hexpk] = true, true
		out = append(out, Approver{Name: nm.Value, PubKey: hexpk})
	}
	return out
}

var networks = []*chaincfg.Params{&chaincfg.MainNetParams, &chaincfg.TestNet3Params, &chaincfg.RegressionNetParams, &chaincfg.SigNetParams}

func (v *validator) nets() []*chaincfg.Params {
	if v.opts.net != nil {
		return []*chaincfg.Params{v.opts.net}
	}
	return networks
}

func (v *validator) descriptors(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		v.errorf(n, "descriptors must be a mapping of names to {descriptor: …, lookahead: …}")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Value == "" || strings.ContainsAny(k.Value, ": ") {
			v.errorf(k, "descriptor name %q must be a word without spaces or colons", k.Value)
			continue
		}
		if _, dup := v.p.Descriptors[k.Value]; dup {
			v.errorf(k, "descriptor %q named twice", k.Value)
			continue
		}
		m := v.mapping(val, "a named descriptor", keysDescriptor)
		if m == nil {
			continue
		}
		nd := &NamedDescriptor{Name: k.Value, Lookahead: DefaultLookahead, scripts: map[string]bool{}}
		if la, ok := m["lookahead"]; ok {
			c, err := strconv.ParseUint(la.Value, 10, 32)
			if la.Kind != yaml.ScalarNode || err != nil || c < 1 || c > MaxLookahead {
				v.errorf(la, "lookahead must be a whole number from 1 to %d", MaxLookahead)
				continue
			}
			nd.Lookahead = uint32(c)
		}
		dn, ok := m["descriptor"]
		if !ok {
			v.errorf(val, "named descriptor %q needs descriptor: \"wsh(…)#checksum\"", k.Value)
			continue
		}
		var d *descriptor.Descriptor
		var firstErr error
		for _, net := range v.nets() {
			var err error
			if d, err = descriptor.Parse(dn.Value, net, descriptor.RequireChecksum()); err == nil {
				break
			} else if firstErr == nil {
				firstErr = err
			}
		}
		if d == nil {
			v.errorf(dn, "descriptor: %v", firstErr)
			continue
		}
		nd.Descriptor = dn.Value
		for b := 0; b < d.Branches(); b++ {
			for i := uint32(0); i < nd.Lookahead; i++ {
				s, err := d.PkScript(uint32(b), i)
				if err != nil {
					break
				}
				nd.scripts[string(s)] = true
			}
		}
		v.p.Descriptors[k.Value] = nd
	}
}

func (v *validator) destinations(n *yaml.Node, what string) []Destination {
	out := []Destination{}
	for _, item := range v.list(n, what, `["bc1q…", "descriptor:cold_vault"]`) {
		if d, ok := v.destination(item, what+" entry"); ok {
			out = append(out, d)
		}
	}
	return out
}

// destination reads one address (of the policy's network, see WithNetwork) or descriptor:NAME.
func (v *validator) destination(item *yaml.Node, what string) (Destination, bool) {
	s, ok := v.scalar(item, what, `"bc1q…" or "descriptor:cold_vault"`)
	if !ok {
		return Destination{}, false
	}
	if name, ok := strings.CutPrefix(s, "descriptor:"); ok {
		nd, ok := v.p.Descriptors[name]
		if !ok {
			v.errorf(item, "no descriptor named %q under descriptors:", name)
			return Destination{}, false
		}
		return Destination{Text: s, Descriptor: nd}, true
	}
	var script []byte
	for _, net := range v.nets() {
		a, err := btcutil.DecodeAddress(s, net)
		if err != nil || !a.IsForNet(net) {
			continue
		}
		if script, err = txscript.PayToAddrScript(a); err == nil {
			break
		}
	}
	if script == nil {
		v.errorf(item, "%q is neither an address (of a known network) nor descriptor:NAME", s)
		return Destination{}, false
	}
	return Destination{Text: s, PkScript: script}, true
}

func (v *validator) hours(n *yaml.Node) *Hours {
	m := v.mapping(n, "hours", keysHours)
	if m == nil {
		return nil
	}
	h := &Hours{Zone: v.p.Zone}
	okAll := true
	for _, k := range []string{"from", "to"} {
		kn, ok := m[k]
		if !ok {
			v.errorf(n, "hours needs %s: \"HH:MM\"", k)
			okAll = false
			continue
		}
		c, err := ParseClockTime(kn.Value)
		if err != nil {
			v.errorf(kn, "%s: %v", k, err)
			okAll = false
			continue
		}
		if k == "from" {
			h.From = c
		} else {
			h.To = c
		}
	}
	if okAll && h.From == h.To {
		v.errorf(n, "hours: from and to are equal, the window would be empty (leave hours out to allow any time)")
		okAll = false
	}
	if z, ok := m["zone"]; ok {
		if zone, err := loadZone(z.Value); err != nil {
			v.errorf(z, "zone: %v", err)
			okAll = false
		} else {
			h.Zone = zone
		}
	}
	if d, ok := m["days"]; ok {
		for _, dn := range v.list(d, "days", "[mon, tue, wed, thu, fri]") {
			i := slices.Index(weekdays, strings.ToLower(dn.Value))
			if i < 0 {
				v.errorf(dn, "unknown day %q (use %s)", dn.Value, strings.Join(weekdays, ", "))
				okAll = false
				continue
			}
			h.Days[i] = true
		}
	} else {
		for i := range h.Days {
			h.Days[i] = true
		}
	}
	if !okAll {
		return nil
	}
	h.text = h.format()
	return h
}

func (v *validator) limits(n *yaml.Node) {
	m := v.mapping(n, "limits", keysLimits)
	if m == nil {
		return
	}
	l := &v.p.Limits
	if mp, ok := m["max_per_tx"]; !ok {
		v.errorf(n, "missing key \"max_per_tx\" in limits, e.g. max_per_tx: 0.5 BTC")
	} else if a, ok := v.amount(mp, "max_per_tx"); ok {
		l.MaxPerTx = a
	}
	if vn, ok := m["velocity"]; ok {
		seen := map[time.Duration]bool{}
		for _, item := range v.list(vn, "velocity", "[{window: 24h, max: 1 BTC}]") {
			wm := v.mapping(item, "a velocity window", keysWindow)
			if wm == nil {
				continue
			}
			wn, ok1 := wm["window"]
			mn, ok2 := wm["max"]
			if !ok1 || !ok2 {
				v.errorf(item, "a velocity window needs window: (e.g. 24h) and max: (e.g. 1 BTC)")
				continue
			}
			d, ok1 := v.duration(wn, "window")
			a, ok2 := v.amount(mn, "max")
			if !ok1 || !ok2 {
				continue
			}
			if seen[d] {
				v.errorf(wn, "two velocity windows of %s", FormatDuration(d))
				continue
			}
			seen[d] = true
			l.Velocity = append(l.Velocity, Window{Window: d, Max: a})
		}
		slices.SortFunc(l.Velocity, func(a, b Window) int { return int(a.Window - b.Window) })
	}
	l.MaxFee = v.optAmount(m, "max_fee")
	l.MaxFeeRate = v.optFeeRate(m, "max_feerate")
	l.MaxFeeShare = v.optShare(m, "max_fee_share")
	l.MinConfirmations = v.optConfs(m, "min_confirmations")
	if h, ok := m["hours"]; ok {
		l.Hours = v.hours(h)
	}
	if dn, ok := m["destinations"]; ok {
		if dm := v.mapping(dn, "destinations", keysDest); dm != nil {
			if a, ok := dm["allow"]; ok {
				l.Allow = Opt[[]Destination]{V: v.destinations(a, "allow"), Set: true}
			}
			if d, ok := dm["deny"]; ok {
				l.Deny = v.destinations(d, "deny")
			}
		}
	}
	if ra, ok := m["release_after"]; ok {
		if d, ok := v.duration(ra, "release_after"); ok {
			l.ReleaseAfter = d
		}
	}
	if sn, ok := m["allow_sighash"]; ok {
		for _, name := range v.enumList(sn, "sighash type", "[ALL, SINGLE|ANYONECANPAY]", SighashNames()) {
			l.AllowSighash = append(l.AllowSighash, sighashNames[name])
		}
		l.allowSighashSet = true
	}
	if wn, ok := m["deny_warnings"]; ok {
		l.DenyWarnings = v.enumList(wn, "warning", "[op_return_output, nonstandard_output]", WarningCodes)
	}
	v.p.limitChecks = limitChecks(l)
}

// clientByName resolves a client name of a rule's match to the client's pubkey, or
// "automation:NAME" to itself when NAME is an automation of this policy (the client name
// psbtflow gives the PSBTs an automation builds).
func (v *validator) clientByName(n *yaml.Node) (string, bool) {
	if name, ok := strings.CutPrefix(n.Value, AutomationClientPrefix); ok {
		if v.autoNames[name] {
			return n.Value, true
		}
		v.errorf(n, "no automation named %q under automations:", name)
		return "", false
	}
	for _, c := range v.p.Clients {
		if c.Name == n.Value {
			return c.PubKey, true
		}
	}
	v.errorf(n, "no client named %q under clients:", n.Value)
	return "", false
}

func (v *validator) rules(n *yaml.Node) {
	names := map[string]bool{}
	for i, item := range v.list(n, "rules", "[{name: small, match: {max_outflow: 0.01 BTC}, action: allow}]") {
		m := v.mapping(item, "a rule", keysRule)
		if m == nil {
			continue
		}
		r := Rule{Line: item.Line}
		if b, err := yaml.Marshal(item); err == nil {
			r.source = string(b)
		}
		if nm, ok := m["name"]; ok {
			r.Name, _ = v.scalar(nm, "name", "small_payments")
			if r.Name == "" || strings.ContainsAny(r.Name, ": \t") {
				v.errorf(nm, "rule name %q must be a word without spaces or colons (it appears in error codes)", r.Name)
			}
			if names[r.Name] {
				v.errorf(nm, "rule name %q used twice", r.Name)
			}
			names[r.Name] = true
		} else {
			r.Name = fmt.Sprintf("rule_%d", i+1)
		}
		if rs, ok := m["reason"]; ok {
			r.Reason, _ = v.scalar(rs, "reason", `"payroll to the cold vault"`)
		}
		an, ok := m["action"]
		if !ok {
			v.errorf(item, "rule %q needs action: allow, deny or hold", r.Name)
		} else {
			switch Outcome(an.Value) {
			case Allow, Deny, Hold:
				r.Action = Outcome(an.Value)
			default:
				v.errorf(an, "action must be allow, deny or hold, got %q", an.Value)
			}
		}
		if hn, ok := m["hold"]; ok {
			if r.Action != Hold {
				v.errorf(hn, "hold: only applies to action: hold")
			} else {
				r.Hold = v.holdSpec(hn)
			}
		} else if r.Action == Hold {
			v.errorf(an, "action: hold needs hold: {cooling_off: 24h} and/or {approvals: 2, approvers: [alice, bob]}")
		}
		if mn, ok := m["match"]; ok {
			r.conds, r.hours = v.match(mn)
			r.catchAll = len(r.conds) == 0
			if b, err := yaml.Marshal(mn); err == nil {
				r.matchSource = string(b)
			}
		} else {
			r.catchAll = true
		}
		for _, prev := range v.p.Rules {
			if prev.catchAll {
				v.errorf(item, "rule %q can never match: rule %q (line %d) above it matches every request", r.Name, prev.Name, prev.Line)
				break
			}
			if !r.catchAll && prev.matchSource == r.matchSource {
				v.errorf(item, "rule %q can never match: rule %q (line %d) above it has the same match", r.Name, prev.Name, prev.Line)
				break
			}
		}
		v.p.Rules = append(v.p.Rules, r)
	}
}

func (v *validator) holdSpec(n *yaml.Node) *HoldSpec {
	m := v.mapping(n, "hold", keysHold)
	if m == nil {
		return nil
	}
	h := &HoldSpec{}
	if c, ok := m["cooling_off"]; ok {
		if d, ok := v.duration(c, "cooling_off"); ok {
			h.CoolingOff = d
		}
	}
	if an, ok := m["approvers"]; ok {
		for _, nn := range v.list(an, "approvers", "[alice, bob]") {
			i := slices.IndexFunc(v.p.Approvers, func(a Approver) bool { return a.Name == nn.Value })
			if i < 0 {
				v.errorf(nn, "no approver named %q under approvers:", nn.Value)
				continue
			}
			if slices.ContainsFunc(h.Approvers, func(a Approver) bool { return a.Name == nn.Value }) {
				v.errorf(nn, "approver %q listed twice", nn.Value)
				continue
			}
			h.Approvers = append(h.Approvers, v.p.Approvers[i])
		}
	}
	if a, ok := m["approvals"]; ok {
		c, err := strconv.Atoi(a.Value)
		switch {
		case a.Kind != yaml.ScalarNode || err != nil || c < 1 || c > 100:
			v.errorf(a, "approvals must be a whole number from 1 to 100")
		case c > len(h.Approvers):
			v.errorf(a, "approvals: %d required but only %d approver(s) named in this hold; name more approvers or lower approvals", c, len(h.Approvers))
		default:
			h.Approvals = c
		}
	} else if len(h.Approvers) > 0 {
		h.Approvals = 1
	}
	if _, ok := m["approvers"]; ok && h.Approvals == 0 && len(h.Approvers) == 0 {
		v.errorf(n, "hold: approvers is empty")
	}
	if h.CoolingOff == 0 && h.Approvals == 0 {
		if _, c := m["cooling_off"]; !c {
			if _, a := m["approvals"]; !a {
				v.errorf(n, "hold needs cooling_off (e.g. 24h), approvals with approvers, or both")
			}
		}
	}
	return h
}

func yamlError(name string, err error, data []byte) error {
	// yaml.v3 syntax errors read "yaml: line N: msg"; keep its line and add the file name.
	msg := err.Error()
	var line int
	if _, scanErr := fmt.Sscanf(msg, "yaml: line %d:", &line); scanErr == nil {
		_, rest, _ := strings.Cut(msg, ": line ")
		_, rest, _ = strings.Cut(rest, ": ")
		if strings.HasPrefix(rest, "did not find expected ',' or") {
			// yaml.v3 reports these with the 0-based line of the unclosed [ or {.
			line++
			// yaml.v3 does not read a plain value with "?" inside [ ]; bunker:// URIs have one.
			lines := strings.Split(string(data), "\n")
			for l := line - 1; l >= 0 && l < min(line+20, len(lines)); l++ {
				if strings.Contains(lines[l], "bunker:") && !strings.Contains(lines[l], `"bunker:`) && !strings.Contains(lines[l], `'bunker:`) {
					rest += ` (quote bunker:// URIs inside [ ]: ["bunker://…"], or list them one per line with "- ")`
					break
				}
				if strings.ContainsAny(lines[l], "]}") {
					break // the end of this flow list
				}
			}
		}
		return Errors{{File: name, Line: line, Column: 1, Msg: "YAML syntax: " + rest}}
	}
	return Errors{{File: name, Line: 1, Column: 1, Msg: "YAML: " + strings.TrimPrefix(msg, "yaml: ")}}
}
