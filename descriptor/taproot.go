package descriptor

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
)

// NUMSKey is the x-only "nothing up my sleeve" point H of BIP-341
// ("Constructing and spending Taproot outputs"): lift_x(SHA256(G)), whose
// discrete logarithm nobody knows. An internal key equal to it makes the
// key path unspendable, so only the script tree can spend.
const NUMSKey = "50929b74c1a04954b78b4b6035e97a5e078a5a0f28ec96d547bfee9ace803ac0"

// maxTreeDepth is the deepest tapscript tree BIP-341 allows (control block
// with 128 hashes).
const maxTreeDepth = 128

// TaprootDerived is the BIP-341 commitment of a tr() output at one index.
type TaprootDerived struct {
	// InternalKey is the internal key P (even Y, as BIP-341 uses it).
	InternalKey *btcec.PublicKey
	// MerkleRoot is the 32-byte root of the script tree.
	MerkleRoot []byte
	// OutputKey is Q = P + t·G, t = hash_TapTweak(P || merkle root); the
	// witness program is its x-only encoding.
	OutputKey *btcec.PublicKey
	// Leaves are the tapscript leaves in descriptor (left to right) order.
	Leaves []TapLeaf
}

// TapLeaf is one tapscript leaf of a derived tr() output.
type TapLeaf struct {
	// Script is the multi_a / sortedmulti_a tapscript (BIP-387).
	Script []byte
	// LeafVersion is 0xc0 (BIP-342 tapscript).
	LeafVersion txscript.TapscriptLeafVersion
	// LeafHash is hash_TapLeaf(version || compact_size(len) || script).
	LeafHash chainhash.Hash
	// ControlBlock is the BIP-341 control block for a script-path spend of
	// this leaf: version|parity, internal key, then the merkle path.
	ControlBlock []byte
	// Depth is the leaf's depth in the tree (0 for a single leaf).
	Depth int
	// Threshold is k of the leaf's k-of-n.
	Threshold int
	// Keys are the leaf's keys in script order (Slot refers to Descriptor.Keys()).
	Keys []DerivedKey
}

// trExpr is tr(KEY,TREE) (BIP-386) with multi_a/sortedmulti_a leaves.
type trExpr struct {
	// internal is a ranged key (with slot), or a fixed x-only key (NUMS).
	internal     *keyExpr
	internalSlot int
	fixed        *btcec.PublicKey
	fixedText    string
	tree         *tapNode
}

// tapNode is a leaf (multi != nil) or a branch {left,right}.
type tapNode struct {
	multi       *multiExpr
	left, right *tapNode
}

func buildTr(n *node, net *chaincfg.Params, reg *keyRegistry) (*trExpr, error) {
	switch len(n.args) {
	case 1:
		return nil, errAt(n.pos, ErrUnsupported, "tr(KEY) without a script tree is a single-key wallet; a co-signer needs tr(KEY,multi_a(…)) or a tree of multi_a/sortedmulti_a leaves")
	case 2:
	default:
		return nil, errAt(n.pos, ErrSyntax, "tr() takes an internal key and one script tree")
	}
	t := &trExpr{}
	ik := n.args[0]
	if ik.name != "" {
		return nil, errAt(ik.pos, ErrSyntax, "the first argument of tr() must be a key, got %s(…)", ik.name)
	}
	if isHex(ik.text) && (len(ik.text) == 64 || len(ik.text) == 66) {
		b, _ := hex.DecodeString(ik.text)
		if len(b) == 33 {
			if b[0] != 2 && b[0] != 3 {
				return nil, errAt(ik.pos, ErrSyntax, "internal key is not a compressed public key")
			}
			b = b[1:]
		}
		pk, err := schnorr.ParsePubKey(b)
		if err != nil {
			return nil, errAt(ik.pos, ErrSyntax, "internal key is not a point on the curve: %v", err)
		}
		t.fixed, t.fixedText = pk, strings.ToLower(ik.text)
	} else {
		ke, err := parseKey(ik.text, ik.pos, net)
		if err != nil {
			return nil, err
		}
		if t.internalSlot, err = reg.add(ke); err != nil {
			return nil, err
		}
		t.internal = reg.keys[t.internalSlot]
	}
	tree, err := buildTapTree(n.args[1], 0, net, reg)
	if err != nil {
		return nil, err
	}
	t.tree = tree
	return t, nil
}

