package chainwatch

import (
	"bytes"
	"fmt"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// MaxMerkleDepth is the longest merkle branch accepted: 2^30 transactions would not fit in a
// block (Electrum's verifier uses the same bound).
const MaxMerkleDepth = 30

// MerkleProof is an answer of blockchain.transaction.get_merkle(tx_hash, height): the block
// height, the branch from the transaction up to the root (sibling hashes, bottom first, in
// internal byte order) and the transaction's position in the block (0 is the coinbase).
type MerkleProof struct {
	Height int32
	Branch []chainhash.Hash
	Pos    uint32
}

// MerkleRootFromProof hashes txid up its merkle branch and returns the root it commits to. The
// bits of pos, lowest first, say at each level whether our node is the right child (1) or the
// left (0). It returns ErrMerkleProof for:
//   - a branch longer than MaxMerkleDepth, or pos not below 2^len(branch);
//   - a left sibling equal to our node (CVE-2012-2459: in an honest tree only the last node of
//     a level is duplicated, and it is then the left child paired with itself; a duplicate on
//     the left proves a mutated tree);
//   - a 64-byte inner node preimage (left||right) that parses as a transaction (CVE-2017-12842:
//     a 64-byte transaction can pose as an inner node to prove a fake transaction).
//
// Source: Electrum protocol, blockchain.transaction.get_merkle; Electrum's verifier.py; Bitcoin
// Core's merkle.cpp note on CVE-2012-2459.
func MerkleRootFromProof(txid chainhash.Hash, p MerkleProof) (chainhash.Hash, error) {
	if len(p.Branch) > MaxMerkleDepth {
		return chainhash.Hash{}, fmt.Errorf("%w: branch of %d hashes is deeper than %d", ErrMerkleProof, len(p.Branch), MaxMerkleDepth)
	}
	if uint64(p.Pos)>>len(p.Branch) != 0 {
		return chainhash.Hash{}, fmt.Errorf("%w: position %d does not fit a branch of %d", ErrMerkleProof, p.Pos, len(p.Branch))
	}
	node := txid
	var pre [64]byte
	for i, sib := range p.Branch {
		if (p.Pos>>i)&1 == 1 {
			if sib == node {
				return chainhash.Hash{}, fmt.Errorf("%w: left sibling at level %d duplicates the node (CVE-2012-2459)", ErrMerkleProof, i)
			}
			copy(pre[:32], sib[:])
			copy(pre[32:], node[:])
		} else {
			copy(pre[:32], node[:])
			copy(pre[32:], sib[:])
		}
		if parsesAsTx(pre[:]) {
			return chainhash.Hash{}, fmt.Errorf("%w: inner node at level %d is 64 bytes that parse as a transaction (CVE-2017-12842)", ErrMerkleProof, i)
		}
		node = chainhash.DoubleHashH(pre[:])
	}
	return node, nil
}

// VerifyMerkleProof checks that txid is in the block whose header is hdr: the proof's root must
// equal hdr.MerkleRoot (see MerkleRootFromProof for the SPV rules). Errors wrap ErrMerkleProof.
func VerifyMerkleProof(txid chainhash.Hash, p MerkleProof, hdr wire.BlockHeader) error {
	root, err := MerkleRootFromProof(txid, p)
	if err != nil {
		return fmt.Errorf("tx %s at %d: %w", txid, p.Height, err)
	}
	if root != hdr.MerkleRoot {
		return fmt.Errorf("%w: tx %s at %d: branch gives root %s, header has %s", ErrMerkleProof, txid, p.Height, root, hdr.MerkleRoot)
	}
	return nil
}

// parsesAsTx reports whether b is exactly one serialized (non-witness) transaction with at least
// one input and one output.
func parsesAsTx(b []byte) bool {
	// Fast path: 64 bytes hold at most one input (41 bytes at least) after the 4-byte version,
	// so the input count byte must be 1; anything else cannot parse (and deserializing it would
	// allocate for the claimed count).
	if len(b) < 5 || b[4] != 1 {
		return false
	}
	var tx wire.MsgTx
	r := bytes.NewReader(b)
	if err := tx.DeserializeNoWitness(r); err != nil {
		return false
	}
	return r.Len() == 0 && len(tx.TxIn) > 0 && len(tx.TxOut) > 0
}
