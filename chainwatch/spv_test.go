package chainwatch

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

func mustHash(t testing.TB, s string) chainhash.Hash {
	t.Helper()
	h, err := chainhash.NewHashFromStr(s)
	if err != nil {
		t.Fatal(err)
	}
	return *h
}

func hashPair(a, b chainhash.Hash) chainhash.Hash {
	var pre [64]byte
	copy(pre[:32], a[:])
	copy(pre[32:], b[:])
	return chainhash.DoubleHashH(pre[:])
}

// merkleBranch builds Bitcoin's merkle tree over leaves (odd levels pair the last node with
// itself) and returns the root and the branch for leaf pos. It is written from the definition
// in the Bitcoin developer guide, independently of MerkleRootFromProof.
func merkleBranch(leaves []chainhash.Hash, pos int) (chainhash.Hash, []chainhash.Hash) {
	level := append([]chainhash.Hash(nil), leaves...)
	var branch []chainhash.Hash
	for len(level) > 1 {
		if len(level)%2 == 1 {
			level = append(level, level[len(level)-1])
		}
		branch = append(branch, level[pos^1])
		next := make([]chainhash.Hash, len(level)/2)
		for i := range next {
			next[i] = hashPair(level[2*i], level[2*i+1])
		}
		level, pos = next, pos/2
	}
	return level[0], branch
}

// Mainnet block 100000 (https://blockstream.info/block/000000000003ba27aa200b1cecaad478d2b00432346c3f1f3986da1afd33e506):
// four transactions, merkle root f3e94742…5766.
var block100000 = struct {
	root string
	txs  []string
}{
	root: "f3e94742aca4b5ef85488dc37c06c3282295ffec960994b2c0d5ac2a25a95766",
	txs: []string{
		"8c14f0db3df150123e6f3dbbf30f8b955a8249b62ac1d1ff16284aefa3d06d87",
		"fff2525b8931402dd09222c50775608f75787bd2b87e56995a7bdd30f79702c4",
		"6359f0868171b1d194cbee1af2f16ea598ae8fad666d9b012c8ed2b79a236ec4",
		"e9a66845e05d5abc0ad04ec80f774a7e585c6e8db975962d069a522137b80c1d",
	},
}

func TestMerkleProofMainnetBlock100000(t *testing.T) {
	var leaves []chainhash.Hash
	for _, s := range block100000.txs {
		leaves = append(leaves, mustHash(t, s))
	}
	hdr := wire.BlockHeader{MerkleRoot: mustHash(t, block100000.root)}
	for pos, txid := range leaves {
		root, branch := merkleBranch(leaves, pos)
		if root != hdr.MerkleRoot {
			t.Fatalf("test tree gives root %s", root)
		}
		if err := VerifyMerkleProof(txid, MerkleProof{Height: 100000, Branch: branch, Pos: uint32(pos)}, hdr); err != nil {
			t.Fatalf("pos %d: %v", pos, err)
		}
		// The same branch at another position, or for another txid, must fail.
		if err := VerifyMerkleProof(txid, MerkleProof{Height: 100000, Branch: branch, Pos: uint32(pos ^ 1)}, hdr); !errors.Is(err, ErrMerkleProof) {
			t.Fatalf("pos %d accepted at %d: %v", pos, pos^1, err)
		}
		if err := VerifyMerkleProof(leaves[(pos+2)%4], MerkleProof{Height: 100000, Branch: branch, Pos: uint32(pos)}, hdr); !errors.Is(err, ErrMerkleProof) {
			t.Fatalf("another txid accepted at %d: %v", pos, err)
		}
	}
}

// sixtyFourByteTx returns a transaction that serializes (without witness) to exactly 64 bytes.
func sixtyFourByteTx(t *testing.T) []byte {
	tx := wire.NewMsgTx(1)
	tx.AddTxIn(wire.NewTxIn(&wire.OutPoint{Hash: chainhash.Hash{0xaa, 0xbb}, Index: 1}, nil, nil))
	tx.AddTxOut(wire.NewTxOut(5000, []byte{0x51, 0x51, 0x51, 0x51}))
	var b bytes.Buffer
	if err := tx.SerializeNoWitness(&b); err != nil {
		t.Fatal(err)
	}
	if b.Len() != 64 {
		t.Fatalf("crafted tx is %d bytes", b.Len())
	}
	return b.Bytes()
}

