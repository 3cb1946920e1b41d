package psbt

// Coin selection for the builder (BIP-174 Creator role): which of the wallet's unspent outputs a
// new transaction spends, what it pays in fee, and whether it gets a change output.
//
// The algorithms follow Bitcoin Core's wallet (src/wallet/coinselection.cpp):
//   - branch and bound (Murch, "An Evaluation of Coin Selection Strategies", 2016): a depth-first
//     search, largest effective value first, for a set of inputs whose effective values add up to
//     the target within the cost of change, so that no change output is needed; ties are broken by
//     the least waste; the search stops after MaxTries steps;
//   - when branch and bound finds nothing: single random draw (Bitcoin Core's SelectCoinsSRD):
//     inputs drawn in random order until they pay the target, the fee of a change output and a
//     change worth keeping; if all coins together cannot do that but can pay the target, all of
//     them are spent and the remainder goes to change or, below the change floor, to the fee.
//
// No selection is heavier than a standard transaction (MaxStandardTxWeight): branch and bound
// prunes on the input count, the random draw puts back its smallest coin when one too many is
// drawn, and a sweep leaves the smallest coins for a later one.
//
// Everything is computed in integer satoshis and weight units. A fee is always rounded up, and
// the fee of a whole transaction is never more than the sum of the fees of its parts, so the
// chosen inputs always pay at least the feerate asked for on the final (largest) satisfaction.

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
)

// MaxStandardTxWeight is the heaviest transaction Bitcoin Core and btcd relay
// (MAX_STANDARD_TX_WEIGHT, policy/policy.h): 400,000 weight units.
const MaxStandardTxWeight = 400_000

// MaxFeeRate bounds the feerates Select accepts (sat/vB). Policy fee caps are lower; this only
// keeps the integer arithmetic far from overflow.
const MaxFeeRate FeeRate = 1_000_000

// DefaultMaxTries is the branch-and-bound step budget, as in Bitcoin Core (TOTAL_TRIES).
const DefaultMaxTries = 100_000

// UTXO is a candidate coin: an unspent output of the wallet and where it is.
type UTXO struct {
	OutPoint wire.OutPoint
	Coin
}

// SelectMode is what Select is asked to do.
type SelectMode int

const (
	// SelectTarget pays exactly the target to the payments, change back to the wallet.
	SelectTarget SelectMode = iota
	// SelectSweep spends every coin worth spending (effective value > 0 at the feerate); the one
	// payment gets the input total minus the fee and minus SelectParams.Reserve, which comes
	// back to the wallet as change ("sweep above a reserve"); target is ignored.
	SelectSweep
)

// Algorithm names, as reported in Selection.Algorithm.
const (
	AlgorithmBnB   = "bnb"
	AlgorithmSRD   = "srd"
	AlgorithmAll   = "all"
	AlgorithmSweep = "sweep"
)

// SelectParams describe the transaction around the inputs. NewSelectParams fills them from the
// wallet's descriptor and the payments; zero MaxTries, LongTermFeeRate or Rand take defaults.
type SelectParams struct {
	Mode SelectMode
	// Reserve is what a sweep leaves in the wallet, as a change output (0: sweep everything).
	Reserve btcutil.Amount
	// InputWeight is the weight (WU) of one input with its largest satisfaction: 4 × (outpoint,
	// scriptSig, nSequence) + the witness with its item count (BIP-141).
	InputWeight int64
	// PaymentSizes are the serialized sizes (bytes: 8-byte value, script length, script) of the
	// payment outputs, in any order.
	PaymentSizes []int
	// ChangeSize is the serialized size of a change output; ChangeDust its dust limit.
	ChangeSize int
	ChangeDust btcutil.Amount
	// PaymentDust is the largest dust limit among the payment outputs: a sweep that would pay
	// less fails with *InsufficientFundsError.
	PaymentDust btcutil.Amount
	// LongTermFeeRate is the feerate at which a change output is assumed to be spent later
	// (Bitcoin Core's long-term/discard feerate); it prices the cost of change and the waste
	// metric. 0: the selection feerate.
	LongTermFeeRate FeeRate
	// MaxTries bounds branch and bound (0: DefaultMaxTries).
	MaxTries int
	// MaxWeight bounds the transaction's weight (0: MaxStandardTxWeight), which bounds the
	// number of inputs: at most 950 P2WSH 2-of-3 inputs in a standard transaction.
	MaxWeight int64
	// Rand drives single random draw; nil uses math/rand/v2's randomly seeded source.
	Rand *rand.Rand
}

