package chainwatch

import (
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/netparams"
)

// DefaultReorgSafetyLimit is the deepest reorg HeaderChain.Connect accepts (like lnd's
// TxNotifier reorgSafetyLimit): a fork below tip-DefaultReorgSafetyLimit is refused with
// ErrReorgTooDeep and the watcher keeps its chain.
const DefaultReorgSafetyLimit = 100

// HeaderChain is the watcher's own chain of block headers. It is a pure value: no I/O, not safe
// for concurrent use.
//
// Where it starts. Without checkpoints (regtest, testnet3) it holds every header from the
// network's genesis, like the Electrum wallet's blockchain.py. With checkpoints (one hash per
// 2016-block period, see Checkpoints; mainnet, testnet4, signet) it starts at the last
// checkpointed period: its base is that period's first height, whose parent hash is the
// previous period's checkpoint, and the whole period (2016 headers) must be connected at once
// and end on that period's checkpoint hash ("anchored"). As the tip moves on, whole periods
// below the one holding tip-limit are dropped from memory (the base moves up), keeping only the
// hash of each period's last block. Below the base it keeps only what the checks need: the
// headers of the blocks that hold wallet transactions (AddBelowBase, each from a whole period
// checked against the checkpoints or the kept period hashes) and the block hashes of
// transactions proven earlier (PinHash); every other header below the base is neither
// downloaded nor kept.
//
// Every header from the base up is checked before it is accepted: it links to its parent by
// hash (prev_block); its hash is at or below the target encoded in its bits, and that target is
// at or below the network's powLimit; a header at a checkpointed height has the checkpoint's
// hash; its bits follow the network's difficulty rules (Bitcoin Core's GetNextWorkRequired):
//   - networks with PoWNoRetargeting (regtest): bits never change (they equal the genesis bits);
//   - every other network retargets at multiples of 2016 from the ending period's span (first
//     to last block, clamped to [span/4, span*4]; Core's CalculateNextWorkRequired, with its
//     off-by-one of 2015 intervals), starting from the last block's bits, or on BIP-94 networks
//     (testnet4) from the first block's bits; elsewhere bits equal the parent's;
//   - networks with ReduceMinDifficulty (testnet3, testnet4): inside a period a block more than
//     20 minutes (2 × spacing) after its parent must have powLimit's bits, any other block the
//     bits of the last block of its period that is not such a minimum-difficulty block (or the
//     period's first block); the first block of a period always carries the retarget;
//   - BIP-94 (testnet4): the first block of a period may not be more than 600 s older than its
//     parent (the time warp fix).
//
// The anchored period's own bits are fixed by the checkpoint hash at its end (for mainnet they
// are also compared with the checkpoint's target). Signet's block signatures live in the
// coinbase, not the header: a header chain cannot check them, so on signet the proof of work
// (at signet's low difficulty) and the checkpoints are what protect the watcher.
//
// Reorgs are followed only to a chain with more work: a fork whose headers above the fork
// point carry no more cumulative work (the sum of 2^256/(target+1), Core's GetBlockProof) than
// ours is refused with ErrForkLessWork and the chain is kept.
type HeaderChain struct {
	params *chaincfg.Params
	bip94  bool
	limit  int32
	cps    *Checkpoints
	base   int32          // height of headers[0]
	prev   chainhash.Hash // hash of the block at base-1 (zero when base is 0)
	// anchorEnd is the last height of the checkpointed period the chain was anchored on (its
	// bits are fixed by the checkpoint hash); -1 without one.
	anchorEnd int32
	ends      map[int32]chainhash.Hash // last hash of each period pruned past the checkpoints

	headers []wire.BlockHeader // headers[i] is at height base+i; empty until anchored
	hashes  []chainhash.Hash

	below     map[int32]wire.BlockHeader // below base: headers kept for SPV proofs (AddBelowBase)
	belowHash map[int32]chainhash.Hash   // below base: hashes of blocks proven earlier (PinHash)
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

// NewHeaderChain returns a chain holding only params' genesis header, without checkpoints.
// limit is the reorg safety limit (DefaultReorgSafetyLimit if <= 0).
func NewHeaderChain(params *chaincfg.Params, limit int) *HeaderChain {
	return newChain(params, limit, nil, 0)
}

// NewCheckpointedChain returns an empty chain based at the last period of cps (see HeaderChain):
// its Height is base-1 until the period's 2016 headers are connected. With fewer than two
// checkpoints (or nil), or on a network whose difficulty period is not 2016 blocks, it is
// NewHeaderChain, still checking cps' hashes where it reaches them.
func NewCheckpointedChain(params *chaincfg.Params, limit int, cps *Checkpoints) *HeaderChain {
	if cps == nil || len(cps.List) < 2 || params.TargetTimespan/params.TargetTimePerBlock != RetargetInterval {
		return newChain(params, limit, cps, 0)
	}
	return newChain(params, limit, cps, int32(len(cps.List)-1)*RetargetInterval)
}

func newChain(params *chaincfg.Params, limit int, cps *Checkpoints, base int32) *HeaderChain {
	if limit <= 0 {
		limit = DefaultReorgSafetyLimit
	}
	c := &HeaderChain{params: params, bip94: netparams.EnforceBIP94(params), limit: int32(limit), cps: cps, base: base,
		anchorEnd: -1, ends: map[int32]chainhash.Hash{}, below: map[int32]wire.BlockHeader{}, belowHash: map[int32]chainhash.Hash{}}
	if base > 0 {
		c.anchorEnd = base + RetargetInterval - 1
	}
	if base == 0 {
		g := params.GenesisBlock.Header
		c.headers, c.hashes = []wire.BlockHeader{g}, []chainhash.Hash{g.BlockHash()}
	} else {
		c.prev = cps.List[base/RetargetInterval-1].Hash
	}
	return c
}

// Height returns the height of the best header (Base()-1 while a checkpointed chain is not
// anchored yet).
func (c *HeaderChain) Height() int32 { return c.base + int32(len(c.headers)) - 1 }

// Base returns the height of the first header the chain holds in full (0: genesis).
func (c *HeaderChain) Base() int32 { return c.base }

// Anchored reports whether the chain holds its base header (always, without checkpoints).
func (c *HeaderChain) Anchored() bool { return len(c.headers) > 0 }

// Checkpoints returns the chain's checkpoints (nil if none).
func (c *HeaderChain) Checkpoints() *Checkpoints { return c.cps }

// Tip returns the best header's height and hash (before anchoring: Base()-1 and the previous
// period's checkpoint hash).
func (c *HeaderChain) Tip() Tip {
	if len(c.hashes) == 0 {
		return Tip{Height: c.base - 1, Hash: c.prev}
	}
	return Tip{Height: c.Height(), Hash: c.hashes[len(c.hashes)-1]}
}

// Hash returns the hash of the block at height if the chain knows it: from the base up to the
// tip, the base's parent, and below the base a kept header, a pinned hash or a checkpoint.
func (c *HeaderChain) Hash(height int32) (chainhash.Hash, bool) {
	switch {
	case height < 0 || height > c.Height():
		return chainhash.Hash{}, false
	case height >= c.base:
		return c.hashes[height-c.base], true
	case height == c.base-1:
		return c.prev, true
	}
	if h, ok := c.below[height]; ok {
		return h.BlockHash(), true
	}
	if h, ok := c.belowHash[height]; ok {
		return h, true
	}
	if height%RetargetInterval == RetargetInterval-1 {
		return c.periodEnd(height / RetargetInterval)
	}
	return chainhash.Hash{}, false
}

// periodEnd returns the hash of period p's last block from the checkpoints or, for a period
// pruned from memory past them, from the hash kept when it was pruned.
func (c *HeaderChain) periodEnd(p int32) (chainhash.Hash, bool) {
	if c.cps != nil && p >= 0 && int(p) < len(c.cps.List) {
		return c.cps.List[p].Hash, true
	}
	h, ok := c.ends[p]
	return h, ok
}

// Header returns the header at height, if the chain holds it (from the base up, or kept below
// it by AddBelowBase).
func (c *HeaderChain) Header(height int32) (wire.BlockHeader, bool) {
	if height >= c.base && height <= c.Height() {
		return c.headers[height-c.base], true
	}
	if height < c.base {
		h, ok := c.below[height]
		return h, ok
	}
	return wire.BlockHeader{}, false
}

// MedianTimePast returns BIP-113's median time past at the tip: the median of the timestamps of
// the headers at tip-10 … tip (fewer near the start of the chain). The genesis header is not
// counted: the persisted chain starts at height 1 and the watcher's clock bound stays the same
// across restarts. ok is false when no header above genesis is held.
func (c *HeaderChain) MedianTimePast() (time.Time, bool) {
	tip := c.Height()
	var ts []int64
	for h := max(tip-10, 1); h <= tip; h++ {
		if hdr, ok := c.Header(h); ok {
			ts = append(ts, hdr.Timestamp.Unix())
		}
	}
	if len(ts) == 0 {
		return time.Time{}, false
	}
	slices.Sort(ts)
	return time.Unix(ts[len(ts)/2], 0), true
}

// hashAt is Hash for heights from base-1 to the tip (the fork points Connect considers).
func (c *HeaderChain) hashAt(h int32) chainhash.Hash {
	if h == c.base-1 {
		return c.prev
	}
	return c.hashes[h-c.base]
}

// Connect validates headers (headers[0] at height start, the rest consecutive) and, if they
// are all valid and extend or replace part of the chain, applies them.
//
// headers may overlap the chain: identical headers are skipped, and headers below the base are
// ignored (the checkpoints fix them); the first one that differs starts a reorg, and every header
// of ours above the fork point is disconnected, even beyond the end of headers. A reorg is taken
// only if the new headers carry more work than the ones they replace. The first Connect of a
// checkpointed chain must bring the base period whole (2016 headers from Base()).
//
// Errors (the chain is unchanged): ErrHeaderNoConnect when headers[0] does not link to our
// header at start-1 or start is above Height()+1 — fetch from a lower height and try again;
// ErrReorgTooDeep when the fork is deeper than the safety limit; ErrForkLessWork when the fork
// does not carry more work than our chain above the fork point; ErrBadHeader for a header that
// fails its checks (the message names the height and the check), or an incomplete base period.
func (c *HeaderChain) Connect(start int32, headers []wire.BlockHeader) (Reorg, error) {
	r := Reorg{Fork: c.Height()}
	if len(headers) == 0 {
		return r, nil
	}
	if c.base == 0 && start < 1 {
		return r, fmt.Errorf("%w: headers start at height %d; genesis is fixed", ErrBadHeader, start)
	}
	if start < c.base {
		skip := c.base - start
		if int(skip) >= len(headers) {
			return r, nil
		}
		headers, start = headers[skip:], c.base
	}
	if start > c.Height()+1 {
		return r, fmt.Errorf("%w: headers start at %d, chain ends at %d", ErrHeaderNoConnect, start, c.Height())
	}
	if !c.Anchored() && len(headers) < RetargetInterval {
		return r, fmt.Errorf("%w: the checkpointed period from %d must come whole (%d headers), got %d", ErrBadHeader, c.base, RetargetInterval, len(headers))
	}
	// Skip the headers we already have.
	i := 0
	for i < len(headers) && start+int32(i) <= c.Height() && headers[i].BlockHash() == c.hashes[start+int32(i)-c.base] {
		i++
	}
	if i == len(headers) {
		return r, nil
	}
	headers = headers[i:]
	start += int32(i)
	fork := start - 1
	if headers[0].PrevBlock != c.hashAt(fork) {
		return r, fmt.Errorf("%w: header at %d does not link to ours at %d", ErrHeaderNoConnect, start, fork)
	}
	if fork < c.Height() && c.Height()-fork > c.limit {
		return r, fmt.Errorf("%w: fork at %d, %d below the tip %d (limit %d)", ErrReorgTooDeep, fork, c.Height()-fork, c.Height(), c.limit)
	}
	// Validate everything against a view of the chain up to fork plus the new headers.
	view := func(h int32) wire.BlockHeader {
		if h <= fork {
			return c.headers[h-c.base]
		}
		return headers[h-start]
	}
	prevHash := c.hashAt(fork)
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
		if cp, ok := c.cps.At(h); ok && cp != hash {
			return r, fmt.Errorf("%w: header at %d hashes to %s, the checkpoint is %s", ErrBadHeader, h, hash, cp)
		}
		newHashes[k] = hash
		prevHash = hash
	}
	if fork < c.Height() {
		ours, theirs := chainWork(c.headers[fork+1-c.base:]), chainWork(headers)
		if theirs.Cmp(ours) <= 0 {
			return r, fmt.Errorf("%w: fork at %d offers %d headers with work %s, ours above it (%d headers to %d) have %s",
				ErrForkLessWork, fork, len(headers), theirs, c.Height()-fork, c.Height(), ours)
		}
	}
	for h := c.Height(); h > fork; h-- {
		r.Disconnected = append(r.Disconnected, Tip{Height: h, Hash: c.hashes[h-c.base]})
	}
	c.headers = append(c.headers[:fork+1-c.base], headers...)
	c.hashes = append(c.hashes[:fork+1-c.base], newHashes...)
	for k, hash := range newHashes {
		r.Connected = append(r.Connected, Tip{Height: start + int32(k), Hash: hash})
	}
	r.Fork = fork
	c.prune(start)
	return r, nil
}