func TestMerkleProofAttacks(t *testing.T) {
	a, b, c := chainhash.Hash{1}, chainhash.Hash{2}, chainhash.Hash{3}

	// CVE-2012-2459: three leaves; the last is paired with itself. Proving c at position 2 is
	// honest; "proving" a duplicate c at position 3 gives the same root and must be refused.
	root3, branchC := merkleBranch([]chainhash.Hash{a, b, c}, 2)
	hdr3 := wire.BlockHeader{MerkleRoot: root3}

	// CVE-2017-12842: a real 64-byte transaction T in a block [x, T]; its two halves L||R pose
	// as an inner node so that L "is proven" at position 2 with the branch [R, x].
	raw := sixtyFourByteTx(t)
	var left, right chainhash.Hash
	copy(left[:], raw[:32])
	copy(right[:], raw[32:])
	x := chainhash.Hash{9}
	tTxid := chainhash.DoubleHashH(raw)
	root2 := hashPair(x, tTxid)
	hdr2 := wire.BlockHeader{MerkleRoot: root2}

	deep := make([]chainhash.Hash, MaxMerkleDepth+1)
	for i := range deep {
		deep[i] = chainhash.Hash{byte(i), 7}
	}

	tests := []struct {
		name  string
		txid  chainhash.Hash
		proof MerkleProof
		hdr   wire.BlockHeader
		want  string // "" = valid; else a substring of the error
	}{
		{"odd level: last leaf paired with itself", c, MerkleProof{Branch: branchC, Pos: 2}, hdr3, ""},
		{"CVE-2012-2459 duplicate on the left", c, MerkleProof{Branch: branchC, Pos: 3}, hdr3, "CVE-2012-2459"},
		{"the 64-byte tx itself is fine", tTxid, MerkleProof{Branch: []chainhash.Hash{x}, Pos: 1}, hdr2, ""},
		{"CVE-2017-12842 64-byte inner node", left, MerkleProof{Branch: []chainhash.Hash{right, x}, Pos: 2}, hdr2, "CVE-2017-12842"},
		{"branch deeper than 30", a, MerkleProof{Branch: deep, Pos: 0}, wire.BlockHeader{}, "deeper than 30"},
		{"position beyond the branch", a, MerkleProof{Branch: []chainhash.Hash{b}, Pos: 2}, hdr3, "does not fit"},
		{"wrong root", a, MerkleProof{Branch: []chainhash.Hash{b, hashPair(c, c)}, Pos: 0}, hdr2, "header has"},
		{"empty branch: the only tx is the root", a, MerkleProof{}, wire.BlockHeader{MerkleRoot: a}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := VerifyMerkleProof(tc.txid, tc.proof, tc.hdr)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrMerkleProof) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want ErrMerkleProof with %q", err, tc.want)
			}
		})
	}
	// Without the CVE-2017-12842 check the forged proof would reach the right root.
	if hashPair(x, hashPair(left, right)) != root2 {
		t.Fatal("the crafted attack does not reach the root; the test proves nothing")
	}
}

func FuzzMerkleRootFromProof(f *testing.F) {
	f.Add(make([]byte, 32), uint32(0), make([]byte, 64))
	f.Add(bytes.Repeat([]byte{1}, 32), uint32(3), bytes.Repeat([]byte{2}, 96))
	f.Fuzz(func(t *testing.T, txid []byte, pos uint32, branch []byte) {
		var id chainhash.Hash
		copy(id[:], txid)
		var br []chainhash.Hash
		for len(branch) >= 32 {
			var h chainhash.Hash
			copy(h[:], branch[:32])
			br = append(br, h)
			branch = branch[32:]
		}
		root, err := MerkleRootFromProof(id, MerkleProof{Branch: br, Pos: pos})
		if err != nil {
			return
		}
		// An accepted proof must be reproducible by the plain definition.
		node := id
		for i, s := range br {
			if (pos>>i)&1 == 1 {
				node = hashPair(s, node)
			} else {
				node = hashPair(node, s)
			}
		}
		if node != root {
			t.Fatalf("root %s, definition gives %s", root, node)
		}
	})
}