func buildTapTree(n *node, depth int, net *chaincfg.Params, reg *keyRegistry) (*tapNode, error) {
	if depth > maxTreeDepth {
		return nil, errAt(n.pos, ErrSyntax, "script tree deeper than %d (BIP-341)", maxTreeDepth)
	}
	switch n.name {
	case braceName:
		l, err := buildTapTree(n.args[0], depth+1, net, reg)
		if err != nil {
			return nil, err
		}
		r, err := buildTapTree(n.args[1], depth+1, net, reg)
		if err != nil {
			return nil, err
		}
		return &tapNode{left: l, right: r}, nil
	case "multi_a", "sortedmulti_a":
		m, err := buildMulti(n, maxKeysMultiA, net, reg)
		if err != nil {
			return nil, err
		}
		return &tapNode{multi: m}, nil
	case "multi", "sortedmulti":
		return nil, errAt(n.pos, ErrUnsupported, "%s() is not allowed in a tapscript leaf: use %s_a() (BIP-387)", n.name, n.name)
	case "":
		return nil, errAt(n.pos, ErrSyntax, "a tapscript leaf must be multi_a(…) or sortedmulti_a(…), got %q", n.text)
	default:
		return nil, errAt(n.pos, ErrUnsupported, "%s(…) leaves are not supported: use multi_a(…) or sortedmulti_a(…)", n.name)
	}
}

// leaves returns the leaf multisigs left to right.
func (t *trExpr) leaves() []*multiExpr {
	var out []*multiExpr
	var walk func(n *tapNode)
	walk = func(n *tapNode) {
		if n.multi != nil {
			out = append(out, n.multi)
			return
		}
		walk(n.left)
		walk(n.right)
	}
	walk(t.tree)
	return out
}

func (t *trExpr) scriptType() ScriptType { return P2TR }

func (t *trExpr) string(branch int) string {
	var sb strings.Builder
	sb.WriteString("tr(")
	if t.internal != nil {
		sb.WriteString(t.internal.string(branch))
	} else {
		sb.WriteString(t.fixedText)
	}
	sb.WriteByte(',')
	var walk func(n *tapNode)
	walk = func(n *tapNode) {
		if n.multi != nil {
			sb.WriteString(n.multi.string(branch))
			return
		}
		sb.WriteByte('{')
		walk(n.left)
		sb.WriteByte(',')
		walk(n.right)
		sb.WriteByte('}')
	}
	walk(t.tree)
	sb.WriteByte(')')
	return sb.String()
}

// derivedLeaf is a leaf while the tree is hashed: its data and the merkle
// path collected from the leaf up.
type derivedLeaf struct {
	leaf  TapLeaf
	proof []byte
}