// prune drops from memory the whole periods that no check can need any more (checkpointed
// chains only): everything below the first block of the period holding tip-limit (a reorg is
// never deeper, and a retarget or testnet's walk back never reaches below the period before the
// one it computes). The hash of each dropped period's last block is kept (32 bytes per period),
// so that a block below the new base can still be checked by AddBelowBase. Headers connected
// by this call (from start) are never dropped: the caller reads them.
func (c *HeaderChain) prune(start int32) {
	if c.cps == nil || !c.Anchored() {
		return
	}
	keep := min(c.Height()-c.limit, start) / RetargetInterval * RetargetInterval
	if keep <= c.base {
		return
	}
	for p := c.base / RetargetInterval; p < keep/RetargetInterval; p++ {
		if int(p) >= len(c.cps.List) {
			c.ends[p] = c.hashes[(p+1)*RetargetInterval-1-c.base]
		}
	}
	c.prev = c.hashes[keep-1-c.base]
	c.headers = append([]wire.BlockHeader(nil), c.headers[keep-c.base:]...)
	c.hashes = append([]chainhash.Hash(nil), c.hashes[keep-c.base:]...)
	c.base = keep
}

// chainWork returns the sum of the headers' work (blockchain.CalcWork: 2^256 / (target+1)).
func chainWork(hs []wire.BlockHeader) *big.Int {
	w := new(big.Int)
	for i := range hs {
		w.Add(w, blockchain.CalcWork(hs[i].Bits))
	}
	return w
}

