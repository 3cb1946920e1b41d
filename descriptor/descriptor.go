package descriptor

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	lru "github.com/hashicorp/golang-lru/v2"
)

// MaxLength bounds the descriptor text Parse accepts. A 20-key descriptor
// with key origins and multipath steps is under 3,000 characters.
const MaxLength = 16384

// Descriptor is a parsed, validated output descriptor. It is immutable and
// safe for concurrent use.
type Descriptor struct {
	net      *chaincfg.Params
	out      outputExpr
	keys     []*keyExpr
	branches int
	// derived caches Derive's results by (branch, index) (cache.go: bound and safety).
	derived *lru.Cache[uint64, *Derived]
}

// outputExpr is a top-level script expression that yields output scripts:
// wsh(), sh(wsh()) and tr().
type outputExpr interface {
	derive(net *chaincfg.Params, branch int, index uint32) (*Derived, error)
	string(branch int) string
	maxWitnessSize() int
	scriptType() ScriptType
}

// ScriptType names the output type a descriptor produces.
type ScriptType string

// Output types of the supported descriptors.
const (
	// P2WSH is wsh(multi|sortedmulti) (BIP-141 native segwit v0 script hash).
	P2WSH ScriptType = "p2wsh"
	// P2SHP2WSH is sh(wsh(multi|sortedmulti)): P2WSH nested in P2SH (BIP-141 "P2WSH nested in BIP16 P2SH").
	P2SHP2WSH ScriptType = "p2sh-p2wsh"
	// P2TR is tr(KEY,TREE) with multi_a/sortedmulti_a leaves (BIP-341, BIP-386, BIP-387).
	P2TR ScriptType = "p2tr"
)

// Derived is what a descriptor yields at one (branch, index).
type Derived struct {
	// Type is the output type (the same for every index of a descriptor).
	Type ScriptType
	// WitnessScript is the script committed to by a wsh() output; nil for tr().
	WitnessScript []byte
	// RedeemScript is the P2SH redeem script (the P2WSH program) of
	// sh(wsh()); nil otherwise.
	RedeemScript []byte
	// PkScript is the output's scriptPubKey.
	PkScript []byte
	// Address is the output's address on the descriptor's network.
	Address btcutil.Address
	// Keys are the derived public keys. For wsh() and sh(wsh()) they are
	// in the order they appear in the script (sorted for sortedmulti). For
	// tr() each key slot appears once: the internal key first when it is a
	// ranged key, then the leaf keys in order of first appearance, each
	// with the leaf hashes of the leaves it appears in.
	Keys []DerivedKey
	// Taproot holds the BIP-341 commitment of a tr() output; nil otherwise.
	Taproot *TaprootDerived
}

// DerivedKey is one public key in a derived script and where it came from.
type DerivedKey struct {
	PubKey *btcec.PublicKey
	// Fingerprint is the master fingerprint of the key's slot (Key.Fingerprint).
	Fingerprint [4]byte
	// Path is the full derivation path from the master: the key origin,
	// the branch's steps, then the index. Usable as a PSBT BIP32 derivation.
	Path []uint32
	// Slot is the key's position (0-based) in Descriptor.Keys().
	Slot int
	// LeafHashes are the BIP-341 leaf hashes of the tapscript leaves this
	// key appears in (tr() only; empty for an internal key used nowhere
	// else), as a PSBT_IN_TAP_BIP32_DERIVATION lists them (BIP-371).
	LeafHashes []chainhash.Hash
	// Internal tells whether this key is the tr() internal key.
	Internal bool
}

// Option changes how Parse behaves.
type Option func(*options)

type options struct {
	requireChecksum bool
}

// RequireChecksum makes Parse reject a descriptor without "#checksum" with
// ErrMissingChecksum. Use it for descriptors typed into configuration.
func RequireChecksum() Option { return func(o *options) { o.requireChecksum = true } }

