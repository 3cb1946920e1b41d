package descriptor

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
)

// multiExpr is multi(k,KEY,…) or sortedmulti(k,KEY,…) (BIP-383), or in a
// tapscript leaf multi_a(k,KEY,…) or sortedmulti_a(k,KEY,…) (BIP-387).
type multiExpr struct {
	name   string // multi, sortedmulti, multi_a or sortedmulti_a
	k      int
	sorted bool
	tap    bool // multi_a / sortedmulti_a: x-only keys, CHECKSIGADD
	keys   []*keyExpr
	slots  []int // slots[i] is keys[i]'s position in Descriptor.keys
}

// Script context limits on the number of keys (BIP-383, BIP-387 "Specification").
const (
	maxKeysWSH    = 20
	maxKeysMultiA = 999
)

func buildMulti(n *node, maxKeys int, net *chaincfg.Params, reg *keyRegistry) (*multiExpr, error) {
	m := &multiExpr{name: n.name, sorted: strings.HasPrefix(n.name, "sorted"), tap: strings.HasSuffix(n.name, "_a")}
	if len(n.args) < 2 {
		return nil, errAt(n.pos, ErrSyntax, "%s() needs a threshold and at least one key", n.name)
	}
	th := n.args[0]
	if th.name != "" || th.text == "" || strings.Trim(th.text, "0123456789") != "" {
		return nil, errAt(th.pos, ErrThreshold, "threshold must be a number")
	}
	keyArgs := n.args[1:]
	if len(keyArgs) > maxKeys {
		return nil, errAt(keyArgs[maxKeys].pos, ErrTooManyKeys, "%s() has %d keys; at most %d are allowed here", n.name, len(keyArgs), maxKeys)
	}
	k, err := strconv.Atoi(th.text)
	if err != nil || k < 1 || k > len(keyArgs) {
		return nil, errAt(th.pos, ErrThreshold, "threshold %s must be between 1 and the number of keys (%d)", th.text, len(keyArgs))
	}
	m.k = k
	for i, a := range keyArgs {
		if a.name != "" {
			return nil, errAt(a.pos, ErrSyntax, "key %d of %s() is a script expression %s(…), expected a key", i+1, n.name, a.name)
		}
		ke, err := parseKey(a.text, a.pos, net)
		if err != nil {
			return nil, err
		}
		for j, prev := range m.keys {
			if sameXPub(prev.xpub, ke.xpub) {
				return nil, errAt(a.pos, ErrDuplicateKey, "key %d repeats the extended public key of key %d", i+1, j+1)
			}
		}
		slot, err := reg.add(ke)
		if err != nil {
			return nil, err
		}
		m.keys = append(m.keys, reg.keys[slot]) // one keyExpr (and cache) per slot
		m.slots = append(m.slots, slot)
	}
	return m, nil
}

// derivedKey describes the key pub of the multisig's i-th key expression
// (its script position may differ: sortedmulti) at (branch, index).
func (m *multiExpr) derivedKey(pub *btcec.PublicKey, i, branch int, index uint32) DerivedKey {
	k := m.keys[i]
	path := make([]uint32, 0, len(k.origin)+4)
	path = append(path, k.origin...)
	path = append(path, k.steps(branch)...)
	path = append(path, index)
	return DerivedKey{PubKey: pub, Fingerprint: k.fp, Path: path, Slot: m.slots[i]}
}

// pubKeys derives the public keys at (branch, index) in script order,
// together with the position in m.keys each came from. sortedmulti sorts
// by the compressed encoding (BIP-383), sortedmulti_a by the x-only
// encoding (BIP-387).
func (m *multiExpr) pubKeys(branch int, index uint32) ([]*btcec.PublicKey, []int, error) {
	pubs := make([]*btcec.PublicKey, len(m.keys))
	slots := make([]int, len(m.keys))
	for i, k := range m.keys {
		var err error
		if pubs[i], err = k.childPub(branch, index); err != nil {
			return nil, nil, fmt.Errorf("descriptor: key %d at index %d: %w", i+1, index, err)
		}
		slots[i] = i
	}
	if m.sorted {
		ser := make([][]byte, len(pubs))
		for i, p := range pubs {
			if m.tap {
				ser[i] = schnorr.SerializePubKey(p)
			} else {
				ser[i] = p.SerializeCompressed()
			}
		}
		sort.Sort(byKey{ser, pubs, slots})
	}
	return pubs, slots, nil
}

