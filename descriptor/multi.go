package descriptor

import (
	"bytes"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
)

// multiExpr is multi(k,KEY,…) or sortedmulti(k,KEY,…) (BIP-383).
type multiExpr struct {
	k      int
	sorted bool
	keys   []*keyExpr
}

// Script context limits on the number of keys (BIP-383 "Specification").
const (
	maxKeysWSH = 20
)

func buildMulti(n *node, maxKeys int, net *chaincfg.Params) (*multiExpr, error) {
	m := &multiExpr{sorted: n.name == "sortedmulti"}
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
		m.keys = append(m.keys, ke)
	}
	return m, nil
}

// pubKeys derives the public keys at (branch, index) in script order,
// together with the slot each came from.
func (m *multiExpr) pubKeys(branch int, index uint32) ([]*btcec.PublicKey, []int, error) {
	pubs := make([]*btcec.PublicKey, len(m.keys))
	slots := make([]int, len(m.keys))
	for i, k := range m.keys {
		child, err := k.branchKey(branch).Derive(index)
		if err != nil {
			return nil, nil, fmt.Errorf("descriptor: key %d at index %d: %w", i+1, index, err)
		}
		if pubs[i], err = child.ECPubKey(); err != nil {
			return nil, nil, fmt.Errorf("descriptor: key %d at index %d: %w", i+1, index, err)
		}
		slots[i] = i
	}
	if m.sorted {
		ser := make([][]byte, len(pubs))
		for i, p := range pubs {
			ser[i] = p.SerializeCompressed()
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

// script builds OP_k <key>… OP_n OP_CHECKMULTISIG (BIP-383).
func (m *multiExpr) script(pubs []*btcec.PublicKey) ([]byte, error) {
	b := txscript.NewScriptBuilder().AddInt64(int64(m.k))
	for _, p := range pubs {
		b.AddData(p.SerializeCompressed())
	}
	return b.AddInt64(int64(len(pubs))).AddOp(txscript.OP_CHECKMULTISIG).Script()
}

func (m *multiExpr) string(branch int) string {
	var sb strings.Builder
	if m.sorted {
		sb.WriteString("sortedmulti(")
	} else {
		sb.WriteString("multi(")
	}
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