// Parse parses and validates a descriptor for network net.
//
// Accepted: wsh(multi(k,KEY,…)) and wsh(sortedmulti(k,KEY,…)) with 1 ≤ k ≤
// n ≤ 20, the same inside sh(), and tr(KEY,TREE) with multi_a/sortedmulti_a
// leaves (n ≤ 999) in a tree of {LEFT,RIGHT} branches; each KEY written as [fingerprint/path]xpub/…/*: an extended public
// key for net (tpub… on testnet, signet and regtest), optional key origin
// (hardened markers h, H or '), unhardened steps, at most one multipath step
// /<a;b;…> (BIP-389; all keys' tuples of equal length) and a final
// unhardened wildcard. A "#checksum" suffix is verified when present
// (BIP-380).
//
// Errors are *ParseError values giving the column and wrapping one of the
// Err… sentinels of this package.
func Parse(s string, net *chaincfg.Params, opts ...Option) (*Descriptor, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if net == nil {
		return nil, errors.New("descriptor: Parse needs a network")
	}
	if len(s) > MaxLength {
		return nil, errAt(MaxLength, ErrSyntax, "descriptor longer than %d characters", MaxLength)
	}
	payload, sum, err := splitChecksum(s)
	if err != nil {
		return nil, err
	}
	if sum == "" && o.requireChecksum {
		return nil, errAt(len(s), ErrMissingChecksum, "checksum required: after checking the descriptor is the intended one, append #%s", checksum(payload))
	}
	tree, err := parseTree(payload)
	if err != nil {
		return nil, err
	}
	return build(tree, net)
}

func build(n *node, net *chaincfg.Params) (*Descriptor, error) {
	d := &Descriptor{net: net, derived: newDerivedCache()}
	reg := &keyRegistry{}
	switch n.name {
	case "wsh":
		m, err := buildWSHInner(n, net, reg)
		if err != nil {
			return nil, err
		}
		d.out = &wshExpr{multi: m}
	case "sh":
		if len(n.args) != 1 {
			return nil, errAt(n.pos, ErrSyntax, "sh() takes exactly one script expression")
		}
		inner := n.args[0]
		switch inner.name {
		case "wsh":
		case "multi", "sortedmulti":
			return nil, errAt(inner.pos, ErrUnsupported, "legacy sh(%s(…)) is not supported: use sh(wsh(%s(…))) or wsh(%s(…))", inner.name, inner.name, inner.name)
		case "":
			return nil, errAt(inner.pos, ErrSyntax, "sh() needs a script expression such as wsh(…), got %q", inner.text)
		default:
			return nil, errAt(inner.pos, ErrUnsupported, "sh(%s(…)) is not supported: use sh(wsh(multi(…))) or sh(wsh(sortedmulti(…)))", inner.name)
		}
		m, err := buildWSHInner(inner, net, reg)
		if err != nil {
			return nil, err
		}
		d.out = &shWSHExpr{wshExpr{multi: m}}
	case "tr":
		t, err := buildTr(n, net, reg)
		if err != nil {
			return nil, err
		}
		d.out = t
	case "":
		return nil, errAt(n.pos, ErrSyntax, "expected a script expression such as wsh(…)")
	case "pk", "pkh", "wpkh", "combo", "multi", "sortedmulti", "multi_a", "sortedmulti_a", "raw", "rawtr", "addr":
		return nil, errAt(n.pos, ErrUnsupported, "%s(…) descriptors are not supported: use wsh(…), sh(wsh(…)) or tr(…) over a multisig", n.name)
	default:
		return nil, errAt(n.pos, ErrSyntax, "unknown script expression %s(…)", n.name)
	}
	d.keys = reg.keys

	// BIP-389: all multipath tuples have the same length.
	d.branches = 1
	var first *keyExpr
	for _, k := range d.keys {
		if k.multi == nil {
			continue
		}
		if first == nil {
			first, d.branches = k, len(k.multi)
		} else if len(k.multi) != d.branches {
			return nil, errAt(k.pos, ErrMultipath, "multipath step has %d values but an earlier key's has %d; they must match", len(k.multi), d.branches)
		}
	}
	return d, nil
}

