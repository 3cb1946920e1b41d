package chainwatch

import (
	"encoding/json"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/internal/synthchain"
	"github.com/custodyagents/cosigner/netparams"
)

// TestBuiltinCheckpointsFacts checks the shipped checkpoint files (Electrum's
// electrum/chains/<net>/checkpoints.json) against facts from other sources:
//   - mainnet's first entry is block 2015 (00000000693067b0…);
//   - Electrum's target of period i is the one period i+1 uses; two of those equal Bitcoin
//     Core's pow_tests.cpp vectors of CalculateNextWorkRequired on real mainnet blocks:
//     get_next_work (block 32255, last retarget 1261130161, time 1262152739, bits 0x1d00ffff →
//     0x1d00d86a) and get_next_work_lower_limit_actual (block 68543, 1279008237, 1279297671,
//     0x1c05a3f4 → 0x1c0168fd); our retargetBits computes the same from those inputs.
func TestBuiltinCheckpointsFacts(t *testing.T) {
	main := BuiltinCheckpoints(&chaincfg.MainNetParams)
	t4 := BuiltinCheckpoints(&netparams.TestNet4Params)
	sig := BuiltinCheckpoints(&chaincfg.SigNetParams)
	if builtin.err != nil || main == nil || t4 == nil || sig == nil {
		t.Fatalf("builtin checkpoints: %v", builtin.err)
	}
	if BuiltinCheckpoints(&chaincfg.RegressionNetParams) != nil || BuiltinCheckpoints(&chaincfg.TestNet3Params) != nil {
		t.Fatal("checkpoints for regtest or testnet3")
	}
	t.Logf("last checkpointed heights: mainnet %d, testnet4 %d, signet %d", main.Height(), t4.Height(), sig.Height())
	if main.Height() < 900_000 || t4.Height() < 100_000 || sig.Height() < 200_000 {
		t.Fatal("shipped checkpoints are shorter than expected")
	}
	if h, ok := main.At(2015); !ok || h.String() != "00000000693067b0e6b440bc51450b9f3850561b07f6d3c021c54fbd6abb9763" {
		t.Fatalf("mainnet block 2015: %s", h)
	}
	if _, ok := main.At(2016); ok {
		t.Fatal("a checkpoint at a period's first block")
	}
	for _, v := range []struct {
		period             int
		first, last        int64
		bits, want, before uint32
	}{
		{16, 1261130161, 1262152739, 0x1d00ffff, 0x1d00d86a, 0x1d00ffff},
		{34, 1279008237, 1279297671, 0x1c05a3f4, 0x1c0168fd, 0x1c05a3f4},
	} {
		if got := retargetBits(&chaincfg.MainNetParams, v.first, v.last, v.bits); got != v.want {
			t.Errorf("retarget to period %d: %08x, Core says %08x", v.period, got, v.want)
		}
		if got := blockchain.BigToCompact(main.List[v.period-1].Target); got != v.want {
			t.Errorf("Electrum's target for period %d: %08x, Core says %08x", v.period, got, v.want)
		}
		if got := blockchain.BigToCompact(main.List[v.period-2].Target); got != v.before {
			t.Errorf("Electrum's target for period %d: %08x, want %08x", v.period-1, got, v.before)
		}
	}
	for _, cps := range []*Checkpoints{t4, sig} {
		for i, cp := range cps.List {
			if cp.Target != nil || cp.Hash == (chainhash.Hash{}) {
				t.Fatalf("test network checkpoint %d: %+v", i, cp)
			}
		}
	}
	if _, err := ParseCheckpoints([]byte(`[["00", 1]]`)); err == nil {
		t.Fatal("short hash accepted")
	}
	if _, err := ParseCheckpoints([]byte(`[["` + chainhash.Hash{}.String() + `", -1]]`)); err == nil {
		t.Fatal("negative target accepted")
	}
}

// synthCheckpoints returns c's checkpoints up to height upTo, through the Electrum JSON format.
func synthCheckpoints(t testing.TB, c *synthchain.Chain, upTo int32) *Checkpoints {
	t.Helper()
	b, err := json.Marshal(c.Checkpoints(upTo))
	if err != nil {
		t.Fatal(err)
	}
	cps, err := ParseCheckpoints(b)
	if err != nil {
		t.Fatal(err)
	}
	return cps
}

// reMine recomputes nonces from i on so that hs stays a valid chain after hs[i] was changed.
func reMine(hs []wire.BlockHeader, i int) {
	target := blockchain.CompactToBig(hs[i].Bits)
	for k := i; k < len(hs); k++ {
		if k > i {
			hs[k].PrevBlock = hs[k-1].BlockHash()
		}
		for {
			h := hs[k].BlockHash()
			if blockchain.HashToBig(&h).Cmp(target) <= 0 {
				break
			}
			hs[k].Nonce++
		}
	}
}