// Selection is the outcome of Select: the inputs and the exact amounts of the transaction.
// InputTotal = Amount + Change + Fee.
type Selection struct {
	Inputs     []UTXO
	InputTotal btcutil.Amount
	// Amount is what the payments get: the target, or for a sweep the swept amount.
	Amount btcutil.Amount
	// Change is the change output's value; 0 means no change output.
	Change btcutil.Amount
	// Fee is InputTotal − Amount − Change, at least FeeRate × VSize.
	Fee btcutil.Amount
	// Excess is the part of Fee above FeeRate × VSize: a changeless excess (branch and bound,
	// bounded by the cost of change) or a change too small to keep, folded into the fee.
	Excess btcutil.Amount
	// VSize is the virtual size (vB) of the finished transaction with the largest satisfaction
	// of every input, computed as Analyze does: ⌈(4 × stripped size + 2 + witness bytes) / 4⌉.
	VSize   int64
	FeeRate FeeRate
	// Algorithm is AlgorithmBnB, AlgorithmSRD, AlgorithmAll or AlgorithmSweep.
	Algorithm string
	// Skipped are the coins a sweep left: those that cost more to spend than they are worth,
	// and, beyond what fits in MaxWeight, the smallest ones (for the next sweep).
	Skipped []UTXO
}

// NewSelectParams computes InputWeight, ChangeSize and ChangeDust from desc (the change output
// is desc's script on branch 1) and PaymentSizes from the payments' scripts.
func NewSelectParams(desc *descriptor.Descriptor, payments []Payment) (SelectParams, error) {
	var p SelectParams
	w, err := InputWeight(desc)
	if err != nil {
		return p, err
	}
	p.InputWeight = w
	change, err := desc.PkScript(ChangeBranch, 0)
	if err != nil {
		return p, fmt.Errorf("%w: the descriptor has no change branch (write its keys with /<0;1>/*): %w", ErrSelectParams, err)
	}
	co := wire.NewTxOut(0, change)
	p.ChangeSize = co.SerializeSize()
	p.ChangeDust = DustThreshold(co)
	for i, pay := range payments {
		s, err := pay.script(desc)
		if err != nil {
			return p, fmt.Errorf("psbt: payment %d: %w", i, err)
		}
		o := wire.NewTxOut(0, s)
		p.PaymentSizes = append(p.PaymentSizes, o.SerializeSize())
		p.PaymentDust = max(p.PaymentDust, DustThreshold(o))
	}
	return p, nil
}

// InputWeight returns the weight (WU) of one input spending an output of desc with its
// largest satisfaction: 4 × (36-byte outpoint + scriptSig with its length + 4-byte nSequence)
// + desc.MaxWitnessSize() (witness with item count). The scriptSig is empty for native segwit
// and the push of the redeem script for P2SH-wrapped segwit.
func InputWeight(desc *descriptor.Descriptor) (int64, error) {
	d, err := desc.Derive(0, 0)
	if err != nil {
		return 0, err
	}
	scriptSig := 0
	if len(d.RedeemScript) > 0 {
		scriptSig = pushSize(len(d.RedeemScript))
	}
	return 4*int64(36+wire.VarIntSerializeSize(uint64(scriptSig))+scriptSig+4) + int64(desc.MaxWitnessSize()), nil
}

// DustThreshold is the smallest value out may carry to be relayed, as Bitcoin Core's
// GetDustThreshold (policy/policy.cpp) computes it at the default dust relay feerate of
// 3 sat/vB: 3 × (the output's serialized size + the size of the input that would spend it,
// 67 bytes for a witness program and 148 otherwise). OP_RETURN outputs have none (0).
func DustThreshold(out *wire.TxOut) btcutil.Amount {
	if txscript.IsUnspendable(out.PkScript) {
		return 0
	}
	size := out.SerializeSize()
	if txscript.IsWitnessProgram(out.PkScript) {
		size += 32 + 4 + 1 + 107/4 + 4
	} else {
		size += 32 + 4 + 1 + 107 + 4
	}
	return btcutil.Amount(3 * size)
}