// buildWSHInner checks wsh(multi|sortedmulti) at n and builds the multisig.
func buildWSHInner(n *node, net *chaincfg.Params, reg *keyRegistry) (*multiExpr, error) {
	if len(n.args) != 1 {
		return nil, errAt(n.pos, ErrSyntax, "wsh() takes exactly one script expression")
	}
	inner := n.args[0]
	switch inner.name {
	case "multi", "sortedmulti":
	case "":
		return nil, errAt(inner.pos, ErrSyntax, "wsh() needs a script expression such as sortedmulti(…), got %q", inner.text)
	case "multi_a", "sortedmulti_a":
		return nil, errAt(inner.pos, ErrUnsupported, "%s() is only allowed inside tr() (BIP-387)", inner.name)
	default:
		return nil, errAt(inner.pos, ErrUnsupported, "wsh(%s(…)) is not supported: use wsh(multi(…)) or wsh(sortedmulti(…))", inner.name)
	}
	return buildMulti(inner, maxKeysWSH, net, reg)
}

// keyRegistry collects the distinct key slots of a descriptor. A key
// expression written identically in several tapscript leaves is one slot;
// the same extended key with another origin or path is refused.
type keyRegistry struct {
	keys []*keyExpr
}

func (r *keyRegistry) add(k *keyExpr) (int, error) {
	for i, prev := range r.keys {
		if prev.string(-1) == k.string(-1) {
			return i, nil
		}
		if sameXPub(prev.xpub, k.xpub) {
			return 0, errAt(k.pos, ErrDuplicateKey, "this extended public key appears earlier with another origin or derivation path; write it the same way everywhere")
		}
	}
	r.keys = append(r.keys, k)
	return len(r.keys) - 1, nil
}

// wshExpr is wsh(SCRIPT) (BIP-382).
type wshExpr struct {
	multi *multiExpr
}

func (w *wshExpr) derive(net *chaincfg.Params, branch int, index uint32) (*Derived, error) {
	pubs, slots, err := w.multi.pubKeys(branch, index)
	if err != nil {
		return nil, err
	}
	ws, err := w.multi.script(pubs)
	if err != nil {
		return nil, fmt.Errorf("descriptor: building witness script: %w", err)
	}
	h := sha256.Sum256(ws)
	addr, err := btcutil.NewAddressWitnessScriptHash(h[:], net)
	if err != nil {
		return nil, fmt.Errorf("descriptor: witness script address: %w", err)
	}
	pk, err := txscript.PayToAddrScript(addr)
	if err != nil {
		return nil, fmt.Errorf("descriptor: witness script pkScript: %w", err)
	}
	out := &Derived{Type: P2WSH, WitnessScript: ws, PkScript: pk, Address: addr, Keys: make([]DerivedKey, len(pubs))}
	for i, p := range pubs {
		out.Keys[i] = w.multi.derivedKey(p, slots[i], branch, index)
	}
	return out, nil
}

func (w *wshExpr) string(branch int) string { return "wsh(" + w.multi.string(branch) + ")" }

func (w *wshExpr) maxWitnessSize() int { return w.multi.maxWitnessSize() }

func (w *wshExpr) scriptType() ScriptType { return P2WSH }

// shWSHExpr is sh(wsh(SCRIPT)) (BIP-381 sh() over BIP-382 wsh()): the
// P2WSH program is the P2SH redeem script.
type shWSHExpr struct {
	wshExpr
}

// p2shWSHScriptSigSize is the size of the scriptSig spending sh(wsh()):
// one push (1 byte) of the 34-byte P2WSH program.
const p2shWSHScriptSigSize = 1 + 34

func (s *shWSHExpr) derive(net *chaincfg.Params, branch int, index uint32) (*Derived, error) {
	out, err := s.wshExpr.derive(net, branch, index)
	if err != nil {
		return nil, err
	}
	out.Type = P2SHP2WSH
	out.RedeemScript = out.PkScript
	addr, err := btcutil.NewAddressScriptHash(out.RedeemScript, net)
	if err != nil {
		return nil, fmt.Errorf("descriptor: script hash address: %w", err)
	}
	if out.PkScript, err = txscript.PayToAddrScript(addr); err != nil {
		return nil, fmt.Errorf("descriptor: script hash pkScript: %w", err)
	}
	out.Address = addr
	return out, nil
}

func (s *shWSHExpr) string(branch int) string { return "sh(" + s.wshExpr.string(branch) + ")" }

