package psbt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/base58"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/btcutil/txsort"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
)

// prevTxs is a PrevTxFetcher over transactions held in memory.
type prevTxs map[chainhash.Hash]*wire.MsgTx

func (m prevTxs) PrevTx(_ context.Context, txid chainhash.Hash) (*wire.MsgTx, error) {
	tx, ok := m[txid]
	if !ok {
		return nil, fmt.Errorf("transaction %s not found", txid)
	}
	return tx, nil
}

// fundCoin puts on the chain a real funding transaction paying value to the wallet at
// (branch, index) as its output 1, and returns the coin.
func (f *fixture) fundCoin(t testing.TB, txs prevTxs, branch, index uint32, value btcutil.Amount) UTXO {
	t.Helper()
	s, err := f.desc.PkScript(branch, index)
	if err != nil {
		t.Fatal(err)
	}
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: chainhash.HashH([]byte(fmt.Sprint(branch, index, value, len(txs))))}})
	tx.AddTxOut(wire.NewTxOut(1000, []byte{txscript.OP_TRUE}))
	tx.AddTxOut(wire.NewTxOut(int64(value), s))
	op := wire.OutPoint{Hash: tx.TxHash(), Index: 1}
	txs[op.Hash] = tx
	c := Coin{Value: value, PkScript: s, Branch: branch, Index: index, Height: 480}
	f.chain.coins[op] = c
	return UTXO{OutPoint: op, Coin: c}
}

// finalVSize is the vsize of a finalized transaction (BIP-141).
func finalVSize(tx *wire.MsgTx) int64 {
	return (int64(tx.SerializeSizeStripped())*3 + int64(tx.SerializeSize()) + 3) / 4
}

// verifyScripts runs every input of the extracted transaction final through btcd's script
// engine (standard verify flags) against the fixture chain's previous outputs.
func (f *fixture) verifyScripts(t *testing.T, final *wire.MsgTx) {
	t.Helper()
	prev := txscript.NewMultiPrevOutFetcher(nil)
	for _, in := range final.TxIn {
		c := f.chain.coins[in.PreviousOutPoint]
		prev.AddPrevOut(in.PreviousOutPoint, wire.NewTxOut(int64(c.Value), c.PkScript))
	}
	hashes := txscript.NewTxSigHashes(final, prev)
	for i, in := range final.TxIn {
		c := f.chain.coins[in.PreviousOutPoint]
		vm, err := txscript.NewEngine(c.PkScript, final, i, txscript.StandardVerifyFlags, nil, hashes, int64(c.Value), prev)
		if err != nil {
			t.Fatal(err)
		}
		if err := vm.Execute(); err != nil {
			t.Fatalf("input %d does not verify: %v", i, err)
		}
	}
}

// signFinalizeVerify signs p with keys 0 and 2 of the fixture (2 of 3), finalizes and extracts
// it with btcd's psbt Finalizer and Extractor and runs every input's script.
func (f *fixture) signFinalizeVerify(t *testing.T, p *psbt.Packet, a *Analysis) *wire.MsgTx {
	t.Helper()
	for _, k := range []*testKey{f.keys[0], f.keys[2]} {
		n, err := SignInputs(p, a, f.desc, slotOf(t, f.desc, k), k, f.chain)
		if err != nil || n != len(p.Inputs) {
			t.Fatalf("SignInputs = %d, %v; want %d", n, err, len(p.Inputs))
		}
	}
	if err := psbt.MaybeFinalizeAll(p); err != nil {
		t.Fatalf("finalize with 2 of 3 signatures: %v", err)
	}
	final, err := psbt.Extract(p)
	if err != nil {
		t.Fatal(err)
	}
	f.verifyScripts(t, final)
	return final
}

