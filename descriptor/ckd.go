package descriptor

import (
	"crypto/hmac"
	"crypto/sha512"
	"encoding/binary"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
)

// ckdParent is a branch key (the wildcard's parent) parsed once for BIP-32 public child
// derivation, CKDpub (https://github.com/bitcoin/bips/blob/master/bip-0032.mediawiki,
// "Public parent key → public child key"). hdkeychain's Derive decompresses the parent's
// serialized key on every call and the caller parses the child's serialized key again (two
// square roots per child, most of the cost after the scalar multiplication); a wallet sync
// derives thousands of children of the same few parents, so the parent's point is kept here.
// Immutable once built; safe for concurrent use.
type ckdParent struct {
	point     btcec.JacobianPoint // the parent public key, affine (Z = 1)
	ser       [33]byte            // serP(parent): its compressed encoding
	chainCode [32]byte
	depth     uint8
}

// newCKDParent parses xk's public key and chain code once.
func newCKDParent(xk *hdkeychain.ExtendedKey) (*ckdParent, error) {
	pub, err := xk.ECPubKey()
	if err != nil {
		return nil, err
	}
	p := &ckdParent{depth: xk.Depth()}
	pub.AsJacobian(&p.point)
	copy(p.ser[:], pub.SerializeCompressed())
	copy(p.chainCode[:], xk.ChainCode())
	return p, nil
}

// child returns the public key of the unhardened child index (CKDpub): I = HMAC-SHA512(c_par,
// serP(K_par) || ser32(i)); K_i = point(parse256(I_L)) + K_par. Errors, as hdkeychain's Derive
// returns them: ErrDeriveHardFromPublic for a hardened index, ErrDeriveBeyondMaxDepth below
// depth 255, and ErrInvalidChild when I_L ≥ n or K_i is the point at infinity (BIP-32: "the
// resulting key is invalid, and one should proceed with the next value for i"; probability
// below 2^-127).
func (p *ckdParent) child(index uint32) (*btcec.PublicKey, error) {
	if index >= hdkeychain.HardenedKeyStart {
		return nil, hdkeychain.ErrDeriveHardFromPublic
	}
	if p.depth == 255 {
		return nil, hdkeychain.ErrDeriveBeyondMaxDepth
	}
	var data [37]byte
	copy(data[:33], p.ser[:])
	binary.BigEndian.PutUint32(data[33:], index)
	mac := hmac.New(sha512.New, p.chainCode[:])
	mac.Write(data[:])
	var sum [64]byte
	il := mac.Sum(sum[:0])[:32]

	var ilScalar btcec.ModNScalar
	if overflow := ilScalar.SetByteSlice(il); overflow {
		return nil, hdkeychain.ErrInvalidChild
	}
	var ilPoint, childPoint btcec.JacobianPoint
	btcec.ScalarBaseMultNonConst(&ilScalar, &ilPoint)
	if ilPoint.Z.IsZero() {
		return nil, hdkeychain.ErrInvalidChild
	}
	btcec.AddNonConst(&ilPoint, &p.point, &childPoint)
	if childPoint.Z.IsZero() || (childPoint.X.IsZero() && childPoint.Y.IsZero()) {
		return nil, hdkeychain.ErrInvalidChild
	}
	childPoint.ToAffine()
	return btcec.NewPublicKey(&childPoint.X, &childPoint.Y), nil
}