// ChainWork returns the cumulative work of the headers from the base (exclusive of everything
// below it) up to the tip.
func (c *HeaderChain) ChainWork() *big.Int { return chainWork(c.headers) }

// checkWork checks hdr's proof of work and difficulty bits (see HeaderChain).
func (c *HeaderChain) checkWork(h int32, hdr *wire.BlockHeader, hash *chainhash.Hash, view func(int32) wire.BlockHeader) error {
	if err := c.checkPoW(h, hdr, hash); err != nil {
		return err
	}
	if h <= c.anchorEnd {
		// The anchored period: its bits are fixed by the checkpoint hash at its end; where the
		// checkpoint of the period before carries the target (mainnet), compare as well.
		if t := c.cps.List[c.anchorEnd/RetargetInterval-1].Target; t != nil && !c.params.ReduceMinDifficulty && hdr.Bits != blockchain.BigToCompact(t) {
			return fmt.Errorf("%w: header at %d: bits %08x, the checkpoint's target is %08x", ErrBadHeader, h, hdr.Bits, blockchain.BigToCompact(t))
		}
		return nil
	}
	parent := view(h - 1)
	if c.params.PoWNoRetargeting {
		if hdr.Bits != parent.Bits {
			return fmt.Errorf("%w: header at %d: bits %08x changed on a network without retargeting", ErrBadHeader, h, hdr.Bits)
		}
		return nil
	}
	interval := int32(c.params.TargetTimespan / c.params.TargetTimePerBlock)
	if c.bip94 && h%interval == 0 && hdr.Timestamp.Before(parent.Timestamp.Add(-netparams.MaxTimewarp)) {
		return fmt.Errorf("%w: header at %d: time %d is more than %v before its parent's %d (BIP-94 time warp rule)", ErrBadHeader, h, hdr.Timestamp.Unix(), netparams.MaxTimewarp, parent.Timestamp.Unix())
	}
	if want := c.requiredBits(h, interval, hdr, view); hdr.Bits != want {
		return fmt.Errorf("%w: header at %d: bits %08x, difficulty rules require %08x", ErrBadHeader, h, hdr.Bits, want)
	}
	return nil
}

