package policy

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"
	"gopkg.in/yaml.v3"
)

// MaxFileBytes bounds a policy file.
const MaxFileBytes = 1 << 20

// Policy is a validated policy. Build it with Parse or Load; it is immutable afterwards.
type Policy struct {
	Version  int
	Clients  []Client
	MaxPerTx btcutil.Amount
}

// Client is one NIP-46 client the policy authorises.
type Client struct {
	Name    string
	PubKey  string   // hex
	Methods []string // methods it may call; empty means all policy-gated methods (sign_psbt)
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

// Load reads and validates the policy file at path. Errors: an Errors value (line:col) for a
// bad policy, or an I/O error.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFileBytes+1)); err != nil {
		return nil, fmt.Errorf("policy: read %s: %w", path, err)
	}
	if buf.Len() > MaxFileBytes {
		return nil, fmt.Errorf("policy: %s is larger than %d bytes", path, MaxFileBytes)
	}
	return Parse(path, buf.Bytes())
}

// Parse validates a policy document. name is used in error messages.
func Parse(name string, data []byte) (*Policy, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(name, err)
	}
	v := &validator{file: name}
	p := v.document(&root)
	if len(v.errs) > 0 {
		return nil, v.errs
	}
	return p, nil
}

type validator struct {
	file string
	errs Errors
}

func (v *validator) errorf(n *yaml.Node, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Line: n.Line, Column: n.Column, Msg: fmt.Sprintf(format, args...)})
}

// mapping checks n is a mapping with only the allowed keys and returns key → value nodes.
func (v *validator) mapping(n *yaml.Node, what string, allowed ...string) map[string]*yaml.Node {
	if n.Kind != yaml.MappingNode {
		v.errorf(n, "%s must be a mapping", what)
		return nil
	}
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			v.errorf(k, "unknown key %q in %s (allowed: %s)", k.Value, what, strings.Join(allowed, ", "))
			continue
		}
		if _, dup := out[k.Value]; dup {
			v.errorf(k, "key %q appears twice in %s", k.Value, what)
			continue
		}
		out[k.Value] = val
	}
	return out
}

func (v *validator) document(root *yaml.Node) *Policy {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		v.errs = append(v.errs, &Error{File: v.file, Line: 1, Column: 1, Msg: "empty policy: it needs version, clients and limits"})
		return nil
	}
	top := v.mapping(root.Content[0], "the policy", "version", "clients", "limits")
	if top == nil {
		return nil
	}
	p := &Policy{}
	if n, ok := top["version"]; !ok {
		v.errorf(root.Content[0], "missing key \"version\" (this cosigner reads version: 1)")
	} else if n.Kind != yaml.ScalarNode || n.Value != "1" {
		v.errorf(n, "version must be 1, got %q", n.Value)
	} else {
		p.Version = 1
	}
	if n, ok := top["clients"]; !ok {
		v.errorf(root.Content[0], "missing key \"clients\": list the Nostr pubkeys allowed to ask for signatures")
	} else {
		p.Clients = v.clients(n)
	}
	if n, ok := top["limits"]; !ok {
		v.errorf(root.Content[0], "missing key \"limits\" (with max_per_tx)")
	} else if lim := v.mapping(n, "limits", "max_per_tx"); lim != nil {
		if m, ok := lim["max_per_tx"]; !ok {
			v.errorf(n, "missing key \"max_per_tx\" in limits, e.g. max_per_tx: 0.5 BTC")
		} else if m.Kind != yaml.ScalarNode {
			v.errorf(m, "max_per_tx must be an amount such as \"0.5 BTC\"")
		} else if a, err := ParseAmount(m.Value); err != nil {
			v.errorf(m, "max_per_tx: %v", err)
		} else {
			p.MaxPerTx = a
		}
	}
	return p
}

// Methods a policy may grant.
var knownMethods = []string{"sign_psbt"}

func (v *validator) clients(n *yaml.Node) []Client {
	if n.Kind != yaml.SequenceNode {
		v.errorf(n, "clients must be a list")
		return nil
	}
	var out []Client
	seen := map[string]bool{}
	for _, item := range n.Content {
		m := v.mapping(item, "a client", "name", "pubkey", "methods")
		if m == nil {
			continue
		}
		c := Client{}
		if nm, ok := m["name"]; ok && nm.Kind == yaml.ScalarNode {
			c.Name = nm.Value
		}
		pk, ok := m["pubkey"]
		if !ok {
			v.errorf(item, "client needs a pubkey (npub1… or 64 hex characters)")
			continue
		}
		hexpk, err := parsePubKey(pk.Value)
		if err != nil {
			v.errorf(pk, "pubkey: %v", err)
			continue
		}
		if seen[hexpk] {
			v.errorf(pk, "client pubkey listed twice")
			continue
		}
		seen[hexpk] = true
		c.PubKey = hexpk
		if ms, ok := m["methods"]; ok {
			if ms.Kind != yaml.SequenceNode {
				v.errorf(ms, "methods must be a list, e.g. [sign_psbt]")
			} else {
				for _, mn := range ms.Content {
					if !slices.Contains(knownMethods, mn.Value) {
						v.errorf(mn, "unknown method %q (known: %s)", mn.Value, strings.Join(knownMethods, ", "))
						continue
					}
					c.Methods = append(c.Methods, mn.Value)
				}
			}
		}
		if c.Name == "" {
			c.Name = hexpk[:12]
		}
		out = append(out, c)
	}
	return out
}

func parsePubKey(s string) (string, error) {
	if strings.HasPrefix(s, "npub1") {
		prefix, val, err := nip19.Decode(s)
		if err != nil || prefix != "npub" {
			return "", fmt.Errorf("%q is not a valid npub", s)
		}
		return val.(string), nil
	}
	if !nostr.IsValidPublicKey(s) {
		return "", fmt.Errorf("%q is neither an npub nor a 64-character hex pubkey", s)
	}
	return strings.ToLower(s), nil
}

func yamlError(name string, err error) error {
	// yaml.v3 syntax errors read "yaml: line N: msg"; keep its line and add the file name.
	msg := err.Error()
	var line int
	if _, scanErr := fmt.Sscanf(msg, "yaml: line %d:", &line); scanErr == nil {
		_, rest, _ := strings.Cut(msg, ": line ")
		_, rest, _ = strings.Cut(rest, ": ")
		return Errors{{File: name, Line: line, Column: 1, Msg: "YAML syntax: " + rest}}
	}
	return Errors{{File: name, Line: 1, Column: 1, Msg: "YAML: " + strings.TrimPrefix(msg, "yaml: ")}}
}