func (s *shWSHExpr) scriptType() ScriptType { return P2SHP2WSH }

// Network returns the network the descriptor was parsed for.
func (d *Descriptor) Network() *chaincfg.Params { return d.net }

// String returns the canonical form of the descriptor with its checksum:
// hardened steps written with h, fingerprints in lower-case hex.
func (d *Descriptor) String() string {
	s := d.out.string(-1)
	return s + "#" + checksum(s)
}

// BranchString returns the single-path descriptor (with checksum) for one
// branch of a multipath descriptor, as BIP-389 expands it: branch 0 is the
// receive descriptor, branch 1 the change descriptor of /<0;1>/*.
func (d *Descriptor) BranchString(branch uint32) (string, error) {
	if int64(branch) >= int64(d.branches) {
		return "", fmt.Errorf("descriptor: branch %d of %d: %w", branch, d.branches, ErrBranch)
	}
	s := d.out.string(int(branch))
	return s + "#" + checksum(s), nil
}

// Type returns the output type the descriptor produces.
func (d *Descriptor) Type() ScriptType { return d.out.scriptType() }

// Threshold returns k of the k-of-n multisig. For tr() it is the smallest
// threshold of any leaf (the fewest signatures that can spend by a script
// path); the key path is not counted.
func (d *Descriptor) Threshold() int {
	min := 0
	for _, m := range d.multis() {
		if min == 0 || m.k < min {
			min = m.k
		}
	}
	return min
}

// Sorted tells whether keys are sorted in the script (sortedmulti, or
// sortedmulti_a in every tr() leaf).
func (d *Descriptor) Sorted() bool {
	ms := d.multis()
	for _, m := range ms {
		if !m.sorted {
			return false
		}
	}
	return len(ms) > 0
}

func (d *Descriptor) multis() []*multiExpr {
	switch o := d.out.(type) {
	case *wshExpr:
		return []*multiExpr{o.multi}
	case *shWSHExpr:
		return []*multiExpr{o.multi}
	case *trExpr:
		return o.leaves()
	}
	return nil
}

// Keys returns the key slots in descriptor order (fresh slices; the XPub
// values are shared and must not be modified).
func (d *Descriptor) Keys() []Key {
	out := make([]Key, len(d.keys))
	for i, k := range d.keys {
		out[i] = k.public(d.branches)
	}
	return out
}

// Branches returns the number of derivation branches: the length of the
// multipath tuples (2 for /<0;1>/*), or 1 without multipath.
func (d *Descriptor) Branches() int { return d.branches }

// MaxWitnessSize returns the size in bytes of the largest standard witness
// that spends one output of this descriptor, including the witness item
// count. ECDSA signatures (wsh, sh(wsh)) count 72 bytes with the sighash
// byte (low-S DER); Schnorr signatures (tr) count 65 (BIP-341, with an
// explicit sighash byte). For tr() it is the largest over all spending
// paths: every leaf (script, control block, k signatures and n−k empty
// items) and the key path. Witness bytes weigh 1 weight unit each; BDK's
// max_weight_to_satisfy for the same descriptor leaves out the item count
// (see MaxSatisfactionWeight).
func (d *Descriptor) MaxWitnessSize() int { return d.out.maxWitnessSize() }

// MaxScriptSigSize returns the size in bytes of the scriptSig that spends
// one output (without its length prefix): 35 for sh(wsh()) (a push of the
// 34-byte P2WSH program), 0 for native segwit outputs.
func (d *Descriptor) MaxScriptSigSize() int {
	if d.Type() == P2SHP2WSH {
		return p2shWSHScriptSigSize
	}
	return 0
}

// MaxSatisfactionWeight returns the weight in weight units that spending
// one output adds beyond the input's empty-scriptSig base: the witness
// without its item count plus 4 × the scriptSig bytes. This is what BDK
// and rust-miniscript call max_weight_to_satisfy.
func (d *Descriptor) MaxSatisfactionWeight() int {
	return d.MaxWitnessSize() - 1 + 4*d.MaxScriptSigSize()
}