// checkPoW checks that hdr's target is in (0, powLimit] and that its hash meets it.
func (c *HeaderChain) checkPoW(h int32, hdr *wire.BlockHeader, hash *chainhash.Hash) error {
	target := blockchain.CompactToBig(hdr.Bits)
	if target.Sign() <= 0 || target.Cmp(c.params.PowLimit) > 0 {
		return fmt.Errorf("%w: header at %d: target from bits %08x is outside (0, powLimit]", ErrBadHeader, h, hdr.Bits)
	}
	if blockchain.HashToBig(hash).Cmp(target) > 0 {
		return fmt.Errorf("%w: header at %d: hash %s above its target (bits %08x)", ErrBadHeader, h, hash, hdr.Bits)
	}
	return nil
}

// requiredBits is Core's GetNextWorkRequired for the block at h (see HeaderChain).
func (c *HeaderChain) requiredBits(h, interval int32, hdr *wire.BlockHeader, view func(int32) wire.BlockHeader) uint32 {
	parent := view(h - 1)
	if h%interval != 0 {
		if !c.params.ReduceMinDifficulty {
			return parent.Bits
		}
		if hdr.Timestamp.After(parent.Timestamp.Add(2 * c.params.TargetTimePerBlock)) {
			return c.params.PowLimitBits
		}
		k := h - 1
		for k%interval != 0 && view(k).Bits == c.params.PowLimitBits {
			k--
		}
		return view(k).Bits
	}
	first := view(h - interval)
	from := parent.Bits
	if c.bip94 {
		from = first.Bits
	}
	return retargetBits(c.params, first.Timestamp.Unix(), parent.Timestamp.Unix(), from)
}