// A real regtest block (height 451 of the devnet: btcd v0.24.2 mined a coinbase and three
// payments) with ElectrumX 1.18.0's blockchain.transaction.get_merkle answers, captured as JSON.
var regtest451 = struct {
	header string
	proofs []string // txid + " " + get_merkle JSON
}{
	header: "00004020b9ec222547699534d58616795efb5786ae1b9f11c46f875717cdd8834576e82932d10352b478d21562688d69c1780af4fda53c31b1c1d4f216002be18b08b31f2284016bffff7f2002000000",
	proofs: []string{
		`59c982d591d2eae9028f0e3f641857f9ac1405812bf728da3849c22a333dd2c0 {"block_height":451,"merkle":["e3638a79bf5af3116367026ad1c8fee9c3d5d14f92896a53e182f6634e095e86","5644c601a22c4448b40e625d45841f539db6cce4ce1d1f6e8a310422ddd2efcc"],"pos":0}`,
		`e3638a79bf5af3116367026ad1c8fee9c3d5d14f92896a53e182f6634e095e86 {"block_height":451,"merkle":["59c982d591d2eae9028f0e3f641857f9ac1405812bf728da3849c22a333dd2c0","5644c601a22c4448b40e625d45841f539db6cce4ce1d1f6e8a310422ddd2efcc"],"pos":1}`,
		`cd964d818048480f411abb8541d4c9223645c2a2da68e379dcfc07eaa7df2532 {"block_height":451,"merkle":["cc2b338cf05a129ae00e3508625972a968e9cc510b3c701f49d65962a4db6f05","7d921c7dad634c3d33637aedb5dad1d0d6a89cbd308d2a9dbc585ec0e2d94950"],"pos":2}`,
		`cc2b338cf05a129ae00e3508625972a968e9cc510b3c701f49d65962a4db6f05 {"block_height":451,"merkle":["cd964d818048480f411abb8541d4c9223645c2a2da68e379dcfc07eaa7df2532","7d921c7dad634c3d33637aedb5dad1d0d6a89cbd308d2a9dbc585ec0e2d94950"],"pos":3}`,
	},
}

func TestMerkleProofRegtestVectors(t *testing.T) {
	hdr, err := parseHeader(regtest451.header)
	if err != nil {
		t.Fatal(err)
	}
	type proofJSON struct {
		Height int32    `json:"block_height"`
		Merkle []string `json:"merkle"`
		Pos    uint32   `json:"pos"`
	}
	var proofs []MerkleProof
	var ids []chainhash.Hash
	for _, line := range regtest451.proofs {
		id, js, _ := strings.Cut(line, " ")
		var pj proofJSON
		if err := json.Unmarshal([]byte(js), &pj); err != nil {
			t.Fatal(err)
		}
		p := MerkleProof{Height: pj.Height, Pos: pj.Pos}
		for _, m := range pj.Merkle {
			p.Branch = append(p.Branch, mustHash(t, m))
		}
		proofs, ids = append(proofs, p), append(ids, mustHash(t, id))
	}
	for i := range proofs {
		if err := VerifyMerkleProof(ids[i], proofs[i], hdr); err != nil {
			t.Fatalf("tx %d: %v", i, err)
		}
		// Another transaction's proof does not prove this one.
		if err := VerifyMerkleProof(ids[i], proofs[(i+1)%len(proofs)], hdr); !errors.Is(err, ErrMerkleProof) {
			t.Fatalf("tx %d proven with tx %d's branch: %v", i, (i+1)%len(proofs), err)
		}
	}
	// A header with another merkle root (the same block hash chain otherwise) refuses them all.
	other := hdr
	other.MerkleRoot[0] ^= 1
	if err := VerifyMerkleProof(ids[1], proofs[1], other); !errors.Is(err, ErrMerkleProof) {
		t.Fatalf("wrong header accepted: %v", err)
	}
}