func TestCheckpointedChain(t *testing.T) {
	const I = RetargetInterval
	sc, err := synthchain.New(3*I+50, nil)
	if err != nil {
		t.Fatal(err)
	}
	cps := synthCheckpoints(t, sc, 3*I-1) // periods 0, 1, 2: base 2·2016
	c := NewCheckpointedChain(sc.Params, 10, cps)
	base := int32(2 * I)
	if c.Base() != base || c.Anchored() || c.Height() != base-1 || c.Tip().Hash != cps.List[1].Hash {
		t.Fatalf("new: base %d height %d tip %+v", c.Base(), c.Height(), c.Tip())
	}
	if h, ok := c.Hash(I - 1); !ok || h != cps.List[0].Hash {
		t.Fatal("checkpoint hash below the base")
	}
	if _, ok := c.Header(100); ok {
		t.Fatal("a header below the base before any was fetched")
	}
	all := sc.Headers(base, I+51)

	// The base period must come whole and end on its checkpoint.
	if _, err := c.Connect(base, all[:100]); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("part of the base period: %v", err)
	}
	forged := append([]wire.BlockHeader(nil), all[:I]...)
	forged[5].Timestamp = forged[5].Timestamp.Add(time.Second)
	reMine(forged, 5)
	if _, err := c.Connect(base, forged); !errors.Is(err, ErrBadHeader) || c.Anchored() {
		t.Fatalf("a base period that misses its checkpoint: %v", err)
	}
	if _, err := c.Connect(base-3, sc.Headers(base-3, I+3)); err != nil || c.Height() != base+I-1 {
		t.Fatalf("base period (with 3 headers below the base, ignored): %v, height %d", err, c.Height())
	}
	// After it, the retarget at 3·2016 is checked from the base period's timestamps.
	bad := all[I]
	bad.Bits = 0x2000ffff
	reMine([]wire.BlockHeader{bad}, 0)
	if _, err := c.Connect(base+I, []wire.BlockHeader{bad}); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("wrong bits at the retarget: %v", err)
	}
	if _, err := c.Connect(base+I, all[I:]); err != nil || c.Height() != sc.Height {
		t.Fatalf("after the base period: %v", err)
	}
	if c.Base() != 3*I { // the anchored period is dropped from memory once tip-limit is past it
		t.Fatalf("base %d after pruning, want %d", c.Base(), 3*I)
	}

	// Below the base: a whole period checked against the checkpoints, only asked heights kept.
	if err := c.AddBelowBase(0, sc.Headers(0, I), []int32{100, 5000}); err != nil {
		t.Fatal(err)
	}
	if h, ok := c.Header(100); !ok || h != sc.Header(100) {
		t.Fatal("kept header 100")
	}
	if _, ok := c.Header(101); ok {
		t.Fatal("kept a header nobody asked for")
	}
	p1 := sc.Headers(I, I)
	p1[7].Nonce++
	reMine(p1, 7)
	if err := c.AddBelowBase(I, p1, []int32{I + 7}); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("forged period below the base: %v", err)
	}
	if err := c.AddBelowBase(c.Base(), sc.Headers(c.Base(), I), nil); !errors.Is(err, ErrBadHeader) {
		t.Fatal("AddBelowBase at the base")
	}
	c.PinHash(50, chainhash.Hash{5})
	if h, ok := c.Hash(50); !ok || h != (chainhash.Hash{5}) {
		t.Fatal("pinned hash")
	}

	// Restore from the base (what the store holds), not from elsewhere.
	r := NewCheckpointedChain(sc.Params, 10, cps)
	if err := r.RestoreFrom(base, all); err != nil || r.Tip() != c.Tip() {
		t.Fatalf("restore from the base: %v", err)
	}
	if err := r.RestoreFrom(base+1, all[1:]); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("restore from inside a period: %v", err)
	}
	g := NewCheckpointedChain(sc.Params, 10, cps)
	if err := g.RestoreFrom(1, sc.Headers(1, sc.Height)); err != nil || g.Base() != 0 || g.Tip() != c.Tip() {
		t.Fatalf("restore from genesis (a database from before checkpoints): %v", err)
	}
}

// bip94Params is testnet4 with an easy proof of work and 4-block periods (same Net, so
// EnforceBIP94 holds); testnet3Params the same without BIP-94.
func bip94Params(t *testing.T, bip94 bool) (*chaincfg.Params, wire.BlockHeader) {
	p := netparams.TestNet4Params
	if !bip94 {
		p.Net = chaincfg.TestNet3Params.Net
	}
	p.PowLimit = chaincfg.RegressionNetParams.PowLimit
	p.PowLimitBits = 0x207fffff
	p.TargetTimespan = 40 * time.Minute // 4 blocks of 10 minutes
	g := mineHeader(t, wire.BlockHeader{}, 0x2000ffff, time.Unix(1_700_000_000, 0), 'g', true)
	p.GenesisBlock = &wire.MsgBlock{Header: g}
	gh := g.BlockHash()
	p.GenesisHash = &gh
	return &p, g
}