func (t *trExpr) derive(net *chaincfg.Params, branch int, index uint32) (*Derived, error) {
	out := &Derived{Type: P2TR}
	var internal *btcec.PublicKey
	bySlot := map[int]int{} // slot → position in out.Keys
	if t.internal != nil {
		pub, err := t.internal.childPub(branch, index)
		if err != nil {
			return nil, fmt.Errorf("descriptor: internal key at index %d: %w", index, err)
		}
		if internal, err = schnorr.ParsePubKey(schnorr.SerializePubKey(pub)); err != nil {
			return nil, fmt.Errorf("descriptor: internal key at index %d: %w", index, err)
		}
		k := t.internal
		path := append(append(append([]uint32{}, k.origin...), k.steps(branch)...), index)
		bySlot[t.internalSlot] = 0
		out.Keys = append(out.Keys, DerivedKey{PubKey: pub, Fingerprint: k.fp, Path: path, Slot: t.internalSlot, Internal: true})
	} else {
		internal = t.fixed
	}

	var hashNode func(n *tapNode, depth int) (chainhash.Hash, []*derivedLeaf, error)
	hashNode = func(n *tapNode, depth int) (chainhash.Hash, []*derivedLeaf, error) {
		if n.multi != nil {
			pubs, pos, err := n.multi.pubKeys(branch, index)
			if err != nil {
				return chainhash.Hash{}, nil, err
			}
			script, err := n.multi.script(pubs)
			if err != nil {
				return chainhash.Hash{}, nil, fmt.Errorf("descriptor: building tapscript: %w", err)
			}
			tl := txscript.NewBaseTapLeaf(script)
			leaf := TapLeaf{Script: script, LeafVersion: tl.LeafVersion, LeafHash: tl.TapHash(), Depth: depth, Threshold: n.multi.k}
			for i, p := range pubs {
				leaf.Keys = append(leaf.Keys, n.multi.derivedKey(p, pos[i], branch, index))
			}
			return leaf.LeafHash, []*derivedLeaf{{leaf: leaf}}, nil
		}
		lh, ll, err := hashNode(n.left, depth+1)
		if err != nil {
			return chainhash.Hash{}, nil, err
		}
		rh, rl, err := hashNode(n.right, depth+1)
		if err != nil {
			return chainhash.Hash{}, nil, err
		}
		for _, l := range ll {
			l.proof = append(l.proof, rh[:]...)
		}
		for _, l := range rl {
			l.proof = append(l.proof, lh[:]...)
		}
		return tapBranchHash(lh, rh), append(ll, rl...), nil
	}
	root, leaves, err := hashNode(t.tree, 0)
	if err != nil {
		return nil, err
	}
	outKey := txscript.ComputeTaprootOutputKey(internal, root[:])
	tr := &TaprootDerived{InternalKey: internal, MerkleRoot: root[:], OutputKey: outKey}
	oddY := outKey.SerializeCompressed()[0] == 0x03
	for _, l := range leaves {
		cb := txscript.ControlBlock{InternalKey: internal, OutputKeyYIsOdd: oddY, LeafVersion: l.leaf.LeafVersion, InclusionProof: l.proof}
		if l.leaf.ControlBlock, err = cb.ToBytes(); err != nil {
			return nil, fmt.Errorf("descriptor: control block: %w", err)
		}
		tr.Leaves = append(tr.Leaves, l.leaf)
		for _, k := range l.leaf.Keys {
			pos, ok := bySlot[k.Slot]
			if !ok {
				pos = len(out.Keys)
				bySlot[k.Slot] = pos
				k.LeafHashes = nil
				out.Keys = append(out.Keys, k)
			}
			out.Keys[pos].LeafHashes = append(out.Keys[pos].LeafHashes, l.leaf.LeafHash)
		}
	}
	out.Taproot = tr
	addr, err := btcutil.NewAddressTaproot(schnorr.SerializePubKey(outKey), net)
	if err != nil {
		return nil, fmt.Errorf("descriptor: taproot address: %w", err)
	}
	if out.PkScript, err = txscript.PayToAddrScript(addr); err != nil {
		return nil, fmt.Errorf("descriptor: taproot pkScript: %w", err)
	}
	out.Address = addr
	return out, nil
}

// tapBranchHash is hash_TapBranch(min(a,b) || max(a,b)) (BIP-341).
func tapBranchHash(a, b chainhash.Hash) chainhash.Hash {
	if bytes.Compare(a[:], b[:]) > 0 {
		a, b = b, a
	}
	return *chainhash.TaggedHash(chainhash.TagTapBranch, a[:], b[:])
}

// maxWitnessSize is the largest witness over every spending path: the key
// path (one 65-byte signature) and each leaf (n items: k signatures of
// 1+65 bytes and n−k empty items, the script, the control block of
// 33 + 32·depth bytes), each with the witness item count.
func (t *trExpr) maxWitnessSize() int {
	best := 1 + 1 + 65
	var walk func(n *tapNode, depth int)
	walk = func(n *tapNode, depth int) {
		if n.multi != nil {
			nk := len(n.multi.keys)
			sl := n.multi.tapScriptLen()
			cb := 33 + 32*depth
			w := varIntLen(uint64(nk+2)) + n.multi.k*(1+65) + (nk - n.multi.k) +
				varIntLen(uint64(sl)) + sl + varIntLen(uint64(cb)) + cb
			best = max(best, w)
			return
		}
		walk(n.left, depth+1)
		walk(n.right, depth+1)
	}
	walk(t.tree, 0)
	return best
}

// KeyPathSpendable tells whether a tr() descriptor's internal key can sign:
// false when it is the BIP-341 NUMS point H, or an extended key whose key
// is H (as wallets such as Liana write an unspendable ranged internal key:
// its children H + t·G have no known discrete logarithm either); true for
// any other key, whose owner may hold its private key. Always false for
// wsh / sh(wsh).
func (d *Descriptor) KeyPathSpendable() bool {
	t, ok := d.out.(*trExpr)
	if !ok {
		return false
	}
	pub := t.fixed
	if t.internal != nil {
		var err error
		if pub, err = t.internal.xpub.ECPubKey(); err != nil {
			return true
		}
	}
	return hex.EncodeToString(schnorr.SerializePubKey(pub)) != NUMSKey
}
