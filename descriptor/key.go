package descriptor

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
)

// Key is one key slot of a descriptor: an extended public key, where it
// came from, and how keys are derived from it on each branch.
type Key struct {
	// Fingerprint is the master key fingerprint from the key origin
	// ([fingerprint/path]). Without an origin it is the XPub's own
	// fingerprint (as Bitcoin Core does), and OriginPath is empty.
	Fingerprint [4]byte
	// OriginPath is the derivation path from the master key to XPub.
	// Hardened steps have hdkeychain.HardenedKeyStart added.
	OriginPath []uint32
	// HasOrigin tells whether the key expression carried [fingerprint/path].
	HasOrigin bool
	// XPub is the extended public key as written. Shared, treat as read-only.
	XPub *hdkeychain.ExtendedKey
	// Steps[b] are the unhardened steps from XPub to the parent of the
	// wildcard on branch b; len(Steps) == Descriptor.Branches().
	// For ".../<0;1>/*" that is [[0] [1]]; for ".../0/*" it is [[0]].
	Steps [][]uint32
}

// Path returns the full derivation path from the master key to the key at
// (branch, index): OriginPath, then Steps[branch], then index.
// The caller must pass a branch < len(Steps).
func (k Key) Path(branch, index uint32) []uint32 {
	p := make([]uint32, 0, len(k.OriginPath)+len(k.Steps[branch])+1)
	p = append(p, k.OriginPath...)
	p = append(p, k.Steps[branch]...)
	return append(p, index)
}

// keyExpr is a parsed key expression (BIP-380 "Key Expressions" with the
// BIP-389 multipath extension), restricted to ranged extended public keys.
type keyExpr struct {
	pos       int
	fp        [4]byte
	hasOrigin bool
	origin    []uint32
	xpub      *hdkeychain.ExtendedKey
	prefix    []uint32 // steps before the multipath step
	multi     []uint32 // the multipath tuple; nil when there is none
	suffix    []uint32 // steps after the multipath step, before the wildcard
	// branchKeys[b] is xpub derived along prefix/multi[b]/suffix; one
	// element when there is no multipath step.
	branchKeys []*hdkeychain.ExtendedKey
	// parents[b] is branchKeys[b] parsed once for child derivation (ckd.go).
	parents []*ckdParent

	// cache holds derived child public keys by (branch, index): deriving
	// is the costliest step of analysing a PSBT, and the same few indexes
	// are derived again and again (inputs, change, signing).
	mu    sync.Mutex
	cache map[uint64]*btcec.PublicKey
}

// maxChildCache bounds a key's cache of derived children; it is emptied
// when full (a wallet uses far fewer indexes than this at a time).
const maxChildCache = 1 << 14

// childPub returns the public key at (branch, index) below the key's
// branch key: the derivation the wildcard stands for.
func (k *keyExpr) childPub(branch int, index uint32) (*btcec.PublicKey, error) {
	id := uint64(branch)<<32 | uint64(index)
	k.mu.Lock()
	pub, ok := k.cache[id]
	k.mu.Unlock()
	if ok {
		return pub, nil
	}
	pub, err := k.parent(branch).child(index)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	if k.cache == nil || len(k.cache) >= maxChildCache {
		k.cache = make(map[uint64]*btcec.PublicKey)
	}
	k.cache[id] = pub
	k.mu.Unlock()
	return pub, nil
}

// maxStepsAfterKey bounds the steps between an extended key and the end of
// its path (the multipath step counted, the wildcard not): BIP-48 wallets
// use one (/<0;1>); each step costs an EC derivation at parse time.
const maxStepsAfterKey = 16

// pathElem is one "/"-separated element with its offset in the descriptor.
type pathElem struct {
	text string
	pos  int
}

func splitPath(s string, pos int) []pathElem {
	var out []pathElem
	for {
		i := strings.IndexByte(s, '/')
		if i < 0 {
			return append(out, pathElem{s, pos})
		}
		out = append(out, pathElem{s[:i], pos})
		s, pos = s[i+1:], pos+i+1
	}
}

