package descriptor

import (
	"slices"

	lru "github.com/hashicorp/golang-lru/v2"
)

// The derivation cache: Derive's whole result per (branch, index).
//
// A signing request derives the descriptor at every input's and every change output's
// (branch, index), several times (analysis, change re-derivation, signing); for tr() each
// derivation also hashes the tree and tweaks the internal key (an EC multiplication). The child
// public keys are cached per key slot already (keyExpr.childPub); this cache keeps the scripts,
// address and keys built from them, so a (branch, index) seen before costs a copy.
//
// Bound: MaxCachedDerivations entries per Descriptor, least recently used evicted first (a
// 2-of-3 wsh entry is about 1 KB, a tr() entry with one leaf about 1.5 KB: ~1.5 MB at the
// bound). The chain watcher deriving thousands of scripts at sync only cycles entries out; it
// never makes the cache grow past the bound.
//
// Why the cache cannot change what is signed:
//   - Scope and key: the cache belongs to one parsed Descriptor, which is immutable (its keys,
//     tree and network never change after Parse), and is keyed by the exact (branch, index)
//     Derive was asked for; another descriptor, key or index can only miss. Derive's argument
//     checks (ErrBranch, ErrIndex) run before the cache is consulted.
//   - Value: an entry is what derive computed for that (branch, index), a deterministic
//     function of the descriptor: a memo, holding no decision.
//   - Isolation: every Derive returns a fresh copy (slices and the Derived/TaprootDerived
//     structs are copied; public keys and the address, which no method mutates, are shared), so
//     a caller that modifies its result (or a PSBT that aliases its scripts) cannot change what
//     the next caller gets.
//   - Concurrency: the LRU is goroutine-safe; two racing misses compute the same value.

// MaxCachedDerivations bounds the Derived results one Descriptor caches.
const MaxCachedDerivations = 1024

func newDerivedCache() *lru.Cache[uint64, *Derived] {
	c, err := lru.New[uint64, *Derived](MaxCachedDerivations)
	if err != nil {
		panic(err) // only for a size ≤ 0, a programming error
	}
	return c
}

// clone returns a deep copy of d's slices and structs (public keys and the address shared).
func (d *Derived) clone() *Derived {
	out := *d
	out.WitnessScript = slices.Clone(d.WitnessScript)
	out.RedeemScript = slices.Clone(d.RedeemScript)
	out.PkScript = slices.Clone(d.PkScript)
	out.Keys = cloneKeys(d.Keys)
	if d.Taproot != nil {
		tr := *d.Taproot
		tr.MerkleRoot = slices.Clone(d.Taproot.MerkleRoot)
		tr.Leaves = make([]TapLeaf, len(d.Taproot.Leaves))
		for i, l := range d.Taproot.Leaves {
			l.Script = slices.Clone(l.Script)
			l.ControlBlock = slices.Clone(l.ControlBlock)
			l.Keys = cloneKeys(l.Keys)
			tr.Leaves[i] = l
		}
		out.Taproot = &tr
	}
	return &out
}

func cloneKeys(keys []DerivedKey) []DerivedKey {
	if keys == nil {
		return nil
	}
	out := make([]DerivedKey, len(keys))
	for i, k := range keys {
		k.Path = slices.Clone(k.Path)
		k.LeafHashes = slices.Clone(k.LeafHashes)
		out[i] = k
	}
	return out
}
