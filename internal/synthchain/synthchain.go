// Package synthchain builds a deterministic synthetic Bitcoin header chain of any length (e.g.
// mainnet's ~930,000 blocks) with mainnet's shape — 2016-block retarget periods, 10-minute
// spacing, Core's retarget rule — but a trivially easy proof of work, so that a test can serve a
// mainnet-length chain without mining it. It also places wallet transactions in chosen blocks
// (each block's merkle root commits to its coinbase and those transactions) and gives the
// Electrum-style checkpoints of the chain. It is for tests and benchmarks only.
//
// What it proves and what it does not: a watcher started on it must handle a chain of the
// given length through its checkpoints, header downloads, retargets and SPV proofs exactly as
// on mainnet; the difficulty values themselves (and so the work-based checks at mainnet
// difficulty) are not mainnet's.
package synthchain

import (
	"encoding/binary"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// Interval is the retarget period (mainnet's).
const Interval = 2016

// Bits is every block's difficulty: target 0xffff·2^240, met by all but ~1 in 65,536 hashes.
const Bits = 0x2100ffff

// Net is the synthetic network's magic (not a real network's).
const Net wire.BitcoinNet = 0x5e7c4a1b

// genesisTime is the synthetic genesis timestamp (mainnet's).
var genesisTime = time.Unix(1231006505, 0)

// Chain is a synthetic chain from genesis to Height. Headers are generated on demand from the
// hash of each period's last block (kept: 32 bytes per period), so a Chain of 930,000 blocks
// holds ~15 KB plus its transactions. Safe for concurrent use.
type Chain struct {
	Params *chaincfg.Params
	Height int32
	txs    map[int32][]*wire.MsgTx // block height → wallet transactions (after the coinbase)

	mu   sync.Mutex
	ends []chainhash.Hash // ends[p] is the hash of period p's last block (or of the tip)
}

// New builds a chain of height blocks above genesis with the given transactions placed at their
// heights (1 ≤ height ≤ Height). Building hashes every header once (~1 s for 930,000 headers).
func New(height int32, txs map[int32][]*wire.MsgTx) (*Chain, error) {
	for h := range txs {
		if h < 1 || h > height {
			return nil, fmt.Errorf("synthchain: transaction at height %d outside 1..%d", h, height)
		}
	}
	c := &Chain{Height: height, txs: txs}
	c.Params = params(c)
	prev := chainhash.Hash{}
	for p := int32(0); p*Interval <= height; p++ {
		last := min(p*Interval+Interval-1, height)
		for h := p * Interval; h <= last; h++ {
			hdr := c.header(h, prev)
			prev = hashOf(&hdr)
		}
		c.ends = append(c.ends, prev)
	}
	return c, nil
}

func params(c *Chain) *chaincfg.Params {
	p := chaincfg.MainNetParams
	p.Name = "synthetic"
	p.Net = Net
	p.PowLimit = new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
	p.PowLimitBits = Bits
	p.Checkpoints = nil
	p.DNSSeeds = nil
	g := c.header(0, chainhash.Hash{})
	p.GenesisBlock = &wire.MsgBlock{Header: g, Transactions: []*wire.MsgTx{coinbase(0)}}
	gh := g.BlockHash()
	p.GenesisHash = &gh
	return &p
}

// timestamp makes every period span exactly TargetTimespan from its first to its last block
// (600 s between blocks, 1200 s before each period's last one), so Core's retarget keeps Bits.
func timestamp(h int32) time.Time {
	return genesisTime.Add(time.Duration(600*int64(h)+600*int64((h+1)/Interval)) * time.Second)
}

// coinbase is block h's coinbase (its height in the script makes every block's root differ).
func coinbase(h int32) *wire.MsgTx {
	tx := wire.NewMsgTx(1)
	tx.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: 0xffffffff}, SignatureScript: []byte{4, byte(h), byte(h >> 8), byte(h >> 16), byte(h >> 24)}, Sequence: 0xffffffff})
	tx.AddTxOut(&wire.TxOut{Value: 0, PkScript: []byte{0x6a}})
	return tx
}

// Block returns the transactions of block h: the coinbase, then the placed ones.
func (c *Chain) Block(h int32) []*wire.MsgTx {
	return append([]*wire.MsgTx{coinbase(h)}, c.txs[h]...)
}