// pushSize is the size of a minimal push of n bytes.
func pushSize(n int) int {
	switch {
	case n < 76:
		return 1 + n
	case n <= 0xff:
		return 2 + n
	case n <= 0xffff:
		return 3 + n
	}
	return 5 + n
}

// satPerKvB turns a feerate into whole sat/kvB, rounding up: a fee computed from it is never
// below the feerate.
func satPerKvB(f FeeRate) (int64, error) {
	if math.IsNaN(float64(f)) || f < 0 || f > MaxFeeRate {
		return 0, fmt.Errorf("%w: %v sat/vB", ErrFeeRate, float64(f))
	}
	return int64(math.Ceil(float64(f)*1000 - 1e-6)), nil
}

// feeForWeight is the fee for weight WU at kvb sat/kvB: ⌈kvb × ⌈weight/4⌉ / 1000⌉.
func feeForWeight(kvb, weight int64) btcutil.Amount {
	return btcutil.Amount((kvb*((weight+3)/4) + 999) / 1000)
}

// txWeight is the weight of a segwit transaction with nIn inputs of inputWeight and outputs of
// the given serialized sizes: 4 × (version, counts, outputs, locktime) + 2 (marker and flag)
// + the inputs.
func txWeight(nIn int, inputWeight int64, outSizes []int, extraOut int) int64 {
	nOut := len(outSizes)
	sum := 0
	for _, s := range outSizes {
		sum += s
	}
	if extraOut > 0 {
		nOut++
		sum += extraOut
	}
	stripped := 8 + wire.VarIntSerializeSize(uint64(nIn)) + wire.VarIntSerializeSize(uint64(nOut)) + sum
	return 4*int64(stripped) + 2 + int64(nIn)*inputWeight
}

// candidate is a coin with its effective value: its value less the fee of spending it.
type candidate struct {
	UTXO
	fee, longTermFee btcutil.Amount
	effective        btcutil.Amount
}

// Select chooses inputs from coins to pay target (sat) at feerate (sat/vB) to outputs described
// by params, and computes the change and the fee exactly.
//
// In SelectTarget mode it tries branch and bound first (changeless, excess ≤ cost of change,
// least waste), then single random draw; see the file comment. A change output is made only
// when it is worth at least max(ChangeDust, fee of spending it at LongTermFeeRate + 1 sat), as
// Bitcoin Core's min_viable_change; a smaller remainder goes to the fee (Selection.Excess).
// In SelectSweep mode every coin worth spending is used (the largest that fit in MaxWeight).
//
// Coins are never modified. Errors: *InsufficientFundsError (wrapping ErrInsufficientFunds;
// for a sweep also when the swept amount would be below PaymentDust), ErrTooManyInputs,
// ErrFeeRate, ErrSelectParams, ErrDustOutput (a sweep's reserve below ChangeDust). Each
// payment's own dust limit is checked by Build.
func Select(coins []UTXO, target btcutil.Amount, feerate FeeRate, params SelectParams) (Selection, error) {
	sc, err := newSelector(coins, feerate, params)
	if err != nil {
		return Selection{}, err
	}
	if params.Mode == SelectSweep {
		return sc.sweep()
	}
	if params.Mode != SelectTarget {
		return Selection{}, fmt.Errorf("%w: unknown mode %d", ErrSelectParams, params.Mode)
	}
	return sc.toTarget(target, feerate)
}

// selector is one Select call's state: the parameters with their defaults, the feerates in
// sat/kvB, and the pool of coins worth spending, largest effective value first.
type selector struct {
	params     SelectParams
	kvb, ltKvB int64
	lt         FeeRate // LongTermFeeRate, or the selection feerate
	inFeeLT    btcutil.Amount
	pool       []candidate
	skipped    []UTXO // coins that cost more to spend than they are worth (and, for a sweep, those beyond maxIn)
	maxWeight  int64
	maxIn      int // how many inputs fit in maxWeight with the payments and a change output
}