// Derive returns the scripts, address and keys at (branch, index): the caller's own copy,
// served from a bounded cache after the first time (cache.go). branch must be below
// Branches() (ErrBranch); index must be unhardened, below 2^31 (ErrIndex).
func (d *Descriptor) Derive(branch, index uint32) (*Derived, error) {
	if int64(branch) >= int64(d.branches) {
		return nil, fmt.Errorf("descriptor: branch %d of %d: %w", branch, d.branches, ErrBranch)
	}
	if index >= hdkeychain.HardenedKeyStart {
		return nil, fmt.Errorf("descriptor: index %d is hardened: %w", index, ErrIndex)
	}
	der, err := d.cached(branch, index)
	if err != nil {
		return nil, err
	}
	return der.clone(), nil
}

// cached returns the shared, cached derivation at (branch, index), deriving it on a miss. The
// result must not be modified or handed out: Derive and PkScript copy what they return.
func (d *Descriptor) cached(branch, index uint32) (*Derived, error) {
	if d.derived == nil { // a Descriptor not made by Parse
		return d.out.derive(d.net, int(branch), index)
	}
	id := uint64(branch)<<32 | uint64(index)
	if der, ok := d.derived.Get(id); ok {
		return der, nil
	}
	der, err := d.out.derive(d.net, int(branch), index)
	if err != nil {
		return nil, err
	}
	d.derived.Add(id, der)
	return der, nil
}

// PkScript returns the scriptPubKey at (branch, index) (a fresh slice); see Derive.
func (d *Descriptor) PkScript(branch, index uint32) ([]byte, error) {
	if int64(branch) >= int64(d.branches) {
		return nil, fmt.Errorf("descriptor: branch %d of %d: %w", branch, d.branches, ErrBranch)
	}
	if index >= hdkeychain.HardenedKeyStart {
		return nil, fmt.Errorf("descriptor: index %d is hardened: %w", index, ErrIndex)
	}
	der, err := d.cached(branch, index)
	if err != nil {
		return nil, err
	}
	return slices.Clone(der.PkScript), nil
}

// FindKey returns the first key slot whose origin fingerprint is fp, and
// its 0-based position.
func (d *Descriptor) FindKey(fp [4]byte) (Key, int, bool) {
	for i, k := range d.keys {
		if k.fp == fp {
			return k.public(d.branches), i, true
		}
	}
	return Key{}, -1, false
}

// MatchPath tells whether path (a full path from the master whose
// fingerprint is fp, as found in a PSBT BIP32 derivation) is
// origin/steps-of-a-branch/index for one of the descriptor's key slots,
// and if so on which branch and at which (unhardened) index.
// It checks the path only; callers re-derive the key to compare it.
func (d *Descriptor) MatchPath(fp [4]byte, path []uint32) (branch, index uint32, ok bool) {
	for _, k := range d.keys {
		if k.fp != fp {
			continue
		}
		for b := 0; b < d.branches; b++ {
			if matchSteps(path, k.origin, k.steps(b)) {
				idx := path[len(path)-1]
				if idx >= hdkeychain.HardenedKeyStart {
					continue
				}
				return uint32(b), idx, true
			}
		}
	}
	return 0, 0, false
}

// Match answers "is this scriptPubKey ours?": it derives every branch at
// indexes 0 … lookahead−1 and returns where pkScript appears. The cost is
// Branches() × lookahead derivations; callers that track scripts (the
// watcher) should look them up in their own table instead.
func (d *Descriptor) Match(pkScript []byte, lookahead uint32) (branch, index uint32, ok bool) {
	if lookahead > hdkeychain.HardenedKeyStart {
		lookahead = hdkeychain.HardenedKeyStart
	}
	for i := uint32(0); i < lookahead; i++ {
		for b := 0; b < d.branches; b++ {
			s, err := d.PkScript(uint32(b), i)
			if err == nil && bytes.Equal(s, pkScript) {
				return uint32(b), i, true
			}
		}
	}
	return 0, 0, false
}

func matchSteps(path, origin, steps []uint32) bool {
	if len(path) != len(origin)+len(steps)+1 {
		return false
	}
	for i, s := range origin {
		if path[i] != s {
			return false
		}
	}
	for i, s := range steps {
		if path[len(origin)+i] != s {
			return false
		}
	}
	return true
}