func (c *Chain) header(h int32, prev chainhash.Hash) wire.BlockHeader {
	var root chainhash.Hash
	if txs := c.txs[h]; len(txs) > 0 || h == 0 {
		ids := make([]chainhash.Hash, 0, 1+len(txs))
		for _, tx := range c.Block(h) {
			ids = append(ids, tx.TxHash())
		}
		root = MerkleRoot(ids)
	} else {
		// No wallet transaction: a stand-in root (nobody asks for this block's transactions).
		root = chainhash.DoubleHashH([]byte{'s', byte(h), byte(h >> 8), byte(h >> 16), byte(h >> 24)})
	}
	hdr := wire.BlockHeader{Version: 0x20000000, PrevBlock: prev, MerkleRoot: root, Timestamp: timestamp(h), Bits: Bits}
	var buf [80]byte
	binary.LittleEndian.PutUint32(buf[0:], uint32(hdr.Version))
	copy(buf[4:], prev[:])
	copy(buf[36:], root[:])
	binary.LittleEndian.PutUint32(buf[68:], uint32(hdr.Timestamp.Unix()))
	binary.LittleEndian.PutUint32(buf[72:], hdr.Bits)
	for {
		// The target is 0xffff·2^240: a hash meets it unless its top 16 bits (the last two
		// bytes in chainhash's little-endian order) are both 0xff.
		binary.LittleEndian.PutUint32(buf[76:], hdr.Nonce)
		hash := chainhash.DoubleHashH(buf[:])
		if hash[31] != 0xff || hash[30] != 0xff {
			return hdr
		}
		hdr.Nonce++
	}
}

// hashOf is hdr.BlockHash() without the reflection-free but slow wire serializer.
func hashOf(hdr *wire.BlockHeader) chainhash.Hash {
	var buf [80]byte
	binary.LittleEndian.PutUint32(buf[0:], uint32(hdr.Version))
	copy(buf[4:], hdr.PrevBlock[:])
	copy(buf[36:], hdr.MerkleRoot[:])
	binary.LittleEndian.PutUint32(buf[68:], uint32(hdr.Timestamp.Unix()))
	binary.LittleEndian.PutUint32(buf[72:], hdr.Bits)
	binary.LittleEndian.PutUint32(buf[76:], hdr.Nonce)
	return chainhash.DoubleHashH(buf[:])
}

// Headers returns the headers from start, count of them (fewer past the tip).
func (c *Chain) Headers(start, count int32) []wire.BlockHeader {
	if start < 0 || start > c.Height || count <= 0 {
		return nil
	}
	end := min(start+count-1, c.Height)
	p := start / Interval
	var prev chainhash.Hash
	if p > 0 {
		prev = c.ends[p-1]
	}
	out := make([]wire.BlockHeader, 0, end-start+1)
	for h := p * Interval; h <= end; h++ {
		hdr := c.header(h, prev)
		prev = hashOf(&hdr)
		if h >= start {
			out = append(out, hdr)
		}
	}
	return out
}

// Header returns the header at h.
func (c *Chain) Header(h int32) wire.BlockHeader { return c.Headers(h, 1)[0] }

// Checkpoints returns Electrum-format checkpoints ([hash, target] per whole period) for the
// periods that end at or below upTo; the target is the next period's (always Bits here).
func (c *Chain) Checkpoints(upTo int32) [][2]any {
	var out [][2]any
	t := blockchain.CompactToBig(Bits)
	for p := int32(0); p*Interval+Interval-1 <= min(upTo, c.Height); p++ {
		out = append(out, [2]any{c.ends[p].String(), t})
	}
	return out
}

// Proof returns the merkle branch (bottom first) and position of txid in block h.
func (c *Chain) Proof(h int32, txid chainhash.Hash) ([]chainhash.Hash, uint32, bool) {
	var ids []chainhash.Hash
	pos := -1
	for i, tx := range c.Block(h) {
		id := tx.TxHash()
		if id == txid {
			pos = i
		}
		ids = append(ids, id)
	}
	if pos < 0 {
		return nil, 0, false
	}
	var branch []chainhash.Hash
	for i := pos; len(ids) > 1; i /= 2 {
		if len(ids)%2 == 1 {
			ids = append(ids, ids[len(ids)-1])
		}
		branch = append(branch, ids[i^1])
		next := make([]chainhash.Hash, len(ids)/2)
		for k := range next {
			next[k] = pair(ids[2*k], ids[2*k+1])
		}
		ids = next
	}
	return branch, uint32(pos), true
}

// MerkleRoot is Bitcoin's merkle root of txids (the last node of an odd level paired with itself).
func MerkleRoot(ids []chainhash.Hash) chainhash.Hash {
	level := append([]chainhash.Hash(nil), ids...)
	for len(level) > 1 {
		if len(level)%2 == 1 {
			level = append(level, level[len(level)-1])
		}
		next := make([]chainhash.Hash, len(level)/2)
		for k := range next {
			next[k] = pair(level[2*k], level[2*k+1])
		}
		level = next
	}
	return level[0]
}

func pair(a, b chainhash.Hash) chainhash.Hash {
	var buf [64]byte
	copy(buf[:32], a[:])
	copy(buf[32:], b[:])
	return chainhash.DoubleHashH(buf[:])
}
