package psbt

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// selectParams are the parameters for the 2-of-3 P2WSH test wallet paying one P2WPKH output.
func selectParams(t testing.TB) SelectParams {
	t.Helper()
	f := newFixture(t)
	p, err := NewSelectParams(f.desc, []Payment{{Address: externalAddr, Amount: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// coinsOf makes candidate coins of the given values (scripts and positions do not matter to
// Select).
func coinsOf(values ...btcutil.Amount) []UTXO {
	out := make([]UTXO, len(values))
	for i, v := range values {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(i))
		out[i] = UTXO{OutPoint: wire.OutPoint{Hash: chainhash.Hash(sha256.Sum256(b[:])), Index: uint32(i % 3)},
			Coin: Coin{Value: v, Branch: 0, Index: uint32(i)}}
	}
	return out
}

func TestSelectParamsFromDescriptor(t *testing.T) {
	p := selectParams(t)
	// P2WSH 2-of-3 input: 41 non-witness bytes (164 WU) + 254 witness bytes (item count,
	// empty CHECKMULTISIG dummy, two 72-byte signatures, 105-byte script with length).
	if p.InputWeight != 164+254 {
		t.Errorf("InputWeight = %d, want 418", p.InputWeight)
	}
	// P2WSH change: 8 + 1 + 34 bytes; dust at 3 sat/vB of (43 + 67) bytes = 330 sat.
	if p.ChangeSize != 43 || p.ChangeDust != 330 {
		t.Errorf("change size %d dust %d, want 43 and 330", p.ChangeSize, p.ChangeDust)
	}
	// P2WPKH payment: 8 + 1 + 22 bytes; dust 294 sat.
	if len(p.PaymentSizes) != 1 || p.PaymentSizes[0] != 31 || p.PaymentDust != 294 {
		t.Errorf("payment sizes %v dust %d, want [31] and 294", p.PaymentSizes, p.PaymentDust)
	}
}

func TestSelect(t *testing.T) {
	params := selectParams(t)
	// At 1 sat/vB: an input costs ⌈418/4⌉ = 105 sat; the transaction without inputs and
	// change weighs 4 × (8 + 1 + 1 + 31) + 2 = 166 WU = 42 vB (one-byte input count).
	const inFee, base = 105, 42
	cases := []struct {
		name    string
		coins   []UTXO
		target  btcutil.Amount
		feerate FeeRate
		mode    SelectMode
		reserve btcutil.Amount
		algo    string
		nIn     int
		change  bool
		err     error
		missing btcutil.Amount
	}{
		{name: "exact match of one coin needs no change", coins: coinsOf(1_000_000, 50_000+inFee+base, 20_000),
			target: 50_000, feerate: 1, algo: AlgorithmBnB, nIn: 1},
		{name: "exact match of two coins among larger ones", coins: coinsOf(900_000, 30_000, 700_000, 20_000+2*inFee+base+10, 5_000),
			target: 50_000, feerate: 1, algo: AlgorithmBnB, nIn: 2},
		{name: "no exact match: random draw with change", coins: coinsOf(1_000_000, 2_000_000),
			target: 50_000, feerate: 5, algo: AlgorithmSRD, nIn: 1, change: true},
		{name: "remainder below the change floor goes to the fee", coins: coinsOf(50_000 + inFee + base + 200),
			target: 50_000, feerate: 1, algo: AlgorithmAll, nIn: 1},
		{name: "random draw needs both coins", coins: coinsOf(30_000, 30_000),
			target: 50_000, feerate: 1, algo: AlgorithmSRD, nIn: 2, change: true},
		{name: "insufficient funds says what is missing", coins: coinsOf(10_000, 5_000),
			target: 20_000, feerate: 1, err: ErrInsufficientFunds, missing: 20_000 + 251 - 15_000}, // 251 vB: ⌈(4 × 41 + 2 + 2 × 418) / 4⌉,
		{name: "coin worth less than its input fee does not count", coins: coinsOf(100, 10_000),
			target: 10_000, feerate: 1, err: ErrInsufficientFunds, missing: 146}, // ⌈(4 × 41 + 2 + 418) / 4⌉ vB
		{name: "sweep everything", coins: coinsOf(10_000, 20_000, 90),
			feerate: 1, mode: SelectSweep, algo: AlgorithmSweep, nIn: 2},
		{name: "sweep above a reserve", coins: coinsOf(10_000, 20_000),
			feerate: 2, mode: SelectSweep, reserve: 5_000, algo: AlgorithmSweep, nIn: 2, change: true},
		{name: "sweep with a dust reserve", coins: coinsOf(10_000), feerate: 1, mode: SelectSweep, reserve: 100, err: ErrDustOutput},
		{name: "sweep of too little", coins: coinsOf(400), feerate: 1, mode: SelectSweep, err: ErrInsufficientFunds,
			missing: 146 + 294 - 400},
		{name: "sweep of nothing", feerate: 1, mode: SelectSweep, err: ErrInsufficientFunds},
		{name: "negative feerate", coins: coinsOf(10_000), target: 1_000, feerate: -1, err: ErrFeeRate},
		{name: "NaN feerate", coins: coinsOf(10_000), target: 1_000, feerate: FeeRate(math.NaN()), err: ErrFeeRate},
		{name: "zero target", coins: coinsOf(10_000), target: 0, feerate: 1, err: ErrSelectParams},
		{name: "same coin twice", coins: append(coinsOf(10_000), coinsOf(10_000)...), target: 1_000, feerate: 1, err: ErrSelectParams},
		{name: "impossible coin value", coins: coinsOf(-5), target: 1_000, feerate: 1, err: ErrSelectParams},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := params
			p.Mode, p.Reserve, p.Rand = c.mode, c.reserve, rand.New(rand.NewPCG(1, 2))
			s, err := Select(c.coins, c.target, c.feerate, p)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("err = %v, want %v", err, c.err)
				}
				var ife *InsufficientFundsError
				if c.missing != 0 && (!errors.As(err, &ife) || ife.Missing != c.missing || ife.Needed-ife.Available != ife.Missing) {
					t.Fatalf("err = %#v, want %s missing", err, c.missing)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			checkSelection(t, c.coins, c.target, c.feerate, p, s)
			if s.Algorithm != c.algo || len(s.Inputs) != c.nIn || (s.Change > 0) != c.change {
				t.Fatalf("got %s with %d inputs and change %s, want %s with %d inputs, change %v", s.Algorithm, len(s.Inputs), s.Change, c.algo, c.nIn, c.change)
			}
			if c.mode == SelectSweep && c.reserve > 0 && s.Change != c.reserve {
				t.Fatalf("sweep change %s, want the reserve %s", s.Change, c.reserve)
			}
		})
	}
}

// checkSelection asserts what every selection must satisfy.
func checkSelection(t testing.TB, coins []UTXO, target btcutil.Amount, feerate FeeRate, p SelectParams, s Selection) {
	t.Helper()
	given := map[wire.OutPoint]btcutil.Amount{}
	var all btcutil.Amount
	for _, c := range coins {
		given[c.OutPoint] = c.Value
		all += c.Value
	}
	used := map[wire.OutPoint]bool{}
	var sum btcutil.Amount
	for _, c := range s.Inputs {
		if v, ok := given[c.OutPoint]; !ok || v != c.Value || used[c.OutPoint] {
			t.Fatalf("input %s is not a given coin or is used twice", c.OutPoint)
		}
		used[c.OutPoint] = true
		sum += c.Value
	}
	if sum != s.InputTotal || sum > all {
		t.Fatalf("input total %s, sum of inputs %s, available %s", s.InputTotal, sum, all)
	}
	if s.Amount+s.Change+s.Fee != s.InputTotal || s.Fee < 0 || s.Excess < 0 || s.Excess > s.Fee {
		t.Fatalf("amounts do not add up: %+v", s)
	}
	if p.Mode == SelectTarget && s.Amount != target {
		t.Fatalf("amount %s, want the target %s", s.Amount, target)
	}
	changeSize := 0
	if s.Change > 0 {
		changeSize = p.ChangeSize
		if s.Change < p.ChangeDust {
			t.Fatalf("change %s below the dust limit %s", s.Change, p.ChangeDust)
		}
	}
	if v := (txWeight(len(s.Inputs), p.InputWeight, p.PaymentSizes, changeSize) + 3) / 4; v != s.VSize {
		t.Fatalf("vsize %d, want %d", s.VSize, v)
	}
	if s.VSize*4 > MaxStandardTxWeight {
		t.Fatalf("vsize %d is over the standard weight", s.VSize)
	}
	if float64(s.Fee) < float64(feerate)*float64(s.VSize)-1e-6 {
		t.Fatalf("fee %s pays less than %v sat/vB on %d vB", s.Fee, feerate, s.VSize)
	}
}

// TestSelectProperties runs Select on random wallets: every success satisfies checkSelection;
// every insufficient-funds error is true (all coins worth spending cannot pay target + fee).
func TestSelectProperties(t *testing.T) {
	params := selectParams(t)
	r := rand.New(rand.NewPCG(7, 11))
	outcomes := map[string]int{}
	for n := 0; n < 400; n++ {
		values := make([]btcutil.Amount, 1+r.IntN(30))
		for i := range values {
			// Mixed scales: dust-sized, small and large coins.
			values[i] = btcutil.Amount(1 + r.Int64N([]int64{500, 50_000, 5_000_000, 2e8}[r.IntN(4)]))
		}
		coins := coinsOf(values...)
		feerate := FeeRate(float64(r.IntN(20000))/100 + 0.01*float64(r.IntN(2)))
		target := btcutil.Amount(1 + r.Int64N(int64(3e8)))
		if r.IntN(2) == 0 {
			target = btcutil.Amount(1 + r.Int64N(2e6))
		}
		p := params
		p.Rand = r
		if r.IntN(5) == 0 {
			p.Mode = SelectSweep
			if r.IntN(2) == 0 {
				p.Reserve = btcutil.Amount(330 + r.Int64N(100_000))
			}
		}
		s, err := Select(coins, target, feerate, p)
		var ife *InsufficientFundsError
		switch {
		case err == nil:
			checkSelection(t, coins, target, feerate, p, s)
			outcomes[s.Algorithm]++
		case errors.As(err, &ife):
			outcomes["insufficient"]++
			if ife.Missing <= 0 {
				t.Fatalf("insufficient funds with nothing missing: %+v", ife)
			}
			kvb, _ := satPerKvB(feerate)
			inFee := feeForWeight(kvb, p.InputWeight)
			var worth []UTXO
			for _, c := range coins {
				if c.Value > inFee {
					worth = append(worth, c)
				}
			}
			change := 0
			need := target
			if p.Mode == SelectSweep {
				need = max(p.PaymentDust, 1) + p.Reserve
				if p.Reserve > 0 {
					change = p.ChangeSize
				}
			}
			all := finish(worth, kvb, p, change)
			if len(worth) > 0 && all.InputTotal-all.Fee >= need {
				t.Fatalf("insufficient funds, but all coins pay %s ≥ %s", all.InputTotal-all.Fee, need)
			}
		default:
			t.Fatalf("Select(%v, %s, %v): %v", values, target, feerate, err)
		}
	}
	t.Logf("outcomes: %v", outcomes)
	for _, o := range []string{AlgorithmBnB, AlgorithmSRD, AlgorithmSweep, "insufficient"} {
		if outcomes[o] < 10 {
			t.Errorf("only %d %s outcomes in %v: the generator does not cover every path", outcomes[o], o, outcomes)
		}
	}
}

// TestBranchAndBoundFindsExactMatches compares branch and bound with an exhaustive search on
// small pools (every input's waste, fee − long-term fee, is more than −effective value, so
// adding a coin to a match never lowers the waste): whenever some subset's effective values land in [need, need + cost of change],
// branch and bound finds one with no more waste.
func TestBranchAndBoundFindsExactMatches(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for n := 0; n < 300; n++ {
		pool := make([]candidate, 1+r.IntN(12))
		for i := range pool {
			fee := btcutil.Amount(50 + r.IntN(3)*10)
			pool[i] = candidate{UTXO: coinsOf(1)[0], fee: fee, longTermFee: 60, effective: btcutil.Amount(11 + r.IntN(40)*250)}
			pool[i].OutPoint.Index = uint32(i)
		}
		sortPool(pool)
		need := btcutil.Amount(1 + r.IntN(3000))
		const coc = 120
		best := btcutil.Amount(-1)
		for mask := 1; mask < 1<<len(pool); mask++ {
			var v, w btcutil.Amount
			for i := range pool {
				if mask&(1<<i) != 0 {
					v += pool[i].effective
					w += pool[i].fee - pool[i].longTermFee
				}
			}
			if v >= need && v <= need+coc && (best < 0 || w+v-need < best) {
				best = w + v - need
			}
		}
		got := branchAndBound(pool, need, coc, false, 1<<20, len(pool))
		if (got == nil) != (best < 0) {
			t.Fatalf("pool %v need %d: branch and bound found %v, exhaustive search waste %d", pool, need, got, best)
		}
		if got == nil {
			continue
		}
		var v, w btcutil.Amount
		for _, u := range got {
			for _, c := range pool {
				if c.OutPoint == u.OutPoint {
					v += c.effective
					w += c.fee - c.longTermFee
				}
			}
		}
		if v < need || v > need+coc || w+v-need != best {
			t.Fatalf("branch and bound: value %d waste %d, want in [%d, %d] with waste %d", v, w+v-need, need, need+coc, best)
		}
	}
}

func TestBranchAndBoundGivesUpAfterMaxTries(t *testing.T) {
	// 40 coins of equal value 2 and one target that is odd: no exact match exists, and with
	// the equal-value shortcut the search is still longer than 10 steps.
	pool := make([]candidate, 40)
	for i := range pool {
		pool[i] = candidate{UTXO: coinsOf(1)[0], fee: 1, longTermFee: 1, effective: 2}
	}
	if got := branchAndBound(pool, 41, 0, false, 10, 40); got != nil {
		t.Fatalf("found %v", got)
	}
	if got := branchAndBound(pool, 40, 0, false, 10, 40); got != nil {
		t.Fatalf("found a 20-coin match within 10 tries: %v", got)
	}
	if got := branchAndBound(pool, 40, 0, false, DefaultMaxTries, 40); len(got) != 20 {
		t.Fatalf("found %d coins, want 20", len(got))
	}
	if got := branchAndBound(pool, 40, 0, false, DefaultMaxTries, 19); got != nil {
		t.Fatalf("found %d coins with at most 19 allowed", len(got))
	}
}

func sortPool(pool []candidate) {
	for i := 1; i < len(pool); i++ {
		for j := i; j > 0 && pool[j].effective > pool[j-1].effective; j-- {
			pool[j], pool[j-1] = pool[j-1], pool[j]
		}
	}
}

// TestSelectStaysStandard: a wallet of 3,000 small coins. A sweep takes the 950 largest that fit
// in 400,000 WU and leaves the rest for the next one; a payment that only all coins together
// could make fails with ErrTooManyInputs; one that 950 coins can make uses at most 950.
func TestSelectStaysStandard(t *testing.T) {
	params := selectParams(t)
	values := make([]btcutil.Amount, 3000)
	var total btcutil.Amount
	for i := range values {
		values[i] = btcutil.Amount(10_000 + i)
		total += values[i]
	}
	coins := coinsOf(values...)
	const maxIn = (MaxStandardTxWeight - (4*(8+1+1+31+43) + 2) - 8) / (164 + 254) // 956
	p := params
	p.Mode = SelectSweep
	s, err := Select(coins, 0, 1, p)
	if err != nil {
		t.Fatal(err)
	}
	checkSelection(t, coins, 0, 1, p, s)
	if len(s.Inputs) != maxIn || len(s.Skipped) != 3000-maxIn || s.Inputs[len(s.Inputs)-1].Value != btcutil.Amount(10_000+3000-maxIn) {
		t.Fatalf("sweep: %d inputs (smallest %s), %d skipped; want the %d largest", len(s.Inputs), s.Inputs[len(s.Inputs)-1].Value, len(s.Skipped), maxIn)
	}
	_, err = Select(coins, total-2_000_000, 1, params)
	if !errors.Is(err, ErrTooManyInputs) {
		t.Fatalf("payment needing all coins: err = %v, want ErrTooManyInputs", err)
	}
	for _, target := range []btcutil.Amount{5_000_000, 9_000_000} {
		p := params
		p.Rand = rand.New(rand.NewPCG(uint64(target), 9))
		s, err := Select(coins, target, 1, p)
		if err != nil {
			t.Fatal(err)
		}
		checkSelection(t, coins, target, 1, p, s)
		if len(s.Inputs) > maxIn {
			t.Fatalf("target %s: %d inputs", target, len(s.Inputs))
		}
	}
}

func TestSelectDoesNotDependOnCoinOrder(t *testing.T) {
	params := selectParams(t)
	coins := coinsOf(70_000, 31_000, 12_000, 19_391, 800_000, 5_000)
	a, err := Select(coins, 50_000, 1, params)
	if err != nil || a.Algorithm != AlgorithmBnB {
		t.Fatalf("%+v %v", a, err)
	}
	rev := make([]UTXO, len(coins))
	for i, c := range coins {
		rev[len(coins)-1-i] = c
	}
	b, err := Select(rev, 50_000, 1, params)
	if err != nil || len(a.Inputs) != len(b.Inputs) || a.Fee != b.Fee {
		t.Fatalf("reversed coins: %+v %v", b, err)
	}
	for i := range a.Inputs {
		if a.Inputs[i].OutPoint != b.Inputs[i].OutPoint {
			t.Fatalf("input %d differs", i)
		}
	}
	if coins[0].Value != 70_000 || rev[0].Value != 5_000 {
		t.Fatal("Select reordered the caller's slice")
	}
}

func FuzzSelect(f *testing.F) {
	params := selectParams(f)
	f.Add([]byte{1, 2, 3, 200, 100, 0, 7}, int64(50_000), uint16(100), false, int64(0))
	f.Add([]byte{255, 255, 255, 255}, int64(1), uint16(0), false, int64(0))
	f.Add([]byte{9, 9, 9, 9, 9, 9, 9, 9}, int64(0), uint16(2500), true, int64(5_000))
	f.Add([]byte{}, int64(10), uint16(1), true, int64(0))
	f.Fuzz(func(t *testing.T, vals []byte, target int64, centiRate uint16, sweep bool, reserve int64) {
		if len(vals) > 200 {
			return
		}
		values := make([]btcutil.Amount, len(vals))
		for i, v := range vals {
			values[i] = btcutil.Amount(int64(v)*int64(v)*int64(v)*10 + 1)
		}
		coins := coinsOf(values...)
		p := params
		p.Rand = rand.New(rand.NewPCG(uint64(target), uint64(centiRate)))
		if sweep {
			p.Mode, p.Reserve = SelectSweep, btcutil.Amount(reserve)
		}
		feerate := FeeRate(float64(centiRate) / 100)
		s, err := Select(coins, btcutil.Amount(target), feerate, p)
		if err != nil {
			if !errors.Is(err, ErrInsufficientFunds) && !errors.Is(err, ErrSelectParams) && !errors.Is(err, ErrDustOutput) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		checkSelection(t, coins, btcutil.Amount(target), feerate, p, s)
	})
}