// retargetBits is Core's CalculateNextWorkRequired: the target of bits scaled by the span from
// the period's first block time to its last (clamped to [timespan/4, timespan*4]) over the
// target timespan, capped at powLimit, in compact form.
func retargetBits(params *chaincfg.Params, firstTime, lastTime int64, bits uint32) uint32 {
	span := int64(params.TargetTimespan.Seconds())
	adj := params.RetargetAdjustmentFactor
	actual := max(min(lastTime-firstTime, span*adj), span/adj)
	next := new(big.Int).Mul(blockchain.CompactToBig(bits), big.NewInt(actual))
	next.Div(next, big.NewInt(span))
	if next.Cmp(params.PowLimit) > 0 {
		next.Set(params.PowLimit)
	}
	return blockchain.BigToCompact(next)
}

// AddBelowBase checks a whole period below the base against the checkpoints and keeps the
// headers at the heights in keep (the blocks that hold wallet transactions). headers must be
// the 2016 headers from start (a multiple of 2016): linked to each other, to the previous
// period's checkpoint (or genesis), each with its proof of work, and ending on the period's
// checkpoint hash. Heights in keep outside the period are ignored. Errors: ErrBadHeader.
// Source: the Electrum wallet's verify_chunk (blockchain.py) against its checkpoints.
func (c *HeaderChain) AddBelowBase(start int32, headers []wire.BlockHeader, keep []int32) error {
	if start%RetargetInterval != 0 || start+RetargetInterval > c.base || len(headers) != RetargetInterval {
		return fmt.Errorf("%w: %d headers from %d are not a whole period below the base %d", ErrBadHeader, len(headers), start, c.base)
	}
	p := start / RetargetInterval
	var prev chainhash.Hash
	if p > 0 {
		var ok bool
		if prev, ok = c.periodEnd(p - 1); !ok {
			return fmt.Errorf("%w: no checkpoint for period %d", ErrBadHeader, p-1)
		}
	}
	for k := range headers {
		h := start + int32(k)
		hdr := &headers[k]
		hash := hdr.BlockHash()
		if h == 0 {
			if hash != *c.params.GenesisHash {
				return fmt.Errorf("%w: header at 0 is not the genesis", ErrBadHeader)
			}
		} else if hdr.PrevBlock != prev {
			return fmt.Errorf("%w: header at %d does not link to the one at %d", ErrBadHeader, h, h-1)
		}
		if err := c.checkPoW(h, hdr, &hash); err != nil {
			return err
		}
		prev = hash
	}
	if cp, ok := c.periodEnd(p); !ok || prev != cp {
		return fmt.Errorf("%w: period %d ends on %s, the checkpoint is %s", ErrBadHeader, p, prev, cp)
	}
	for _, h := range keep {
		if h >= start && h < start+RetargetInterval {
			c.below[h] = headers[h-start]
		}
	}
	return nil
}