func TestBuildAnalyzeSignFinalize(t *testing.T) {
	for _, c := range []struct {
		name    string
		values  []btcutil.Amount
		target  btcutil.Amount
		feerate FeeRate
		mode    SelectMode
		reserve btcutil.Amount
		order   Order
		change  bool
	}{
		{name: "payment with change, shuffled", values: []btcutil.Amount{60_000, 50_000, 2_000_000}, target: 70_000, feerate: 3.5, change: true},
		{name: "payment with change, BIP-69", values: []btcutil.Amount{60_000, 50_000, 40_000}, target: 95_000, feerate: 12, order: OrderBIP69, change: true},
		{name: "changeless exact match", values: []btcutil.Amount{80_000, 50_000 + 105 + 43, 30_000}, target: 50_000, feerate: 1},
		{name: "sweep", values: []btcutil.Amount{10_000, 20_000, 30_000, 40_000}, feerate: 2, mode: SelectSweep},
		{name: "sweep above a reserve", values: []btcutil.Amount{10_000, 20_000, 30_000}, feerate: 2, mode: SelectSweep, reserve: 15_000, change: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			txs := prevTxs{}
			var coins []UTXO
			for i, v := range c.values {
				coins = append(coins, f.fundCoin(t, txs, uint32(i%2), uint32(i), v))
			}
			pays := []Payment{{Address: externalAddr, Amount: c.target}}
			params, err := NewSelectParams(f.desc, pays)
			if err != nil {
				t.Fatal(err)
			}
			params.Mode, params.Reserve = c.mode, c.reserve
			r := rand.New(rand.NewPCG(42, 43))
			params.Rand = r
			sel, err := Select(coins, c.target, c.feerate, params)
			if err != nil {
				t.Fatal(err)
			}
			if (sel.Change > 0) != c.change {
				t.Fatalf("selection %+v: change %v, want %v", sel, sel.Change > 0, c.change)
			}
			p, err := Build(context.Background(), f.desc, sel, pays, BuildOptions{ChangeIndex: 3, TipHeight: f.chain.tip, Order: c.order, Rand: r}, txs)
			if err != nil {
				t.Fatal(err)
			}
			// The PSBT survives serialization, as it will travel over NIP-46.
			s, err := Encode(p, Base64)
			if err != nil {
				t.Fatal(err)
			}
			if p, _, err = Decode(s); err != nil {
				t.Fatal(err)
			}
			tx := p.UnsignedTx
			if tx.Version != 2 || tx.LockTime > uint32(f.chain.tip) || tx.LockTime < uint32(f.chain.tip-99) {
				t.Fatalf("version %d locktime %d at tip %d", tx.Version, tx.LockTime, f.chain.tip)
			}
			if c.order == OrderBIP69 && !txsort.IsSorted(tx) {
				t.Fatal("not sorted as BIP-69 says")
			}
			checkGlobalXPubs(t, f, p)
			for i, pin := range p.Inputs {
				if tx.TxIn[i].Sequence != 0xfffffffd || pin.NonWitnessUtxo == nil || pin.WitnessUtxo == nil ||
					pin.WitnessScript == nil || len(pin.Bip32Derivation) != 3 {
					t.Fatalf("input %d lacks updater fields: %+v", i, pin)
				}
			}

			a, err := Analyze(p, f.desc, f.chain)
			if err != nil {
				t.Fatalf("Analyze on the built PSBT: %v", err)
			}
			if a.Fee != sel.Fee || a.VSize != sel.VSize || a.FeeRate < c.feerate || !a.RBF {
				t.Fatalf("analysis fee %s vsize %d rate %v rbf %v; selection fee %s vsize %d", a.Fee, a.VSize, a.FeeRate, a.RBF, sel.Fee, sel.VSize)
			}
			changes := 0
			for _, o := range a.Outputs {
				if o.Kind == "change" {
					changes++
					if o.Value != sel.Change || *o.Branch != ChangeBranch || *o.Number != 3 {
						t.Fatalf("change output %+v", o)
					}
					if len(p.Outputs[o.Index].Bip32Derivation) != 3 || p.Outputs[o.Index].WitnessScript == nil {
						t.Fatal("change output lacks its derivations or witness script")
					}
				} else if o.Kind != "spend" || o.Address != externalAddr.EncodeAddress() || o.Value != sel.Amount {
					t.Fatalf("payment output %+v", o)
				}
			}
			if changes != map[bool]int{false: 0, true: 1}[c.change] || a.Outflow != a.InputTotal-sel.Change {
				t.Fatalf("%d change outputs, outflow %s", changes, a.Outflow)
			}

			final := f.signFinalizeVerify(t, p, a)
			if got := finalVSize(final); got > sel.VSize {
				t.Fatalf("finalized vsize %d is above the estimate %d", got, sel.VSize)
			} else if sel.VSize-got > int64(len(final.TxIn)) {
				t.Fatalf("estimate %d vB is more than one vB per input above the real %d", sel.VSize, got)
			}
			if fee := float64(sel.Fee) / float64(finalVSize(final)); fee < float64(c.feerate) {
				t.Fatalf("real feerate %.3f below %v", fee, c.feerate)
			}
		})
	}
}

