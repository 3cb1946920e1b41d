package chainwatch

import (
	"fmt"
	"math/big"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// DefaultReorgSafetyLimit is the deepest reorg HeaderChain.Connect accepts (like lnd's
// TxNotifier reorgSafetyLimit): a fork below tip-DefaultReorgSafetyLimit is refused with
// ErrReorgTooDeep and the watcher keeps its chain.
const DefaultReorgSafetyLimit = 100

// HeaderChain is the watcher's own chain of block headers, from the network's genesis up to the
// best tip it has validated (the same model as the Electrum wallet's blockchain.py: every header
// from genesis, 80 bytes each). It is a pure value: no I/O, not safe for concurrent use.
//
// Every header is checked before it is accepted: it links to its parent by hash (prev_block);
// its hash is at or below the target encoded in its bits, and that target is at or below the
// network's powLimit; its bits follow the network's difficulty rules:
//   - networks with PoWNoRetargeting (regtest): bits never change (they equal the genesis bits,
//     powLimit);
//   - networks with ReduceMinDifficulty (testnet3, signet-like test nets): the retarget rules
//     (20-minute minimum-difficulty blocks, retarget every 2016) are NOT checked, only the
//     proof of work against the header's own bits and powLimit — a documented simplification;
//   - other networks (mainnet): bits equal the parent's except at multiples of 2016, where they
//     must equal the retarget computed from the previous window (Bitcoin Core's
//     CalculateNextWorkRequired, including the off-by-one of using 2015 intervals).
type HeaderChain struct {
	params  *chaincfg.Params
	limit   int32
	headers []wire.BlockHeader // headers[h] is the header at height h
	hashes  []chainhash.Hash
}

// Reorg is what one HeaderChain.Connect changed: headers above Fork were replaced (Disconnected,
// in descending height) by Connected (ascending). Fork is the height of the last header common
// to the old and new chains; when nothing was replaced Fork is the old tip height and
// Disconnected is empty.
type Reorg struct {
	Fork         int32
	Disconnected []Tip
	Connected    []Tip
}

// NewHeaderChain returns a chain holding only params' genesis header. limit is the reorg safety
// limit (DefaultReorgSafetyLimit if <= 0).
func NewHeaderChain(params *chaincfg.Params, limit int) *HeaderChain {
	if limit <= 0 {
		limit = DefaultReorgSafetyLimit
	}
	g := params.GenesisBlock.Header
	return &HeaderChain{params: params, limit: int32(limit), headers: []wire.BlockHeader{g}, hashes: []chainhash.Hash{g.BlockHash()}}
}

// Height returns the height of the best header.
func (c *HeaderChain) Height() int32 { return int32(len(c.headers) - 1) }

// Tip returns the best header's height and hash.
func (c *HeaderChain) Tip() Tip {
	return Tip{Height: c.Height(), Hash: c.hashes[len(c.hashes)-1]}
}

// Hash returns the hash of the header at height, if the chain reaches it.
func (c *HeaderChain) Hash(height int32) (chainhash.Hash, bool) {
	if height < 0 || int(height) >= len(c.hashes) {
		return chainhash.Hash{}, false
	}
	return c.hashes[height], true
}

// Header returns the header at height, if the chain reaches it.
func (c *HeaderChain) Header(height int32) (wire.BlockHeader, bool) {
	if height < 0 || int(height) >= len(c.headers) {
		return wire.BlockHeader{}, false
	}
	return c.headers[height], true
}

// Connect validates headers (headers[0] at height start, the rest consecutive) and, if they
// are all valid and extend or replace part of the chain, applies them.
//
// headers may overlap the chain: identical headers are skipped; the first one that differs
// starts a reorg, and every header of ours above the fork point is disconnected, even beyond the
// end of headers. Like the Electrum wallet, the watcher follows its server's best chain: a valid
// fork is taken even if it is not longer than ours (after invalidateblock the server's chain may
// be equal or shorter); what protects us is that every header carries its proof of work, the
// reorg safety limit, and the SPV check of every transaction against these headers.
//
// Errors (the chain is unchanged): ErrHeaderNoConnect when headers[0] does not link to our
// header at start-1 or start is above Height()+1 — fetch from a lower height and try again;
// ErrReorgTooDeep when the fork is deeper than the safety limit; ErrBadHeader for a header that
// fails its checks (the message names the height and the check).
func (c *HeaderChain) Connect(start int32, headers []wire.BlockHeader) (Reorg, error) {
	r := Reorg{Fork: c.Height()}
	if len(headers) == 0 {
		return r, nil
	}
	if start < 1 {
		return r, fmt.Errorf("%w: headers start at height %d; genesis is fixed", ErrBadHeader, start)
	}
	if start > c.Height()+1 {
		return r, fmt.Errorf("%w: headers start at %d, chain ends at %d", ErrHeaderNoConnect, start, c.Height())
	}
	// Skip the headers we already have.
	i := 0
	for i < len(headers) && int(start)+i < len(c.hashes) && headers[i].BlockHash() == c.hashes[int(start)+i] {
		i++
	}
	if i == len(headers) {
		return r, nil
	}
	headers = headers[i:]
	start += int32(i)
	fork := start - 1
	if headers[0].PrevBlock != c.hashes[fork] {
		return r, fmt.Errorf("%w: header at %d does not link to ours at %d", ErrHeaderNoConnect, start, fork)
	}
	if fork < c.Height() {
		if c.Height()-fork > c.limit {
			return r, fmt.Errorf("%w: fork at %d, %d below the tip %d (limit %d)", ErrReorgTooDeep, fork, c.Height()-fork, c.Height(), c.limit)
		}
	}
	// Validate everything against a view of the chain up to fork plus the new headers.
	view := func(h int32) wire.BlockHeader {
		if h <= fork {
			return c.headers[h]
		}
		return headers[h-start]
	}
	prevHash := c.hashes[fork]
	newHashes := make([]chainhash.Hash, len(headers))
	for k := range headers {
		h := start + int32(k)
		hdr := &headers[k]
		if hdr.PrevBlock != prevHash {
			return r, fmt.Errorf("%w: header at %d does not link to the one at %d", ErrBadHeader, h, h-1)
		}
		hash := hdr.BlockHash()
		if err := c.checkWork(h, hdr, &hash, view); err != nil {
			return r, err
		}
		newHashes[k] = hash
		prevHash = hash
	}
	for h := c.Height(); h > fork; h-- {
		r.Disconnected = append(r.Disconnected, Tip{Height: h, Hash: c.hashes[h]})
	}
	c.headers = append(c.headers[:fork+1], headers...)
	c.hashes = append(c.hashes[:fork+1], newHashes...)
	for k, hash := range newHashes {
		r.Connected = append(r.Connected, Tip{Height: start + int32(k), Hash: hash})
	}
	r.Fork = fork
	return r, nil
}

// checkWork checks hdr's proof of work and difficulty bits (see HeaderChain).
func (c *HeaderChain) checkWork(h int32, hdr *wire.BlockHeader, hash *chainhash.Hash, view func(int32) wire.BlockHeader) error {
	target := blockchain.CompactToBig(hdr.Bits)
	if target.Sign() <= 0 || target.Cmp(c.params.PowLimit) > 0 {
		return fmt.Errorf("%w: header at %d: target from bits %08x is outside (0, powLimit]", ErrBadHeader, h, hdr.Bits)
	}
	if blockchain.HashToBig(hash).Cmp(target) > 0 {
		return fmt.Errorf("%w: header at %d: hash %s above its target (bits %08x)", ErrBadHeader, h, hash, hdr.Bits)
	}
	parent := view(h - 1)
	switch {
	case c.params.PoWNoRetargeting:
		if hdr.Bits != parent.Bits {
			return fmt.Errorf("%w: header at %d: bits %08x changed on a network without retargeting", ErrBadHeader, h, hdr.Bits)
		}
	case c.params.ReduceMinDifficulty:
		// Documented simplification: test networks' minimum-difficulty rules are not checked.
	default:
		interval := int32(c.params.TargetTimespan / c.params.TargetTimePerBlock)
		want := parent.Bits
		if h%interval == 0 {
			first := view(h - interval)
			actual := parent.Timestamp.Unix() - first.Timestamp.Unix()
			span := int64(c.params.TargetTimespan.Seconds())
			adj := c.params.RetargetAdjustmentFactor
			actual = max(min(actual, span*adj), span/adj)
			next := new(big.Int).Mul(blockchain.CompactToBig(parent.Bits), big.NewInt(actual))
			next.Div(next, big.NewInt(span))
			if next.Cmp(c.params.PowLimit) > 0 {
				next.Set(c.params.PowLimit)
			}
			want = blockchain.BigToCompact(next)
		}
		if hdr.Bits != want {
			return fmt.Errorf("%w: header at %d: bits %08x, difficulty rules require %08x", ErrBadHeader, h, hdr.Bits, want)
		}
	}
	return nil
}

// Restore replaces the chain with stored headers (headers[0] the first after genesis, at height
// 1), validating them like Connect. It returns ErrBadHeader / ErrHeaderNoConnect if they do not
// form a valid chain from genesis.
func (c *HeaderChain) Restore(headers []wire.BlockHeader) error {
	fresh := NewHeaderChain(c.params, int(c.limit))
	if _, err := fresh.Connect(1, headers); err != nil {
		return err
	}
	*c = *fresh
	return nil
}