// newSelector checks the feerates and params, prices every coin, and sorts the pool. Errors:
// ErrFeeRate, ErrSelectParams.
func newSelector(coins []UTXO, feerate FeeRate, params SelectParams) (*selector, error) {
	kvb, err := satPerKvB(feerate)
	if err != nil {
		return nil, err
	}
	lt := params.LongTermFeeRate
	if lt == 0 {
		lt = feerate
	}
	ltKvB, err := satPerKvB(lt)
	if err != nil {
		return nil, err
	}
	if params.InputWeight <= 0 || params.ChangeSize <= 0 || params.ChangeDust < 0 || len(params.PaymentSizes) == 0 {
		return nil, fmt.Errorf("%w: need InputWeight, ChangeSize and at least one payment size", ErrSelectParams)
	}
	if params.MaxTries <= 0 {
		params.MaxTries = DefaultMaxTries
	}
	sc := &selector{params: params, kvb: kvb, ltKvB: ltKvB, lt: lt, inFeeLT: feeForWeight(ltKvB, params.InputWeight)}
	if err := sc.fillPool(coins); err != nil {
		return nil, err
	}
	sc.maxWeight = params.MaxWeight
	if sc.maxWeight <= 0 {
		sc.maxWeight = MaxStandardTxWeight
	}
	// The heaviest shape of the transaction without inputs: payments, change, and an input
	// count of 3 bytes (up to 65,535 inputs).
	sc.maxIn = int((sc.maxWeight - txWeight(0, 0, params.PaymentSizes, params.ChangeSize) - 4*2) / params.InputWeight)
	if sc.maxIn < 1 {
		return nil, fmt.Errorf("%w: not one input fits in %d weight units with these outputs", ErrSelectParams, sc.maxWeight)
	}
	return sc, nil
}

// fillPool prices coins at the selection feerate: those worth spending go to the pool, sorted
// by effective value (largest first, then by outpoint so that the result does not depend on
// the order of coins), the others to skipped. Errors: ErrSelectParams (a coin given twice, an
// impossible value).
func (sc *selector) fillPool(coins []UTXO) error {
	inFee := feeForWeight(sc.kvb, sc.params.InputWeight)
	seen := make(map[wire.OutPoint]bool, len(coins))
	for _, c := range coins {
		if seen[c.OutPoint] {
			return fmt.Errorf("%w: coin %s given twice", ErrSelectParams, c.OutPoint)
		}
		seen[c.OutPoint] = true
		if c.Value <= 0 || c.Value > btcutil.MaxSatoshi {
			return fmt.Errorf("%w: coin %s has an impossible value %d", ErrSelectParams, c.OutPoint, int64(c.Value))
		}
		if c.Value <= inFee {
			sc.skipped = append(sc.skipped, c)
			continue
		}
		sc.pool = append(sc.pool, candidate{UTXO: c, fee: inFee, longTermFee: sc.inFeeLT, effective: c.Value - inFee})
	}
	slices.SortFunc(sc.pool, func(a, b candidate) int {
		if a.effective != b.effective {
			if a.effective > b.effective {
				return -1
			}
			return 1
		}
		if c := slices.Compare(a.OutPoint.Hash[:], b.OutPoint.Hash[:]); c != 0 {
			return c
		}
		return int(a.OutPoint.Index) - int(b.OutPoint.Index)
	})
	return nil
}

// sweep spends every coin of the pool (the maxIn largest) to the one payment, less the fee and
// the reserve, which comes back as change. Errors: ErrDustOutput (reserve below ChangeDust),
// ErrSelectParams, *InsufficientFundsError.
func (sc *selector) sweep() (Selection, error) {
	params, pool := sc.params, sc.pool
	if len(pool) > sc.maxIn {
		sc.skipped = append(sc.skipped, utxos(pool[sc.maxIn:])...)
		pool = pool[:sc.maxIn]
	}
	if params.Reserve < 0 || (params.Reserve > 0 && params.Reserve < params.ChangeDust) {
		return Selection{}, fmt.Errorf("%w: reserve %s is below the change output's dust limit %s", ErrDustOutput, params.Reserve, params.ChangeDust)
	}
	if len(params.PaymentSizes) != 1 {
		return Selection{}, fmt.Errorf("%w: a sweep pays exactly one output, got %d", ErrSelectParams, len(params.PaymentSizes))
	}
	changeSize := 0
	if params.Reserve > 0 {
		changeSize = params.ChangeSize
	}
	ins := utxos(pool)
	s := finish(ins, sc.kvb, params, changeSize)
	floor := max(params.PaymentDust, 1)
	rest := s.InputTotal - s.Fee - params.Reserve
	if len(ins) == 0 || rest < floor {
		needed := s.Fee + params.Reserve + floor
		return Selection{}, &InsufficientFundsError{Available: s.InputTotal, Needed: needed, Missing: needed - s.InputTotal}
	}
	s.Amount, s.Change, s.Algorithm, s.Skipped = rest, params.Reserve, AlgorithmSweep, sc.skipped
	return s, nil
}