// PinHash records hash as the block at height below the base: the hash of a transaction's block
// that was proven (against a checked header) before a restart and comes back from the store.
// Heights at or above the base are ignored.
func (c *HeaderChain) PinHash(height int32, hash chainhash.Hash) {
	if height >= 0 && height < c.base {
		c.belowHash[height] = hash
	}
}

// Restore replaces the chain with stored headers from height 1 (headers[0] the first after
// genesis), validating them like Connect. See RestoreFrom.
func (c *HeaderChain) Restore(headers []wire.BlockHeader) error { return c.RestoreFrom(1, headers) }

// RestoreFrom replaces the chain with stored headers, headers[0] at height from: either 1 (a
// chain from genesis) or the first height of a checkpointed period (the base a checkpointed
// chain started from). They are validated like Connect (the base period whole). With no headers
// the chain is left as it is. Errors (the chain is unchanged): ErrBadHeader for another start
// or headers that fail a check, ErrHeaderNoConnect.
func (c *HeaderChain) RestoreFrom(from int32, headers []wire.BlockHeader) error {
	if len(headers) == 0 {
		return nil
	}
	var fresh *HeaderChain
	switch p := from / RetargetInterval; {
	case from == 1:
		fresh = newChain(c.params, int(c.limit), c.cps, 0)
	case from%RetargetInterval == 0 && p >= 1 && c.cps != nil && int(p) < len(c.cps.List):
		fresh = newChain(c.params, int(c.limit), c.cps, from)
	default:
		return fmt.Errorf("%w: stored headers start at %d, neither 1 nor a checkpointed period's first height", ErrBadHeader, from)
	}
	if _, err := fresh.Connect(from, headers); err != nil {
		return err
	}
	*c = *fresh
	return nil
}