// TestDifficultyRulesBIP94 checks testnet's 20-minute rule and BIP-94's two changes
// (https://github.com/bitcoin/bips/blob/master/bip-0094.mediawiki) on 4-block periods:
//   - inside a period, a block more than 20 minutes after its parent must have powLimit's bits,
//     and the next normal block goes back to the period's real bits;
//   - the first block of a period never takes the exception;
//   - the retarget starts from the first block's bits on testnet4 but from the last block's on
//     testnet3 (where a minimum-difficulty last block resets the difficulty: block storms);
//   - testnet4's first block of a period may be at most 600 s older than its parent.
func TestDifficultyRulesBIP94(t *testing.T) {
	const real = 0x2000ffff
	at := func(prev wire.BlockHeader, d time.Duration, bits uint32) wire.BlockHeader {
		return mineHeader(t, prev, bits, prev.Timestamp.Add(d), 'a', true)
	}
	for _, bip94 := range []bool{true, false} {
		p, g := bip94Params(t, bip94)
		c := NewHeaderChain(p, 0)
		h1 := at(g, 10*time.Minute, real)
		h2 := at(h1, 21*time.Minute, p.PowLimitBits) // the 20-minute exception
		if _, err := c.Connect(1, []wire.BlockHeader{h1}); err != nil {
			t.Fatal(err)
		}
		// As in Core, a late block must take the exception (its bits are powLimit's).
		if _, err := c.Connect(2, []wire.BlockHeader{at(h1, 21*time.Minute, real)}); !errors.Is(err, ErrBadHeader) {
			t.Fatalf("late block without the exception: %v", err)
		}
		if _, err := c.Connect(2, []wire.BlockHeader{h2}); err != nil {
			t.Fatalf("bip94=%v: min-difficulty block: %v", bip94, err)
		}
		if _, err := c.Connect(3, []wire.BlockHeader{at(h2, 5*time.Minute, p.PowLimitBits)}); !errors.Is(err, ErrBadHeader) {
			t.Fatalf("a fast block keeping min difficulty: %v", err)
		}
		// The period's last block (height 3) also takes the exception: on testnet3 the
		// retarget then starts from powLimit.
		h3 := at(h2, 25*time.Minute, p.PowLimitBits)
		if _, err := c.Connect(3, []wire.BlockHeader{h3}); err != nil {
			t.Fatal(err)
		}
		span := h3.Timestamp.Unix() - g.Timestamp.Unix()
		from := uint32(p.PowLimitBits)
		if bip94 {
			from = g.Bits
		}
		want := retargetBits(p, g.Timestamp.Unix(), h3.Timestamp.Unix(), from)
		next := new(big.Int).Mul(blockchain.CompactToBig(from), big.NewInt(span))
		next.Div(next, big.NewInt(40*60))
		if next.Cmp(p.PowLimit) > 0 {
			next.Set(p.PowLimit)
		}
		if want != blockchain.BigToCompact(next) {
			t.Fatalf("retargetBits %08x, by hand %08x", want, blockchain.BigToCompact(next))
		}
		// The first block of the next period, late: no exception, the retarget applies.
		if want != p.PowLimitBits {
			if _, err := c.Connect(4, []wire.BlockHeader{at(h3, 30*time.Minute, p.PowLimitBits)}); !errors.Is(err, ErrBadHeader) {
				t.Fatalf("bip94=%v: min difficulty on a period's first block: %v", bip94, err)
			}
		}
		if bip94 {
			if _, err := c.Connect(4, []wire.BlockHeader{mineHeader(t, h3, want, h3.Timestamp.Add(-601*time.Second), 'a', true)}); !errors.Is(err, ErrBadHeader) {
				t.Fatalf("time warp by 601 s accepted: %v", err)
			}
			if _, err := c.Connect(4, []wire.BlockHeader{mineHeader(t, h3, want, h3.Timestamp.Add(-600*time.Second), 'a', true)}); err != nil {
				t.Fatalf("600 s back is allowed: %v", err)
			}
		} else {
			if want != p.PowLimitBits {
				t.Fatalf("testnet3 retarget from a min-difficulty last block: %08x, want powLimit", want)
			}
			if _, err := c.Connect(4, []wire.BlockHeader{mineHeader(t, h3, want, h3.Timestamp.Add(-2*time.Hour), 'a', true)}); err != nil {
				t.Fatalf("testnet3 has no time warp rule: %v", err)
			}
		}
	}
}

