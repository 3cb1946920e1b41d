package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"

	"github.com/custodyagents/cosigner/descriptor"
)

// DefaultLookahead is how many scripts per branch of a named descriptor are matched.
const DefaultLookahead = 100

// MaxLookahead bounds a named descriptor's lookahead (each script is derived at load time).
const MaxLookahead = 10_000

// Policy is a validated policy. Build it with Parse (policy/policyfile.Load reads a file); it
// is immutable afterwards (WithPrior returns a copy).
type Policy struct {
	Version int
	// Name is the file name errors and decisions refer to; Hash is the hex SHA-256 of the file's
	// bytes, recorded with every decision.
	Name, Hash string
	// Zone is the default time zone of time-of-day windows (top-level timezone; UTC if absent).
	Zone *time.Location
	// LoosenDelay is how long a change that loosens this policy waits before it applies alone
	// (top-level loosen_delay; 0 = at once). See Loosenings.
	LoosenDelay time.Duration
	Clients     []Client
	Approvers   []Approver
	Descriptors map[string]*NamedDescriptor
	Limits      Limits
	Rules       []Rule
	// Automations are the transactions this co-signer starts itself on chain events (see
	// automation.go); empty when the file has none.
	Automations []Automation

	limitChecks []check

	// prior is the policy that stays in force, alongside this one, until effectiveAt.
	prior       *Policy
	effectiveAt time.Time
}

// MaxPerTx is the per-transaction cap on outflow (limits.max_per_tx).
func (p *Policy) MaxPerTx() btcutil.Amount { return p.Limits.MaxPerTx }

// Client is one NIP-46 client the policy authorises.
type Client struct {
	Name    string
	PubKey  string   // hex
	Methods []string // methods it may call; empty means every policy-gated method
	// RateLimit bounds its requests (policy-gated methods) per rolling window; nil = none.
	RateLimit *Rate
}

// Approver is a person (a Nostr pubkey) who may approve held requests with the approve method.
type Approver struct {
	Name   string
	PubKey string // hex
}

// NamedDescriptor is an output descriptor named in the policy (for example a cold vault) so that
// destinations can refer to it: an output matches when its script is one of the descriptor's
// scripts at index < Lookahead on any of its branches.
type NamedDescriptor struct {
	Name       string
	Descriptor string
	Lookahead  uint32
	scripts    map[string]bool
}

// Has reports whether pkScript is one of d's scripts within the lookahead.
func (d *NamedDescriptor) Has(pkScript []byte) bool { return d.scripts[string(pkScript)] }

// Window is a rolling-window velocity limit: at most Max may leave the wallet (outflow, fee
// included) in any period of length Window, counted in the spend ledger.
type Window struct {
	Window time.Duration
	Max    btcutil.Amount
}

// Name is the window's rule name in decisions, e.g. "velocity_1d".
func (w Window) Name() string { return "velocity_" + FormatDuration(w.Window) }

// Opt is an optional setting: Set is false when the key is absent.
type Opt[T any] struct {
	V   T
	Set bool
}

// Limits are the global limits: no rule can lift them.
type Limits struct {
	MaxPerTx         btcutil.Amount
	Velocity         []Window
	MaxFee           Opt[btcutil.Amount]
	MaxFeeRate       Opt[FeeRate]
	MaxFeeShare      Opt[Share]
	MinConfirmations Opt[int32]
	Hours            *Hours
	// Allow, when set, lists the only destinations spend outputs may pay; Deny lists
	// destinations no output may pay.
	Allow Opt[[]Destination]
	Deny  []Destination
	// ReleaseAfter is limits.release_after as written (0 when absent). Deprecated and ignored:
	// a signed transaction counts until a proven confirmation or conflict settles it, never
	// released by time (psbtflow's spend exposure); see Policy.Deprecations.
	ReleaseAfter time.Duration
	// AllowSighash lists the sighash types signed besides ALL (and DEFAULT on taproot)
	// (limits.allow_sighash; docs/psbt-safety.md). Empty: only ALL / DEFAULT.
	AllowSighash []txscript.SigHashType
	// DenyWarnings are analysis warning codes (WarningCodes) that refuse a request.
	DenyWarnings    []string
	allowSighashSet bool
}

// Destination is an address or a named descriptor (written "descriptor:NAME").
type Destination struct {
	Text       string
	PkScript   []byte           // for an address
	Descriptor *NamedDescriptor // for descriptor:NAME
}

// Matches reports whether pkScript pays this destination.
func (d Destination) Matches(pkScript []byte) bool {
	if d.Descriptor != nil {
		return d.Descriptor.Has(pkScript)
	}
	return bytes.Equal(d.PkScript, pkScript)
}

