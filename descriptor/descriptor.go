package descriptor

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
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
}

// outputExpr is a top-level script expression that yields output scripts.
// wsh() implements it today; sh(wsh()) and tr() are meant to follow.
type outputExpr interface {
	derive(net *chaincfg.Params, branch int, index uint32) (*Derived, error)
	string(branch int) string
	maxWitnessSize() int
}

// Derived is what a descriptor yields at one (branch, index).
type Derived struct {
	// WitnessScript is the script committed to by a wsh() output.
	WitnessScript []byte
	// RedeemScript is the P2SH redeem script; nil for wsh().
	RedeemScript []byte
	// PkScript is the output's scriptPubKey.
	PkScript []byte
	// Address is the output's address on the descriptor's network.
	Address btcutil.Address
	// Keys are the derived public keys in the order they appear in the
	// script (sorted for sortedmulti).
	Keys []DerivedKey
}

// DerivedKey is one public key in a derived script and where it came from.
type DerivedKey struct {
	PubKey *btcec.PublicKey
	// Fingerprint is the master fingerprint of the key's slot (Key.Fingerprint).
	Fingerprint [4]byte
	// Path is the full derivation path from the master: the key origin,
	// the branch's steps, then the index. Usable as a PSBT BIP32 derivation.
	Path []uint32
	// Slot is the key's position (0-based) in the descriptor text.
	Slot int
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
// n ≤ 20, each KEY written as [fingerprint/path]xpub/…/*: an extended public
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
	d := &Descriptor{net: net}
	switch n.name {
	case "wsh":
		if len(n.args) != 1 {
			return nil, errAt(n.pos, ErrSyntax, "wsh() takes exactly one script expression")
		}
		inner := n.args[0]
		switch inner.name {
		case "multi", "sortedmulti":
		case "":
			return nil, errAt(inner.pos, ErrSyntax, "wsh() needs a script expression such as sortedmulti(…), got %q", inner.text)
		default:
			return nil, errAt(inner.pos, ErrUnsupported, "wsh(%s(…)) is not supported: use wsh(multi(…)) or wsh(sortedmulti(…))", inner.name)
		}
		m, err := buildMulti(inner, maxKeysWSH, net)
		if err != nil {
			return nil, err
		}
		d.out = &wshExpr{multi: m}
		d.keys = m.keys
	case "":
		return nil, errAt(n.pos, ErrSyntax, "expected a script expression such as wsh(…)")
	case "sh", "tr", "pk", "pkh", "wpkh", "combo", "multi", "sortedmulti", "multi_a", "sortedmulti_a", "raw", "rawtr", "addr":
		return nil, errAt(n.pos, ErrUnsupported, "%s(…) descriptors are not supported (yet): use wsh(multi(…)) or wsh(sortedmulti(…))", n.name)
	default:
		return nil, errAt(n.pos, ErrSyntax, "unknown script expression %s(…)", n.name)
	}

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
	out := &Derived{WitnessScript: ws, PkScript: pk, Address: addr, Keys: make([]DerivedKey, len(pubs))}
	for i, p := range pubs {
		k := w.multi.keys[slots[i]]
		path := make([]uint32, 0, len(k.origin)+4)
		path = append(path, k.origin...)
		path = append(path, k.steps(branch)...)
		path = append(path, index)
		out.Keys[i] = DerivedKey{PubKey: p, Fingerprint: k.fp, Path: path, Slot: slots[i]}
	}
	return out, nil
}

func (w *wshExpr) string(branch int) string { return "wsh(" + w.multi.string(branch) + ")" }

func (w *wshExpr) maxWitnessSize() int { return w.multi.maxWitnessSize() }

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

// Threshold returns k of the k-of-n multisig.
func (d *Descriptor) Threshold() int {
	if w, ok := d.out.(*wshExpr); ok {
		return w.multi.k
	}
	return 0
}

// Sorted tells whether keys are sorted in the script (sortedmulti).
func (d *Descriptor) Sorted() bool {
	if w, ok := d.out.(*wshExpr); ok {
		return w.multi.sorted
	}
	return false
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
// count (low-S signatures: at most 72 bytes with the sighash byte).
// Witness bytes weigh 1 weight unit each; BDK's max_weight_to_satisfy for
// the same descriptor is one less, as it leaves out the item count.
func (d *Descriptor) MaxWitnessSize() int { return d.out.maxWitnessSize() }

// Derive returns the scripts, address and keys at (branch, index).
// branch must be below Branches() (ErrBranch); index must be unhardened,
// below 2^31 (ErrIndex).
func (d *Descriptor) Derive(branch, index uint32) (*Derived, error) {
	if int64(branch) >= int64(d.branches) {
		return nil, fmt.Errorf("descriptor: branch %d of %d: %w", branch, d.branches, ErrBranch)
	}
	if index >= hdkeychain.HardenedKeyStart {
		return nil, fmt.Errorf("descriptor: index %d is hardened: %w", index, ErrIndex)
	}
	return d.out.derive(d.net, int(branch), index)
}

// PkScript returns the scriptPubKey at (branch, index); see Derive.
func (d *Descriptor) PkScript(branch, index uint32) ([]byte, error) {
	der, err := d.Derive(branch, index)
	if err != nil {
		return nil, err
	}
	return der.PkScript, nil
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