// parseStep parses NUM with an optional hardened marker (h, H or ').
func parseStep(e pathElem) (step uint32, hardened bool, err error) {
	t := e.text
	if t == "" {
		return 0, false, errAt(e.pos, ErrSyntax, "empty derivation step")
	}
	if c := t[len(t)-1]; c == 'h' || c == 'H' || c == '\'' {
		hardened, t = true, t[:len(t)-1]
	}
	if t == "" || strings.Trim(t, "0123456789") != "" {
		return 0, false, errAt(e.pos, ErrSyntax, "derivation step %q is not a number (optionally followed by h or ')", e.text)
	}
	v, perr := strconv.ParseUint(t, 10, 32)
	if perr != nil || v >= hdkeychain.HardenedKeyStart {
		return 0, false, errAt(e.pos, ErrSyntax, "derivation step %q is out of range (must be below 2^31)", e.text)
	}
	if hardened {
		v += hdkeychain.HardenedKeyStart
	}
	return uint32(v), hardened, nil
}

// parseKey parses one key expression tok found at offset pos.
func parseKey(tok string, pos int, net *chaincfg.Params) (*keyExpr, error) {
	k := &keyExpr{pos: pos}
	rest, restPos := tok, pos
	if strings.HasPrefix(tok, "[") {
		end := strings.IndexByte(tok, ']')
		if end < 0 {
			return nil, errAt(pos, ErrSyntax, "key origin '[' is not closed by ']'")
		}
		if err := k.parseOrigin(tok[1:end], pos+1); err != nil {
			return nil, err
		}
		rest, restPos = tok[end+1:], pos+end+1
	}
	if i := strings.IndexAny(rest, "[]"); i >= 0 {
		if rest[i] == '[' {
			return nil, errAt(restPos+i, ErrSyntax, "unexpected '[': only one key origin, at the start of the key expression")
		}
		return nil, errAt(restPos+i, ErrSyntax, "unexpected ']' without a '[' starting the key origin")
	}
	elems := splitPath(rest, restPos)
	keyText := elems[0]
	if keyText.text == "" {
		return nil, errAt(keyText.pos, ErrSyntax, "missing key after the key origin")
	}

	// Derivation after the key: unhardened steps, at most one multipath
	// step, and a final unhardened wildcard.
	steps := elems[1:]
	ranged := false
	afterMulti := false
	for i, e := range steps {
		switch {
		case e.text == "*":
			if i != len(steps)-1 {
				return nil, errAt(e.pos, ErrSyntax, "the wildcard * must be the last step")
			}
			ranged = true
		case len(e.text) == 2 && e.text[0] == '*':
			if i != len(steps)-1 {
				return nil, errAt(e.pos, ErrSyntax, "the wildcard * must be the last step")
			}
			if c := e.text[1]; c != 'h' && c != 'H' && c != '\'' {
				return nil, errAt(e.pos, ErrSyntax, "bad wildcard %q", e.text)
			}
			return nil, errAt(e.pos, ErrHardenedDerivation, "hardened wildcard %q cannot be derived from an extended public key; use /*", e.text)
		case strings.HasPrefix(e.text, "<"):
			if k.multi != nil {
				return nil, errAt(e.pos, ErrMultipath, "only one multipath step <…;…> is allowed per key")
			}
			m, err := parseMultipath(e)
			if err != nil {
				return nil, err
			}
			k.multi, afterMulti = m, true
		default:
			if strings.ContainsAny(e.text, "<>;") {
				return nil, errAt(e.pos, ErrSyntax, "malformed multipath step %q: write /<a;b>", e.text)
			}
			v, hardened, err := parseStep(e)
			if err != nil {
				return nil, err
			}
			if hardened {
				return nil, errAt(e.pos, ErrHardenedDerivation, "hardened step %q after an extended public key cannot be derived; move it into the key origin", e.text)
			}
			if afterMulti {
				k.suffix = append(k.suffix, v)
			} else {
				k.prefix = append(k.prefix, v)
			}
		}
	}

	nSteps := len(k.prefix) + len(k.suffix)
	if k.multi != nil {
		nSteps++
	}
	if nSteps > maxStepsAfterKey {
		return nil, errAt(steps[0].pos, ErrUnsupported, "%d derivation steps after the key; at most %d are supported", nSteps, maxStepsAfterKey)
	}
	if err := k.parseKeyText(keyText, net); err != nil {
		return nil, err
	}
	if !ranged {
		return nil, errAt(pos, ErrNotRanged, "key must end with the wildcard /* (for example …/<0;1>/*)")
	}
	if err := k.deriveBranches(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *keyExpr) parseOrigin(s string, pos int) error {
	elems := splitPath(s, pos)
	fp := elems[0]
	if len(fp.text) != 8 {
		return errAt(fp.pos, ErrSyntax, "key origin fingerprint must be 8 hex characters, got %d", len(fp.text))
	}
	b, err := hex.DecodeString(fp.text)
	if err != nil {
		return errAt(fp.pos, ErrSyntax, "key origin fingerprint %q is not hex", fp.text)
	}
	copy(k.fp[:], b)
	k.hasOrigin = true
	k.origin = []uint32{}
	for _, e := range elems[1:] {
		if strings.HasPrefix(e.text, "*") {
			return errAt(e.pos, ErrSyntax, "wildcard not allowed in the key origin")
		}
		if strings.ContainsAny(e.text, "<>;") {
			return errAt(e.pos, ErrMultipath, "multipath step not allowed in the key origin")
		}
		v, _, err := parseStep(e)
		if err != nil {
			return err
		}
		k.origin = append(k.origin, v)
	}
	return nil
}

// parseMultipath parses "<NUM;NUM;…>" (BIP-389): at least two distinct
// unhardened numbers.
func parseMultipath(e pathElem) ([]uint32, error) {
	t := e.text
	if !strings.HasSuffix(t, ">") {
		return nil, errAt(e.pos, ErrSyntax, "multipath step %q is missing its closing '>'", t)
	}
	parts := strings.Split(t[1:len(t)-1], ";")
	if len(parts) < 2 {
		return nil, errAt(e.pos, ErrMultipath, "multipath step %q needs at least two values, as in <0;1>", t)
	}
	out := make([]uint32, 0, len(parts))
	p := e.pos + 1
	for _, part := range parts {
		v, hardened, err := parseStep(pathElem{part, p})
		if err != nil {
			return nil, err
		}
		if hardened {
			return nil, errAt(p, ErrHardenedDerivation, "hardened multipath value %q cannot be derived from an extended public key", part)
		}
		for _, prev := range out {
			if prev == v {
				return nil, errAt(p, ErrMultipath, "value %d appears twice in multipath step %q", v, t)
			}
		}
		out = append(out, v)
		p += len(part) + 1
	}
	return out, nil
}

var (
	slip132Prefixes = []string{"ypub", "zpub", "Ypub", "Zpub", "upub", "vpub", "Upub", "Vpub"}
)

// parseKeyText classifies the key itself. Error messages never repeat the
// key text: it may be a private key.
func (k *keyExpr) parseKeyText(e pathElem, net *chaincfg.Params) error {
	t := e.text
	if (len(t) == 66 || len(t) == 130) && isHex(t) {
		return errAt(e.pos, ErrUnsupported, "plain hex public keys are not supported: use an extended public key with key origin")
	}
	if _, err := btcutil.DecodeWIF(t); err == nil {
		return errAt(e.pos, ErrPrivateKey, "WIF private key: a descriptor here holds public keys only")
	}
	xk, err := hdkeychain.NewKeyFromString(t)
	if err != nil {
		for _, p := range slip132Prefixes {
			if strings.HasPrefix(t, p) {
				return errAt(e.pos, ErrUnsupported, "SLIP-132 %s… keys are not accepted: convert to xpub/tpub", p)
			}
		}
		return errAt(e.pos, ErrSyntax, "not a valid extended public key: %v", err)
	}
	if xk.IsPrivate() {
		return errAt(e.pos, ErrPrivateKey, "extended private key: register the extended public key instead")
	}
	if !xk.IsForNet(net) {
		for _, p := range slip132Prefixes {
			if strings.HasPrefix(t, p) {
				return errAt(e.pos, ErrUnsupported, "SLIP-132 %s… keys are not accepted: convert to xpub/tpub", p)
			}
		}
		return errAt(e.pos, ErrNetwork, "extended key %s… is not for %s (want %s…)", t[:min(4, len(t))], net.Name, xpubPrefix(net))
	}
	k.xpub = xk
	if !k.hasOrigin {
		pub, err := xk.ECPubKey()
		if err != nil {
			return errAt(e.pos, ErrSyntax, "extended public key: %v", err)
		}
		copy(k.fp[:], btcutil.Hash160(pub.SerializeCompressed())[:4])
	}
	return nil
}

// xpubPrefix returns the base58 prefix of extended public keys on net.
func xpubPrefix(net *chaincfg.Params) string {
	xk := hdkeychain.NewExtendedKey(net.HDPublicKeyID[:], bytes.Repeat([]byte{2}, 33), make([]byte, 32), make([]byte, 4), 0, 0, false)
	return xk.String()[:4]
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}

func (k *keyExpr) deriveBranches() error {
	n := 1
	if k.multi != nil {
		n = len(k.multi)
	}
	k.branchKeys = make([]*hdkeychain.ExtendedKey, n)
	for b := 0; b < n; b++ {
		xk := k.xpub
		for _, s := range k.steps(b) {
			var err error
			if xk, err = xk.Derive(s); err != nil {
				return errAt(k.pos, ErrUnsupported, "cannot derive step %d from this key: %v", s, err)
			}
		}
		k.branchKeys[b] = xk
	}
	parents, err := branchParents(k.branchKeys)
	if err != nil {
		return errAt(k.pos, ErrUnsupported, "cannot use this key: %v", err)
	}
	k.parents = parents
	return nil
}

// steps returns the steps from the xpub to the wildcard's parent on branch
// b, a fresh slice. Keys without multipath have the same steps on every branch.
func (k *keyExpr) steps(b int) []uint32 {
	out := make([]uint32, 0, len(k.prefix)+1+len(k.suffix))
	out = append(out, k.prefix...)
	if k.multi != nil {
		out = append(out, k.multi[b])
	}
	return append(out, k.suffix...)
}

// parent returns the parsed branch key at the wildcard's parent on branch b.
func (k *keyExpr) parent(b int) *ckdParent {
	if k.multi == nil {
		return k.parents[0]
	}
	return k.parents[b]
}

// public returns the exported view of the key for a descriptor with
// the given number of branches.
func (k *keyExpr) public(branches int) Key {
	out := Key{
		Fingerprint: k.fp,
		OriginPath:  append([]uint32{}, k.origin...),
		HasOrigin:   k.hasOrigin,
		XPub:        k.xpub,
		Steps:       make([][]uint32, branches),
	}
	for b := range out.Steps {
		out.Steps[b] = k.steps(b)
	}
	return out
}

// string writes the canonical key expression. branch < 0 keeps the
// multipath step; otherwise it is replaced by the branch's value.
func (k *keyExpr) string(branch int) string {
	var sb strings.Builder
	if k.hasOrigin {
		sb.WriteByte('[')
		sb.WriteString(hex.EncodeToString(k.fp[:]))
		writePath(&sb, k.origin)
		sb.WriteByte(']')
	}
	sb.WriteString(k.xpub.String())
	writePath(&sb, k.prefix)
	if k.multi != nil {
		if branch < 0 {
			sb.WriteString("/<")
			for i, v := range k.multi {
				if i > 0 {
					sb.WriteByte(';')
				}
				sb.WriteString(strconv.FormatUint(uint64(v), 10))
			}
			sb.WriteByte('>')
		} else {
			sb.WriteByte('/')
			sb.WriteString(strconv.FormatUint(uint64(k.multi[branch]), 10))
		}
	}
	writePath(&sb, k.suffix)
	sb.WriteString("/*")
	return sb.String()
}

func writePath(sb *strings.Builder, path []uint32) {
	for _, s := range path {
		sb.WriteByte('/')
		if s >= hdkeychain.HardenedKeyStart {
			sb.WriteString(strconv.FormatUint(uint64(s-hdkeychain.HardenedKeyStart), 10))
			sb.WriteByte('h')
		} else {
			sb.WriteString(strconv.FormatUint(uint64(s), 10))
		}
	}
}

// FormatPath writes a derivation path as "m/48h/1h/0h/2h/0/5".
func FormatPath(path []uint32) string {
	var sb strings.Builder
	sb.WriteByte('m')
	writePath(&sb, path)
	return sb.String()
}