// ForNetwork checks that d can be paid on net: an address must be one of net (a bech32 address
// names its network; base58 testnet and regtest addresses are shared), a named descriptor's keys
// must be of net. Parse accepts any known network unless WithNetwork is given, so the builder of
// an automation's transaction calls this with the wallet's network before paying d.
// Errors: ErrWrongNetwork wrapped with the destination's text.
func (d Destination) ForNetwork(net *chaincfg.Params) error {
	if d.Descriptor != nil {
		if _, err := descriptor.Parse(d.Descriptor.Descriptor, net, descriptor.RequireChecksum()); err != nil {
			return fmt.Errorf("%w: %s is not a descriptor of %s: %v", ErrWrongNetwork, d.Text, net.Name, err)
		}
		return nil
	}
	a, err := btcutil.DecodeAddress(d.Text, net)
	if err != nil || !a.IsForNet(net) {
		return fmt.Errorf("%w: %s is not an address of %s", ErrWrongNetwork, d.Text, net.Name)
	}
	if s, err := txscript.PayToAddrScript(a); err != nil || !bytes.Equal(s, d.PkScript) {
		return fmt.Errorf("%w: %s does not decode to the same script on %s", ErrWrongNetwork, d.Text, net.Name)
	}
	return nil
}

// Hours is a time-of-day window: From ≤ t < To in Zone on Days (To < From wraps past midnight).
type Hours struct {
	From, To ClockTime
	Days     [7]bool // by time.Weekday
	Zone     *time.Location
	text     string // String(), computed once at load
}

// Contains reports whether t falls inside the window.
func (h *Hours) Contains(t time.Time) bool {
	lt := t.In(h.Zone)
	m := ClockTime(lt.Hour()*60 + lt.Minute())
	day := lt.Weekday()
	if h.From <= h.To {
		return h.Days[day] && m >= h.From && m < h.To
	}
	// Wraps midnight: the part after midnight belongs to the previous day's window.
	if m >= h.From {
		return h.Days[day]
	}
	return m < h.To && h.Days[(day+6)%7]
}

func (h *Hours) String() string {
	if h.text != "" {
		return h.text
	}
	return h.format()
}

func (h *Hours) format() string {
	var days []string
	all := true
	for d, on := range h.Days {
		if on {
			days = append(days, strings.ToLower(time.Weekday(d).String()[:3]))
		} else {
			all = false
		}
	}
	s := fmt.Sprintf("%s–%s %s", h.From, h.To, h.Zone)
	if !all {
		s += " on " + strings.Join(days, ",")
	}
	return s
}

// Rule is one entry of the first-match rule list.
type Rule struct {
	Name   string
	Action Outcome // Allow, Deny or Hold
	Hold   *HoldSpec
	// Reason is the rule's own words for people (optional).
	Reason      string
	Line        int
	conds       []check
	hours       *Hours // match.hours, nil when absent (NextChange)
	catchAll    bool
	source      string // the rule as YAML, for comparing policies
	matchSource string // its match as YAML, for finding duplicates
}

// HoldSpec says when a held request is released: after CoolingOff (0 = no delay) and with
// Approvals of the named Approvers (0 = none needed).
type HoldSpec struct {
	CoolingOff time.Duration
	Approvals  int
	Approvers  []Approver
}

// Error is a validation error at a place in the policy file. Error() is "FILE:LINE:COL: msg".
type Error struct {
	File         string
	Line, Column int
	Msg          string
}

func (e *Error) Error() string {
	f := e.File
	if f == "" {
		f = "policy"
	}
	return fmt.Sprintf("%s:%d:%d: %s", f, e.Line, e.Column, e.Msg)
}

// Errors is every validation error of one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Error()
	}
	return strings.Join(parts, "\n")
}

// Option changes how Parse reads a policy.
type Option func(*parseOptions)

type parseOptions struct{ net *chaincfg.Params }

// WithNetwork parses addresses and named descriptors for net only (by default every known
// network is tried; the scripts they stand for are the same).
func WithNetwork(net *chaincfg.Params) Option { return func(o *parseOptions) { o.net = net } }

// HashBytes is the policy hash of a file's bytes: hex SHA-256.
func HashBytes(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

// WithPrior returns a copy of p under which prior stays in force too until effectiveAt: until
// then every decision is the strictest of p's and prior's ("tighten now, loosen later"). prior
// may itself have a prior. Priors whose time has passed are dropped.
func (p *Policy) WithPrior(prior *Policy, effectiveAt time.Time) *Policy {
	q := *p
	q.prior, q.effectiveAt = prior, effectiveAt
	return &q
}

// Prior returns the policy still in force alongside p and when p applies alone, or nil.
func (p *Policy) Prior() (*Policy, time.Time) { return p.prior, p.effectiveAt }

// stages returns the policies in force at now: p, then its priors still pending.
func (p *Policy) stages(now time.Time) []*Policy {
	out := []*Policy{p}
	for q := p; q.prior != nil && now.Before(q.effectiveAt); q = q.prior {
		out = append(out, q.prior)
	}
	return out
}

// Windows returns every velocity window in force at now (all stages), for the caller to sum
// the spend ledger over.
func (p *Policy) Windows(now time.Time) []time.Duration {
	var out []time.Duration
	for _, s := range p.stages(now) {
		for _, w := range s.Limits.Velocity {
			out = append(out, w.Window)
		}
	}
	return out
}

// RateLimits returns the client's rate limits in force at now (one per stage that sets one).
func (p *Policy) RateLimits(client string, now time.Time) []Rate {
	var out []Rate
	for _, s := range p.stages(now) {
		for _, c := range s.Clients {
			if c.PubKey == client && c.RateLimit != nil {
				out = append(out, *c.RateLimit)
			}
		}
	}
	return out
}