// children returns the public keys of the n unhardened children from, from+1, … (CKDpub, as
// child does) with one field inversion for all of them (Montgomery's trick: the product of the
// Jacobian Z coordinates is inverted once, and each Z^-1 taken from it with two
// multiplications) instead of one inversion per child. Errors: those of child, for the first
// index that has one (the keys below it are returned).
func (p *ckdParent) children(from uint32, n int) ([]*btcec.PublicKey, error) {
	if n <= 0 {
		return nil, nil
	}
	if uint64(from)+uint64(n) > hdkeychain.HardenedKeyStart {
		return nil, hdkeychain.ErrDeriveHardFromPublic
	}
	if p.depth == 255 {
		return nil, hdkeychain.ErrDeriveBeyondMaxDepth
	}
	pts := make([]btcec.JacobianPoint, n)
	acc := make([]btcec.FieldVal, n) // acc[i] = Z_0 · … · Z_i
	var data [37]byte
	copy(data[:33], p.ser[:])
	var sum [64]byte
	for i := range n {
		binary.BigEndian.PutUint32(data[33:], from+uint32(i))
		mac := hmac.New(sha512.New, p.chainCode[:])
		mac.Write(data[:])
		il := mac.Sum(sum[:0])[:32]
		var ilScalar btcec.ModNScalar
		var ilPoint btcec.JacobianPoint
		bad := ilScalar.SetByteSlice(il)
		if !bad {
			btcec.ScalarBaseMultNonConst(&ilScalar, &ilPoint)
			bad = ilPoint.Z.IsZero()
		}
		if !bad {
			btcec.AddNonConst(&ilPoint, &p.point, &pts[i])
			pts[i].Z.Normalize()
			bad = pts[i].Z.IsZero()
		}
		if bad { // BIP-32's invalid child: derive the ones below it alone
			out, err := p.children(from, i)
			if err != nil {
				return out, err
			}
			return out, hdkeychain.ErrInvalidChild
		}
		if i == 0 {
			acc[0].Set(&pts[0].Z)
		} else {
			acc[i].Mul2(&acc[i-1], &pts[i].Z).Normalize()
		}
	}
	var inv btcec.FieldVal // (Z_0 · … · Z_i)^-1, from i = n-1 down
	inv.Set(&acc[n-1]).Inverse().Normalize()
	out := make([]*btcec.PublicKey, n)
	for i := n - 1; i >= 0; i-- {
		var zInv, zInv2 btcec.FieldVal
		if i > 0 {
			zInv.Mul2(&inv, &acc[i-1]).Normalize() // Z_i^-1
			inv.Mul(&pts[i].Z).Normalize()         // (Z_0 · … · Z_i-1)^-1
		} else {
			zInv.Set(&inv)
		}
		zInv2.SquareVal(&zInv)         // Z^-2
		pts[i].X.Mul(&zInv2)           // X/Z^2
		pts[i].Y.Mul(zInv2.Mul(&zInv)) // Y/Z^3
		pts[i].X.Normalize()
		pts[i].Y.Normalize()
		out[i] = btcec.NewPublicKey(&pts[i].X, &pts[i].Y)
	}
	return out, nil
}

// branchParents parses each branch key once (deriveBranches calls it at parse time).
func branchParents(keys []*hdkeychain.ExtendedKey) ([]*ckdParent, error) {
	out := make([]*ckdParent, len(keys))
	for i, xk := range keys {
		p, err := newCKDParent(xk)
		if err != nil {
			return nil, fmt.Errorf("branch key %d: %w", i, err)
		}
		out[i] = p
	}
	return out, nil
}

// pkScriptsChunk bounds the children one PkScripts step derives per key (well below
// maxChildCache, which they pass through).
const pkScriptsChunk = 512

// PkScripts returns the n scriptPubKeys at (branch, from), (branch, from+1), …, each as PkScript
// returns it, for a wallet watcher deriving a long range: each key's children are derived in
// batches sharing one field inversion (BIP-32 CKDpub from the branch key parsed once), then the
// scripts are built from them. Safe for concurrent use. Errors: those of Derive; on an error
// the scripts below the first failing index are returned with it.
func (d *Descriptor) PkScripts(branch, from uint32, n int) ([][]byte, error) {
	if int64(branch) >= int64(d.branches) {
		return nil, fmt.Errorf("descriptor: branch %d of %d: %w", branch, d.branches, ErrBranch)
	}
	out := make([][]byte, 0, max(n, 0))
	for done := 0; done < n; {
		m := min(n-done, pkScriptsChunk)
		start := from + uint32(done)
		if uint64(start)+uint64(m) <= hdkeychain.HardenedKeyStart {
			for _, k := range d.keys {
				pubs, err := k.parent(int(branch)).children(start, m)
				k.prefill(int(branch), start, pubs) // the ones before a failure; Derive reports it
				if err != nil {
					break
				}
			}
		}
		for i := range m {
			pk, err := d.PkScript(branch, start+uint32(i))
			if err != nil {
				return out, err
			}
			out = append(out, pk)
		}
		done += m
	}
	return out, nil
}

// prefill puts children from, from+1, … of branch into the key's cache, emptying it first when
// they would not fit. The cache answers "which key is at (branch, index)" for every caller,
// signing and PSBT analysis included: it only ever holds a key derived (child or children,
// both CKDpub from that branch's key) at its own (branch, index), so a hit is the key a fresh
// derivation gives (TestPkScriptsMatchesPkScript, TestCKDChildrenBatch); a concurrent reset
// only costs a derivation again.
func (k *keyExpr) prefill(branch int, from uint32, pubs []*btcec.PublicKey) {
	if len(pubs) == 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.cache == nil || len(k.cache)+len(pubs) > maxChildCache {
		k.cache = make(map[uint64]*btcec.PublicKey)
	}
	for i, pub := range pubs {
		k.cache[uint64(branch)<<32|uint64(from+uint32(i))] = pub
	}
}