// FuzzCheckpointedConnect feeds a checkpointed chain (anchored, a few hundred headers past its
// base) altered header batches at any start: Connect never panics, and when it refuses a batch
// the chain is unchanged.
func FuzzCheckpointedConnect(f *testing.F) {
	const I = RetargetInterval
	sc, err := synthchain.New(2*I+300, nil)
	if err != nil {
		f.Fatal(err)
	}
	cps := synthCheckpoints(f, sc, 2*I-1)
	all := sc.Headers(0, 3*I)
	f.Add(int32(I), uint16(I+10), uint16(5), byte(1), uint8(0))
	f.Add(int32(2*I+100), uint16(50), uint16(10), byte(0xff), uint8(1))
	f.Add(int32(I-5), uint16(I+20), uint16(2000), byte(7), uint8(2))
	f.Add(int32(2*I+250), uint16(60), uint16(0), byte(0), uint8(3))
	f.Fuzz(func(t *testing.T, start int32, n, at uint16, x byte, field uint8) {
		c := NewCheckpointedChain(sc.Params, 50, cps)
		if _, err := c.Connect(I, all[I:2*I+200]); err != nil {
			t.Fatal(err)
		}
		before, height := c.Tip(), c.Height()
		if start < 0 || int(start) >= len(all) {
			start = int32(int(uint32(start)) % len(all))
		}
		end := min(int(start)+int(n), len(all))
		hs := append([]wire.BlockHeader(nil), all[start:end]...)
		if len(hs) > 0 {
			k := int(at) % len(hs)
			switch field % 4 {
			case 0:
				hs[k].Nonce ^= uint32(x)
			case 1:
				hs[k].Bits ^= uint32(x) << 8
			case 2:
				hs[k].Timestamp = hs[k].Timestamp.Add(time.Duration(int8(x)) * time.Hour)
			case 3:
				hs[k].PrevBlock[x%32] ^= x
			}
		}
		if _, err := c.Connect(start, hs); err != nil && (c.Tip() != before || c.Height() != height) {
			t.Fatalf("refused batch changed the chain: %v", err)
		}
	})
}

// TestCheckpointedChainPrunes: a checkpointed chain holds in memory only the headers from the
// first block of the period that holds tip-limit; the last hash of every dropped period stays,
// so a dropped period (past the checkpoints too) can still be checked for an SPV proof, and
// forks deeper than the limit are still refused.
func TestCheckpointedChainPrunes(t *testing.T) {
	const I = RetargetInterval
	sc, err := synthchain.New(4*I+200, nil)
	if err != nil {
		t.Fatal(err)
	}
	cps := synthCheckpoints(t, sc, 2*I-1) // periods 0 and 1: anchored on period 1
	c := NewCheckpointedChain(sc.Params, 10, cps)
	all := sc.Headers(0, 5*I)
	for from := int32(I); from <= sc.Height; from += I {
		if _, err := c.Connect(from, all[from:min(int(from)+I, len(all))]); err != nil {
			t.Fatalf("connect from %d: %v", from, err)
		}
	}
	if c.Base() != 4*I || c.Height() != sc.Height || len(c.headers) != 201 {
		t.Fatalf("base %d, height %d, %d headers held", c.Base(), c.Height(), len(c.headers))
	}
	for p := int32(0); p < 4; p++ {
		if h, ok := c.Hash(p*I + I - 1); !ok || h != all[p*I+I-1].BlockHash() {
			t.Fatalf("period %d's last hash lost", p)
		}
	}
	if _, ok := c.Hash(3*I + 5); ok {
		t.Fatal("a dropped header's hash still held")
	}
	// Period 3 is past the checkpoints: it is checked against the hash kept when it was dropped.
	if err := c.AddBelowBase(3*I, all[3*I:4*I], []int32{3*I + 5}); err != nil {
		t.Fatal(err)
	}
	if h, ok := c.Header(3*I + 5); !ok || h != all[3*I+5] {
		t.Fatal("kept header 3·2016+5")
	}
	forged := append([]wire.BlockHeader(nil), all[2*I:3*I]...)
	forged[9].Nonce++
	reMine(forged, 9)
	if err := c.AddBelowBase(2*I, forged, []int32{2*I + 9}); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("forged dropped period: %v", err)
	}
	// The retarget at the next boundary still checks (its period's first block is held), and a
	// fork below the base is refused as too deep.
	fork := append([]wire.BlockHeader(nil), all[4*I-1:4*I+1]...)
	fork[1].Timestamp = fork[1].Timestamp.Add(time.Second)
	reMine(fork, 1)
	if _, err := c.Connect(4*I-1, fork); !errors.Is(err, ErrReorgTooDeep) {
		t.Fatalf("fork at the base: %v", err)
	}
}
