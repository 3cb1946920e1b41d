package chainwatch

import (
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// mineHeader returns a header on prev with bits whose hash meets (ok=true) or misses (ok=false)
// its target; salt varies the merkle root so that forks differ.
func mineHeader(t testing.TB, prev wire.BlockHeader, bits uint32, ts time.Time, salt byte, ok bool) wire.BlockHeader {
	t.Helper()
	h := wire.BlockHeader{Version: 4, PrevBlock: prev.BlockHash(), MerkleRoot: chainhash.Hash{salt, 1}, Timestamp: ts, Bits: bits}
	target := blockchain.CompactToBig(bits)
	for n := uint32(0); n < 1<<20; n++ {
		h.Nonce = n
		hash := h.BlockHash()
		if (blockchain.HashToBig(&hash).Cmp(target) <= 0) == ok {
			return h
		}
	}
	t.Fatal("no nonce found")
	return h
}

// buildChain mines n regtest headers on top of from.
func buildChain(t testing.TB, from wire.BlockHeader, n int, salt byte) []wire.BlockHeader {
	t.Helper()
	out := make([]wire.BlockHeader, 0, n)
	prev := from
	for i := 0; i < n; i++ {
		h := mineHeader(t, prev, prev.Bits, prev.Timestamp.Add(10*time.Minute), salt, true)
		out = append(out, h)
		prev = h
	}
	return out
}

func TestHeaderChainExtendAndReorg(t *testing.T) {
	params := &chaincfg.RegressionNetParams
	c := NewHeaderChain(params, 5)
	a := buildChain(t, params.GenesisBlock.Header, 10, 'a')
	if _, err := c.Connect(1, a[:4]); err != nil {
		t.Fatal(err)
	}
	// Overlap: headers we have are skipped, the rest extend.
	r, err := c.Connect(3, a[2:])
	if err != nil {
		t.Fatal(err)
	}
	if r.Fork != 4 || len(r.Disconnected) != 0 || len(r.Connected) != 6 || c.Height() != 10 {
		t.Fatalf("extend: %+v, height %d", r, c.Height())
	}
	if h, _ := c.Hash(10); h != a[9].BlockHash() {
		t.Fatal("tip hash")
	}

	// A fork after height 7 that reaches 11 replaces 8..10.
	b := buildChain(t, a[6], 4, 'b')
	r, err = c.Connect(8, b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Fork != 7 || len(r.Disconnected) != 3 || r.Disconnected[0].Height != 10 || r.Disconnected[2].Height != 8 ||
		len(r.Connected) != 4 || r.Connected[0].Height != 8 || c.Tip().Hash != b[3].BlockHash() {
		t.Fatalf("reorg: %+v", r)
	}
	if h, _ := c.Hash(8); h != b[0].BlockHash() {
		t.Fatal("height 8 not replaced")
	}

	// Reorgs are followed only to more work: a shorter fork and an equally long one (regtest:
	// every header has the same work) are refused and change nothing; one more header wins.
	before := c.Tip()
	short := buildChain(t, a[6], 2, 'c') // 8..9 against our 8..11
	if r, err := c.Connect(8, short); !errors.Is(err, ErrForkLessWork) || len(r.Disconnected) != 0 || c.Tip() != before {
		t.Fatalf("shorter fork: %+v, %v, tip %+v", r, err, c.Tip())
	}
	equal := buildChain(t, a[6], 4, 'c') // 8..11 against our 8..11
	if _, err := c.Connect(8, equal); !errors.Is(err, ErrForkLessWork) || c.Tip() != before {
		t.Fatalf("equal-work fork: %v, tip %+v", err, c.Tip())
	}
	longer := buildChain(t, a[6], 5, 'c') // 8..12
	if r, err := c.Connect(8, longer); err != nil || r.Fork != 7 || len(r.Disconnected) != 4 || c.Tip().Hash != longer[4].BlockHash() {
		t.Fatalf("longer fork: %+v, %v", r, err)
	}
	b = append(b, buildChain(t, b[3], 2, 'b')...) // 8..13
	if _, err := c.Connect(8, b); err != nil || c.Tip().Hash != b[5].BlockHash() {
		t.Fatalf("back to b: %v", err)
	}

	// Deeper than the safety limit (5): refused.
	deep := buildChain(t, a[3], 9, 'd') // fork at 4, tip 11 → 7 deep
	if _, err := c.Connect(5, deep); !errors.Is(err, ErrReorgTooDeep) {
		t.Fatalf("deep: %v", err)
	}

	// Headers that skip heights or link nowhere do not connect.
	far := buildChain(t, b[5], 3, 'e') // 14..16
	if _, err := c.Connect(15, far[1:]); !errors.Is(err, ErrHeaderNoConnect) {
		t.Fatalf("gap: %v", err)
	}
	if _, err := c.Connect(14, far[1:]); !errors.Is(err, ErrHeaderNoConnect) {
		t.Fatalf("wrong parent: %v", err)
	}
	if _, err := c.Connect(14, far); err != nil || c.Height() != 16 {
		t.Fatalf("connect after fetching back: %v, height %d", err, c.Height())
	}
}

func TestHeaderChainRejectsBadHeaders(t *testing.T) {
	params := &chaincfg.RegressionNetParams
	g := params.GenesisBlock.Header
	good := buildChain(t, g, 2, 'a')
	tests := []struct {
		name string
		hdrs func() []wire.BlockHeader
		want error
	}{
		{"proof of work above target", func() []wire.BlockHeader {
			return []wire.BlockHeader{good[0], mineHeader(t, good[0], g.Bits, good[0].Timestamp.Add(time.Minute), 'x', false)}
		}, ErrBadHeader},
		{"bits changed on regtest", func() []wire.BlockHeader {
			return []wire.BlockHeader{good[0], mineHeader(t, good[0], 0x207ffffe, good[0].Timestamp.Add(time.Minute), 'x', true)}
		}, ErrBadHeader},
		{"target above powLimit", func() []wire.BlockHeader {
			return []wire.BlockHeader{good[0], mineHeader(t, good[0], 0x21010000, good[0].Timestamp.Add(time.Minute), 'x', true)}
		}, ErrBadHeader},
		{"broken prev link inside the batch", func() []wire.BlockHeader {
			h := good[1]
			h.PrevBlock = chainhash.Hash{1}
			return []wire.BlockHeader{good[0], h}
		}, ErrBadHeader},
		{"first header links elsewhere", func() []wire.BlockHeader {
			h := good[0]
			h.PrevBlock = chainhash.Hash{2}
			return []wire.BlockHeader{h}
		}, ErrHeaderNoConnect},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewHeaderChain(params, 0)
			if _, err := c.Connect(1, tc.hdrs()); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if c.Height() != 0 {
				t.Fatal("a rejected batch changed the chain")
			}
		})
	}
	c := NewHeaderChain(params, 0)
	if _, err := c.Connect(0, []wire.BlockHeader{g}); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("genesis replaced: %v", err)
	}
}

