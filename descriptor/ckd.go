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