type byKey struct {
	ser   [][]byte
	pubs  []*btcec.PublicKey
	slots []int
}

func (s byKey) Len() int           { return len(s.ser) }
func (s byKey) Less(i, j int) bool { return bytes.Compare(s.ser[i], s.ser[j]) < 0 }
func (s byKey) Swap(i, j int) {
	s.ser[i], s.ser[j] = s.ser[j], s.ser[i]
	s.pubs[i], s.pubs[j] = s.pubs[j], s.pubs[i]
	s.slots[i], s.slots[j] = s.slots[j], s.slots[i]
}

// script builds OP_k <key>… OP_n OP_CHECKMULTISIG (BIP-383), or for
// multi_a <key1> OP_CHECKSIG <key2> OP_CHECKSIGADD … <keyn> OP_CHECKSIGADD
// OP_k OP_NUMEQUAL with x-only keys (BIP-387).
func (m *multiExpr) script(pubs []*btcec.PublicKey) ([]byte, error) {
	if m.tap {
		b := txscript.NewScriptBuilder()
		for i, p := range pubs {
			b.AddData(schnorr.SerializePubKey(p))
			if i == 0 {
				b.AddOp(txscript.OP_CHECKSIG)
			} else {
				b.AddOp(txscript.OP_CHECKSIGADD)
			}
		}
		return b.AddInt64(int64(m.k)).AddOp(txscript.OP_NUMEQUAL).Script()
	}
	b := txscript.NewScriptBuilder().AddInt64(int64(m.k))
	for _, p := range pubs {
		b.AddData(p.SerializeCompressed())
	}
	return b.AddInt64(int64(len(pubs))).AddOp(txscript.OP_CHECKMULTISIG).Script()
}

func (m *multiExpr) string(branch int) string {
	var sb strings.Builder
	sb.WriteString(m.name)
	sb.WriteByte('(')
	sb.WriteString(strconv.Itoa(m.k))
	for _, k := range m.keys {
		sb.WriteByte(',')
		sb.WriteString(k.string(branch))
	}
	sb.WriteByte(')')
	return sb.String()
}

// maxWitnessSize is the size in bytes of the largest witness satisfying
// wsh(multi): item count, the empty item CHECKMULTISIG pops, k signature
// items of at most 1+72 bytes (a low-S DER signature is at most 71 bytes,
// which standardness requires, plus the sighash byte), the witness script.
func (m *multiExpr) maxWitnessSize() int {
	scriptLen := 1 + 34*len(m.keys) + 1 + 1
	if m.k > 16 {
		scriptLen++ // threshold as a 1-byte push of a number > 16
	}
	if len(m.keys) > 16 {
		scriptLen++
	}
	return varIntLen(uint64(2+m.k)) + 1 + m.k*(1+72) + varIntLen(uint64(scriptLen)) + scriptLen
}

// tapScriptLen is the length of the multi_a leaf script: n pushes of a
// 32-byte key with CHECKSIG/CHECKSIGADD, the threshold and NUMEQUAL.
func (m *multiExpr) tapScriptLen() int {
	return len(m.keys)*(1+32+1) + scriptNumLen(m.k) + 1
}

// scriptNumLen is the size of the minimal push of n (OP_n up to 16).
func scriptNumLen(n int) int {
	switch {
	case n <= 16:
		return 1
	case n <= 0x7f:
		return 2
	case n <= 0x7fff:
		return 3
	}
	return 4
}

func varIntLen(n uint64) int {
	switch {
	case n < 0xfd:
		return 1
	case n <= 0xffff:
		return 3
	case n <= 0xffffffff:
		return 5
	}
	return 9
}

// sameXPub tells whether two extended keys have the same public key and
// chain code (and so derive the same children), whatever their metadata.
func sameXPub(a, b *hdkeychain.ExtendedKey) bool {
	pa, errA := a.ECPubKey()
	pb, errB := b.ECPubKey()
	return errA == nil && errB == nil && pa.IsEqual(pb) && bytes.Equal(a.ChainCode(), b.ChainCode())
}