// TestHeaderChainRetarget runs the mainnet rules (bits fixed inside a window, recomputed at each
// multiple of the interval) on a copy of mainnet's parameters with an easy powLimit and a
// 4-block interval so that headers can be mined in a test.
func TestHeaderChainRetarget(t *testing.T) {
	p := chaincfg.MainNetParams
	p.PowLimit = chaincfg.RegressionNetParams.PowLimit
	p.PowLimitBits = chaincfg.RegressionNetParams.PowLimitBits
	p.TargetTimePerBlock = 10 * time.Minute
	p.TargetTimespan = 40 * time.Minute // interval 4
	p.ReduceMinDifficulty = false
	p.PoWNoRetargeting = false
	genesis := *chaincfg.MainNetParams.GenesisBlock
	genesis.Header = wire.BlockHeader{Version: 1, Timestamp: time.Unix(1_700_000_000, 0), Bits: 0x1f7fffff}
	for n := uint32(0); ; n++ {
		genesis.Header.Nonce = n
		h := genesis.Header.BlockHash()
		if blockchain.HashToBig(&h).Cmp(blockchain.CompactToBig(0x1f7fffff)) <= 0 {
			break
		}
	}
	p.GenesisBlock = &genesis
	gh := genesis.Header.BlockHash()
	p.GenesisHash = &gh

	// Heights 1..3 keep the bits; blocks come twice as fast (5 min), so at height 4 the target
	// halves: actual span (heights 0..3) = 15 min against 40 min.
	c := NewHeaderChain(&p, 0)
	prev := genesis.Header
	var hs []wire.BlockHeader
	for i := 1; i <= 3; i++ {
		prev = mineHeader(t, prev, 0x1f7fffff, prev.Timestamp.Add(5*time.Minute), 'a', true)
		hs = append(hs, prev)
	}
	if _, err := c.Connect(1, hs); err != nil {
		t.Fatal(err)
	}
	next := new(big.Int).Mul(blockchain.CompactToBig(0x1f7fffff), big.NewInt(15*60))
	next.Div(next, big.NewInt(40*60))
	want := blockchain.BigToCompact(next)
	if _, err := c.Connect(4, []wire.BlockHeader{mineHeader(t, prev, 0x1f7fffff, prev.Timestamp.Add(5*time.Minute), 'a', true)}); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("unchanged bits at a retarget: %v", err)
	}
	if _, err := c.Connect(4, []wire.BlockHeader{mineHeader(t, prev, want, prev.Timestamp.Add(5*time.Minute), 'a', true)}); err != nil {
		t.Fatalf("retarget to %08x: %v", want, err)
	}
	last, _ := c.Header(4)
	if _, err := c.Connect(5, []wire.BlockHeader{mineHeader(t, last, 0x1f7fffff, last.Timestamp.Add(5*time.Minute), 'a', true)}); !errors.Is(err, ErrBadHeader) {
		t.Fatalf("bits changed inside a window: %v", err)
	}
}