// checkGlobalXPubs asserts that p carries PSBT_GLOBAL_XPUB for the three keys: the serialized
// xpub (as hdkeychain parses it back) and the fingerprint and account path of its origin.
func checkGlobalXPubs(t *testing.T, f *fixture, p *psbt.Packet) {
	t.Helper()
	found := 0
	for _, u := range p.Unknowns {
		if u.Key[0] != 0x01 {
			continue
		}
		raw := u.Key[1:]
		xpub := base58.Encode(append(append([]byte(nil), raw...), chainhash.DoubleHashB(raw)[:4]...))
		for _, k := range f.keys {
			if xpub != k.Public.AccountXPub {
				continue
			}
			fp := k.MasterFingerprint()
			value := append([]byte(nil), fp[:]...)
			for _, step := range k.AccountPath() {
				value = binary.LittleEndian.AppendUint32(value, step)
			}
			if !bytes.Equal(u.Value, value) {
				t.Fatalf("global xpub %s: origin %x, want %x", xpub, u.Value, value)
			}
			found++
		}
	}
	if found != 3 {
		t.Fatalf("%d of 3 keys among the global xpubs", found)
	}
}

func TestBuildWithoutPrevTxFetcher(t *testing.T) {
	f := newFixture(t)
	coin := f.fundCoin(t, prevTxs{}, 0, 0, 100_000)
	pays := []Payment{{Address: externalAddr, Amount: 40_000}}
	params, _ := NewSelectParams(f.desc, pays)
	sel, err := Select([]UTXO{coin}, 40_000, 1, params)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(context.Background(), f.desc, sel, pays, BuildOptions{ChangeIndex: 0}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Inputs[0].NonWitnessUtxo != nil || p.UnsignedTx.LockTime != 0 {
		t.Fatalf("non_witness_utxo %v, locktime %d", p.Inputs[0].NonWitnessUtxo != nil, p.UnsignedTx.LockTime)
	}
	a, err := Analyze(p, f.desc, f.chain)
	if err != nil {
		t.Fatal(err)
	}
	f.signFinalizeVerify(t, p, a)
}

func TestBuildRefuses(t *testing.T) {
	otherNet, _ := btcutil.DecodeAddress("bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", &chaincfg.MainNetParams)
	cases := []struct {
		name   string
		mutate func(f *fixture, sel *Selection, pays *[]Payment, txs prevTxs, opts *BuildOptions)
		err    error
	}{
		{"payment to another network", func(f *fixture, sel *Selection, pays *[]Payment, txs prevTxs, opts *BuildOptions) {
			(*pays)[0].Address = otherNet
		}, ErrPayment},
		{"payment with address and script", func(f *fixture, sel *Selection, pays *[]Payment, txs prevTxs, opts *BuildOptions) {
			(*pays)[0].PkScript = []byte{txscript.OP_TRUE}
		}, ErrPayment},
		{"dust payment", func(f *fixture, sel *Selection, pays *[]Payment, txs prevTxs, opts *BuildOptions) {
			(*pays)[0].Amount = 293
			*pays = append(*pays, Payment{Address: externalAddr, Amount: 40_000 - 293})
		}, ErrDustOutput},
		{"payments differ from the selection", func(f *fixture, sel *Selection, pays *[]Payment, txs prevTxs, opts *BuildOptions) {
			(*pays)[0].Amount++
		}, ErrSelectionMismatch},
		{"selection made for another output script", func(f *fixture, sel *Selection, pays *[]Payment, txs prevTxs, opts *BuildOptions) {
			s, _ := f.desc.PkScript(0, 9)
			(*pays)[0] = Payment{PkScript: s, Amount: 40_000}
		}, ErrSelectionMismatch},
		{"fee does not add up", func(f *fixture, sel *Selection, pays *[]Payment, txs prevTxs, opts *BuildOptions) {
			sel.Fee--
		}, ErrSelectionMismatch},
		{"coin at another index than its script", func(f *fixture, sel *Selection, pays *[]Payment, txs prevTxs, opts *BuildOptions) {
			sel.Inputs[0].Index++
		}, ErrForeignCoin},
		{"previous transaction of another coin", func(f *fixture, sel *Selection, pays *[]Payment, txs prevTxs, opts *BuildOptions) {
			for h, tx := range txs {
				tx = tx.Copy()
				tx.TxOut[1].Value++
				txs[h] = tx
			}
		}, ErrPrevTx},
		{"locktime past the height range", func(f *fixture, sel *Selection, pays *[]Payment, txs prevTxs, opts *BuildOptions) {
			opts.TipHeight = txscript.LockTimeThreshold
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			txs := prevTxs{}
			coin := f.fundCoin(t, txs, 0, 4, 100_000)
			pays := []Payment{{Address: externalAddr, Amount: 40_000}}
			params, _ := NewSelectParams(f.desc, pays)
			sel, err := Select([]UTXO{coin}, 40_000, 1, params)
			if err != nil {
				t.Fatal(err)
			}
			opts := BuildOptions{ChangeIndex: 1, TipHeight: 500}
			c.mutate(f, &sel, &pays, txs, &opts)
			p, err := Build(context.Background(), f.desc, sel, pays, opts, txs)
			if err == nil || p != nil || (c.err != nil && !errors.Is(err, c.err)) {
				t.Fatalf("Build = %v, %v; want %v", p != nil, err, c.err)
			}
		})
	}
}

func TestAntiFeeSnipingLockTime(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	atTip, earlier := 0, 0
	for i := 0; i < 2000; i++ {
		lt := antiFeeSnipingLockTime(1000, r)
		switch {
		case lt == 1000:
			atTip++
		case lt >= 901 && lt < 1000:
			earlier++
		default:
			t.Fatalf("locktime %d at tip 1000", lt)
		}
	}
	// About one in ten is moved back (1/10 × 99/100 of 2000 ≈ 198).
	if earlier < 100 || earlier > 300 {
		t.Fatalf("%d of 2000 locktimes below the tip, want about 200", earlier)
	}
	if lt := antiFeeSnipingLockTime(5, r); lt > 5 {
		t.Fatalf("locktime %d above tip 5", lt)
	}
	if antiFeeSnipingLockTime(0, r) != 0 {
		t.Fatal("no tip must give locktime 0")
	}
}

func TestBuildShuffleIsRandomAndBIP69IsNot(t *testing.T) {
	f := newFixture(t)
	txs := prevTxs{}
	var coins []UTXO
	for i := uint32(0); i < 6; i++ {
		coins = append(coins, f.fundCoin(t, txs, 0, i, 10_000))
	}
	pays := []Payment{{Address: externalAddr, Amount: 55_000}}
	params, _ := NewSelectParams(f.desc, pays)
	sel, err := Select(coins, 55_000, 1, params)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[Order]map[chainhash.Hash]bool{OrderShuffle: {}, OrderBIP69: {}}
	for seed := uint64(0); seed < 8; seed++ {
		for _, o := range []Order{OrderShuffle, OrderBIP69} {
			r := rand.New(rand.NewPCG(seed, seed))
			p, err := Build(context.Background(), f.desc, sel, pays, BuildOptions{Order: o, Rand: r}, txs)
			if err != nil {
				t.Fatal(err)
			}
			ids[o][p.UnsignedTx.TxHash()] = true
		}
	}
	if len(ids[OrderBIP69]) != 1 || len(ids[OrderShuffle]) < 4 {
		t.Fatalf("%d BIP-69 transactions (want 1), %d shuffled ones (want several)", len(ids[OrderBIP69]), len(ids[OrderShuffle]))
	}
}

// TestBuildProperties builds PSBTs for random wallets, payments, feerates, modes and orders:
// whenever Select finds inputs, Build succeeds and Analyze accepts the PSBT with the selection's
// fee and vsize, at least the feerate, and the change (if any) classified as change.
func TestBuildProperties(t *testing.T) {
	f := newFixture(t)
	r := rand.New(rand.NewPCG(21, 22))
	other, _ := f.desc.PkScript(0, 19) // a P2WSH payment script (to the wallet itself)
	built := 0
	for n := 0; n < 80; n++ {
		f.chain.coins = map[wire.OutPoint]Coin{}
		txs := prevTxs{}
		var coins []UTXO
		for i := 0; i < 1+r.IntN(12); i++ {
			v := btcutil.Amount(500 + r.Int64N([]int64{20_000, 1_000_000, 50_000_000}[r.IntN(3)]))
			coins = append(coins, f.fundCoin(t, txs, uint32(r.IntN(2)), uint32(r.IntN(20)), v))
		}
		target := btcutil.Amount(1_000 + r.Int64N(3_000_000))
		var pays []Payment
		left := target
		for k := 1 + r.IntN(3); k > 1 && left > 2_000; k-- {
			part := 1_000 + r.Int64N(int64(left)-1_000)
			if left-btcutil.Amount(part) < 1_000 {
				break
			}
			pays = append(pays, Payment{PkScript: other, Amount: btcutil.Amount(part)})
			left -= btcutil.Amount(part)
		}
		pays = append(pays, Payment{Address: externalAddr, Amount: left})
		params, err := NewSelectParams(f.desc, pays)
		if err != nil {
			t.Fatal(err)
		}
		params.Rand = r
		if r.IntN(4) == 0 {
			pays = pays[len(pays)-1:]
			params.PaymentSizes, params.Mode = params.PaymentSizes[len(params.PaymentSizes)-1:], SelectSweep
			if r.IntN(2) == 0 {
				params.Reserve = 330 + btcutil.Amount(r.Int64N(50_000))
			}
		}
		feerate := FeeRate(1 + r.IntN(100))
		sel, err := Select(coins, target, feerate, params)
		if err != nil {
			if !errors.Is(err, ErrInsufficientFunds) {
				t.Fatalf("Select: %v", err)
			}
			continue
		}
		changeIdx := uint32(r.IntN(20))
		p, err := Build(context.Background(), f.desc, sel, pays, BuildOptions{ChangeIndex: changeIdx, TipHeight: f.chain.tip, Order: Order(r.IntN(2)), Rand: r}, txs)
		if err != nil {
			t.Fatalf("Build(%+v): %v", sel, err)
		}
		a, err := Analyze(p, f.desc, f.chain)
		if err != nil {
			t.Fatalf("Analyze: %v", err)
		}
		if a.Fee != sel.Fee || a.VSize != sel.VSize || a.FeeRate < feerate || a.Outflow != sel.InputTotal-sel.Change {
			t.Fatalf("analysis fee %s vsize %d rate %v outflow %s; selection %+v", a.Fee, a.VSize, a.FeeRate, a.Outflow, sel)
		}
		changes := 0
		for _, o := range a.Outputs {
			if o.Kind == "change" && *o.Number == changeIdx {
				changes++
			}
		}
		// A payment to the wallet's own receive script is spend, never change.
		if want := map[bool]int{false: 0, true: 1}[sel.Change > 0]; changes != want {
			t.Fatalf("%d change outputs, want %d", changes, want)
		}
		built++
	}
	t.Logf("%d of 80 random wallets built and analysed", built)
	if built < 40 {
		t.Fatalf("only %d of 80 random wallets built: the generator misses the success path", built)
	}
}