// toTarget pays target: branch and bound for a changeless match, else single random draw.
// Errors: ErrSelectParams (target out of range), *InsufficientFundsError, ErrTooManyInputs.
func (sc *selector) toTarget(target btcutil.Amount, feerate FeeRate) (Selection, error) {
	params, pool, kvb, maxIn := sc.params, sc.pool, sc.kvb, sc.maxIn
	if target <= 0 || target > btcutil.MaxSatoshi {
		return Selection{}, fmt.Errorf("%w: target %d sat", ErrSelectParams, int64(target))
	}
	// Decided on the exact fee of spending every coin worth spending, without change.
	if all := finish(utxos(pool), kvb, params, 0); all.InputTotal-all.Fee < target {
		needed := target + all.Fee
		return Selection{}, &InsufficientFundsError{Available: all.InputTotal, Needed: needed, Missing: needed - all.InputTotal}
	}
	if len(pool) > maxIn {
		if top := finish(utxos(pool[:maxIn]), kvb, params, 0); top.InputTotal-top.Fee < target {
			return Selection{}, fmt.Errorf("%w: the %d largest coins (at most %d inputs fit in %d weight units) pay %s of %s",
				ErrTooManyInputs, maxIn, maxIn, sc.maxWeight, top.InputTotal-top.Fee, target)
		}
	}
	// The input count's varint is taken at the pool's size: an upper bound for any subset.
	need := target + feeForWeight(kvb, txWeight(len(pool), 0, params.PaymentSizes, 0))
	changeFee := feeForWeight(kvb, 4*int64(params.ChangeSize))
	costOfChange := changeFee + sc.inFeeLT
	minChange := max(params.ChangeDust, sc.inFeeLT+1)

	if sel := branchAndBound(pool, need, costOfChange, feerate > sc.lt, params.MaxTries, maxIn); sel != nil {
		s := finish(sel, kvb, params, 0)
		s.Amount, s.Algorithm = target, AlgorithmBnB
		s.Excess = s.InputTotal - target - s.Fee
		s.Fee += s.Excess
		return s, nil
	}
	ins, algo := sc.randomDraw(need + changeFee + minChange)
	return withChange(ins, target, kvb, params, minChange, algo), nil
}

// randomDraw is single random draw: coins are drawn until their effective values reach
// enough (the target with its fee, a change output and a change worth keeping); beyond maxIn
// inputs the smallest drawn one is put back (Bitcoin Core's SRD does the same with its weight
// limit). If the draw never gets there, what is left drawn is the maxIn largest coins, which
// pay at least the target (toTarget checked), and the algorithm is AlgorithmAll.
func (sc *selector) randomDraw(enough btcutil.Amount) ([]UTXO, string) {
	pool := sc.pool
	order := make([]int, len(pool))
	for i := range order {
		order[i] = i
	}
	shuffle := rand.Shuffle
	if sc.params.Rand != nil {
		shuffle = sc.params.Rand.Shuffle
	}
	shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var sum btcutil.Amount
	drawn := &byEffective{pool: pool}
	algo := AlgorithmAll
	for _, i := range order {
		heap.Push(drawn, i)
		sum += pool[i].effective
		if drawn.Len() > sc.maxIn {
			sum -= pool[heap.Pop(drawn).(int)].effective
		}
		if sum >= enough {
			algo = AlgorithmSRD
			break
		}
	}
	slices.Sort(drawn.idx) // pool order: largest first
	ins := make([]UTXO, len(drawn.idx))
	for k, i := range drawn.idx {
		ins[k] = pool[i].UTXO
	}
	return ins, algo
}