func TestHeaderChainRestore(t *testing.T) {
	params := &chaincfg.RegressionNetParams
	a := buildChain(t, params.GenesisBlock.Header, 5, 'a')
	c := NewHeaderChain(params, 0)
	if err := c.Restore(a); err != nil || c.Tip().Hash != a[4].BlockHash() {
		t.Fatalf("restore: %v", err)
	}
	bad := append([]wire.BlockHeader(nil), a...)
	bad[2].Nonce++ // breaks the link from 4 (and likely the work)
	c2 := NewHeaderChain(params, 0)
	if err := c2.Restore(bad); err == nil {
		t.Fatal("restored a broken chain")
	}
	if c2.Height() != 0 {
		t.Fatal("failed restore changed the chain")
	}
}

// TestHeaderChainMedianTimePast: BIP-113's median time past is the median of the timestamps of
// the 11 headers ending at the tip (fewer near the start; genesis not counted), whatever their
// order — consensus lets a header's time be earlier than its parent's.
func TestHeaderChainMedianTimePast(t *testing.T) {
	params := &chaincfg.RegressionNetParams
	c := NewHeaderChain(params, 100)
	if _, ok := c.MedianTimePast(); ok {
		t.Fatal("genesis only: a median time past")
	}
	base := time.Unix(1_800_000_000, 0)
	stamps := map[int32]time.Time{}
	prev := params.GenesisBlock.Header
	var hs []wire.BlockHeader
	for h := int32(1); h <= 20; h++ {
		ts := base.Add(time.Duration(h) * 10 * time.Minute)
		switch h {
		case 19:
			ts = base.Add(100 * time.Second)
		case 20:
			ts = base.Add(50_000 * time.Second)
		}
		stamps[h] = ts
		prev = mineHeader(t, prev, prev.Bits, ts, 'm', true)
		hs = append(hs, prev)
	}
	if _, err := c.Connect(1, hs[:5]); err != nil {
		t.Fatal(err)
	}
	// Heights 1..5 (genesis not counted): the 3rd of 5 is height 3's.
	if got, ok := c.MedianTimePast(); !ok || !got.Equal(stamps[3]) {
		t.Fatalf("tip 5: mtp %v, %v; want %v", got, ok, stamps[3])
	}
	if _, err := c.Connect(6, hs[5:]); err != nil {
		t.Fatal(err)
	}
	// Heights 10..20: 10..18 at base+h*600, 19 at base+100, 20 at base+50000 → sorted, the 6th
	// of 11 is height 14's.
	if got, ok := c.MedianTimePast(); !ok || !got.Equal(stamps[14]) {
		t.Fatalf("tip 20: mtp %v, %v; want %v", got, ok, stamps[14])
	}
}