// withChange finishes a selection that pays target, with a change output when the remainder
// is worth at least minChange and without one (remainder in the fee) otherwise.
func withChange(ins []UTXO, target btcutil.Amount, kvb int64, params SelectParams, minChange btcutil.Amount, algo string) Selection {
	s := finish(ins, kvb, params, params.ChangeSize)
	if change := s.InputTotal - target - s.Fee; change >= minChange {
		s.Amount, s.Change, s.Algorithm = target, change, algo
		return s
	}
	s = finish(ins, kvb, params, 0)
	s.Amount, s.Algorithm = target, algo
	s.Excess = s.InputTotal - target - s.Fee
	s.Fee += s.Excess
	return s
}

// finish computes the input total, the vsize and the feerate's fee of spending ins to the
// payments (and a change output of changeSize bytes, if not 0).
func finish(ins []UTXO, kvb int64, params SelectParams, changeSize int) Selection {
	s := Selection{Inputs: ins, FeeRate: FeeRate(float64(kvb) / 1000)}
	for _, c := range ins {
		s.InputTotal += c.Value
	}
	w := txWeight(len(ins), params.InputWeight, params.PaymentSizes, changeSize)
	s.VSize = (w + 3) / 4
	s.Fee = feeForWeight(kvb, w)
	return s
}

// byEffective is a min-heap of pool indices by effective value (container/heap).
type byEffective struct {
	pool []candidate
	idx  []int
}

func (h *byEffective) Len() int { return len(h.idx) }
func (h *byEffective) Less(i, j int) bool {
	return h.pool[h.idx[i]].effective < h.pool[h.idx[j]].effective
}
func (h *byEffective) Swap(i, j int) { h.idx[i], h.idx[j] = h.idx[j], h.idx[i] }
func (h *byEffective) Push(x any)    { h.idx = append(h.idx, x.(int)) }
func (h *byEffective) Pop() any {
	x := h.idx[len(h.idx)-1]
	h.idx = h.idx[:len(h.idx)-1]
	return x
}

func utxos(pool []candidate) []UTXO {
	out := make([]UTXO, len(pool))
	for i, c := range pool {
		out[i] = c.UTXO
	}
	return out
}

// branchAndBound searches pool (sorted by effective value, largest first) for a subset whose
// effective values sum to [target, target+costOfChange], least waste first (waste: Σ (fee −
// long-term fee) + excess). It explores inclusion before omission, skips an omission branch
// equivalent to one already explored (same effective value and fee as the omitted previous
// coin), and prunes on waste when the feerate is above the long-term feerate and on more than
// maxInputs inputs (the weight limit). It returns nil
// when nothing is found within maxTries steps.
func branchAndBound(pool []candidate, target, costOfChange btcutil.Amount, feerateHigh bool, maxTries, maxInputs int) []UTXO {
	var available btcutil.Amount
	for _, c := range pool {
		available += c.effective
	}
	var (
		value, waste btcutil.Amount
		sel          []int // indices of the included coins, increasing
		best         []int
		bestWaste    btcutil.Amount = btcutil.MaxSatoshi * 2
		idx          int
	)
	for try := 0; try < maxTries; try, idx = try+1, idx+1 {
		backtrack := false
		switch {
		case value+available < target || value > target+costOfChange || len(sel) > maxInputs || (feerateHigh && waste > bestWaste):
			backtrack = true
		case value >= target:
			if w := waste + value - target; w <= bestWaste {
				best, bestWaste = slices.Clone(sel), w
			}
			backtrack = true
		}
		if backtrack {
			if len(sel) == 0 {
				break // every branch explored
			}
			last := sel[len(sel)-1]
			// The coins after the last included one go back into what is available, then the
			// last included one is omitted instead.
			for idx--; idx > last; idx-- {
				available += pool[idx].effective
			}
			value -= pool[last].effective
			waste -= pool[last].fee - pool[last].longTermFee
			sel = sel[:len(sel)-1]
			continue
		}
		c := pool[idx]
		available -= c.effective
		if len(sel) == 0 || sel[len(sel)-1] == idx-1 ||
			c.effective != pool[idx-1].effective || c.fee != pool[idx-1].fee {
			sel = append(sel, idx)
			value += c.effective
			waste += c.fee - c.longTermFee
		}
	}
	if best == nil {
		return nil
	}
	sort.Ints(best)
	out := make([]UTXO, len(best))
	for i, j := range best {
		out[i] = pool[j].UTXO
	}
	return out
}
