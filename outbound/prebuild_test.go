package outbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/internal/wallettest"
	"github.com/custodyagents/cosigner/policy"
)

// seen puts an unconfirmed receive-branch coin in the wallet (in the mempool), hands its
// FundingSeen to the engine and does what the runner has due (the pre-build). It returns the
// FundingConfirmed to deliver when the coin confirms (confirm).
func (e *engineEnv) seen(t *testing.T, index uint32, value btcutil.Amount) chainwatch.FundingConfirmed {
	t.Helper()
	ev := e.deposit(t, index, value)
	e.chain.mu.Lock()
	c := e.f.Chain.Coins[ev.UTXO.OutPoint]
	c.Height = 0
	e.f.Chain.Coins[ev.UTXO.OutPoint] = c
	e.chain.mu.Unlock()
	s := chainwatch.FundingSeen{UTXO: ev.UTXO}
	s.UTXO.Height = 0
	if err := e.eng.HandleEvent(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	e.eng.work(context.Background())
	return ev
}

// confirm mines a block with the coin of ev in it and hands ev (its FundingConfirmed) to the
// engine; it returns the id of the sweep proposal it fires.
func (e *engineEnv) confirm(t *testing.T, ev chainwatch.FundingConfirmed) string {
	t.Helper()
	e.chain.mine()
	e.chain.mu.Lock()
	if c, ok := e.f.Chain.Coins[ev.UTXO.OutPoint]; ok {
		c.Height = e.chain.Height
		e.f.Chain.Coins[ev.UTXO.OutPoint] = c
	}
	e.chain.mu.Unlock()
	ev.UTXO.Height, ev.Confs = e.chain.Height, 1
	if err := e.eng.HandleEvent(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	return ProposalID("sweep", FundingKey(policy.TriggerFundingConfirmed, ev.UTXO.OutPoint))
}

// builtDetail is the detail of proposal id's "built" timeline entry.
func (e *engineEnv) builtDetail(t *testing.T, id string) string {
	t.Helper()
	tl, err := e.db.ProposalTimeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range tl {
		if x.Event == "built" {
			return x.Detail
		}
	}
	t.Fatalf("proposal %s has no built entry", id)
	return ""
}

func inputsOf(pk *btcpsbt.Packet) []wire.OutPoint {
	var out []wire.OutPoint
	for _, in := range pk.UnsignedTx.TxIn {
		out = append(out, in.PreviousOutPoint)
	}
	slices.SortFunc(out, func(a, b wire.OutPoint) int { return strings.Compare(a.String(), b.String()) })
	return out
}

// A funding_confirmed proposal's PSBT is built when its deposit is seen, and used when the
// deposit confirms only if nothing the build relied on changed in between — else it is
// discarded and built again from what holds at confirmation.
func TestEnginePrebuildsWhileTheDepositIsUnconfirmed(t *testing.T) {
	other, _ := txscript.PayToAddrScript(wallettest.ExternalAddr)
	other = slices.Clone(other)
	other[len(other)-1] ^= 1 // another witness program of the same kind
	cases := []struct {
		name   string
		change func(t *testing.T, e *engineEnv)
		reused bool
		check  func(t *testing.T, e *engineEnv, ev chainwatch.FundingConfirmed, pre, built *btcpsbt.Packet, rate float64)
	}{
		{name: "nothing changed: the pre-built PSBT is used", reused: true,
			check: func(t *testing.T, e *engineEnv, _ chainwatch.FundingConfirmed, pre, built *btcpsbt.Packet, _ float64) {
				// The same transaction; nLockTime follows the tip when it was the tip.
				if !slices.Equal(inputsOf(built), inputsOf(pre)) || len(built.UnsignedTx.TxOut) != 1 || built.UnsignedTx.TxOut[0].Value != pre.UnsignedTx.TxOut[0].Value {
					t.Fatalf("built %v, pre-built %v", built.UnsignedTx, pre.UnsignedTx)
				}
				if pre.UnsignedTx.LockTime == 500 && built.UnsignedTx.LockTime != 501 {
					t.Fatalf("nLockTime %d after the tip moved to 501", built.UnsignedTx.LockTime)
				}
			}},
		{name: "another coin confirmed: the sweep takes it too",
			change: func(t *testing.T, e *engineEnv) { e.deposit(t, 7, 80_000) },
			check: func(t *testing.T, e *engineEnv, ev chainwatch.FundingConfirmed, pre, built *btcpsbt.Packet, _ float64) {
				if len(pre.UnsignedTx.TxIn) != 1 || len(built.UnsignedTx.TxIn) != 2 {
					t.Fatalf("pre-built spends %d coins, built %d; want 1 then 2", len(pre.UnsignedTx.TxIn), len(built.UnsignedTx.TxIn))
				}
			}},
		{name: "the feerate changed",
			change: func(t *testing.T, e *engineEnv) { e.chain.feerate = 9 },
			check: func(t *testing.T, e *engineEnv, _ chainwatch.FundingConfirmed, _, _ *btcpsbt.Packet, rate float64) {
				if rate != 9 {
					t.Fatalf("built at %v sat/vB, want the new estimate 9", rate)
				}
			}},
		{name: "the policy changed the automation's destination",
			change: func(t *testing.T, e *engineEnv) {
				e.setAutomation(func(a *policy.Automation) { a.Action.To = policy.Destination{Text: "other", PkScript: other} })
			},
			check: func(t *testing.T, e *engineEnv, _ chainwatch.FundingConfirmed, _, built *btcpsbt.Packet, _ float64) {
				if string(built.UnsignedTx.TxOut[0].PkScript) != string(other) {
					t.Fatalf("built pays %x, want the new destination", built.UnsignedTx.TxOut[0].PkScript)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
			ev := e.seen(t, 2, 150_000)
			id := ProposalID("sweep", FundingKey(policy.TriggerFundingConfirmed, ev.UTXO.OutPoint))
			e.eng.prebuilt.mu.Lock()
			kept, ok := e.eng.prebuilt.m[id]
			e.eng.prebuilt.mu.Unlock()
			if !ok {
				t.Fatal("nothing pre-built when the deposit was seen")
			}
			var buf bytes.Buffer
			if err := kept.pk.Serialize(&buf); err != nil {
				t.Fatal(err)
			}
			pre, err := btcpsbt.NewFromRawBytes(&buf, false)
			if err != nil {
				t.Fatal(err)
			}
			if c.change != nil {
				c.change(t, e)
			}
			if got := e.confirm(t, ev); got != id {
				t.Fatalf("proposal %s, want %s", got, id)
			}
			p := e.until(t, id, StateBroadcast)
			if reused := strings.Contains(e.builtDetail(t, id), "pre-built"); reused != c.reused {
				t.Fatalf("pre-built PSBT used: %v, want %v (built: %q)", reused, c.reused, e.builtDetail(t, id))
			}
			c.check(t, e, ev, pre, e.built(t, id), p.FeeRate)
			if tx := e.chain.sent[0]; tx.TxHash().String() != p.TxID || !slices.Contains(inputsOf(e.built(t, id)), ev.UTXO.OutPoint) {
				t.Fatalf("broadcast %s, proposal %s", tx.TxHash(), p.TxID)
			}
			if _, left := e.eng.prebuilt.take(id); left {
				t.Fatal("the pre-built PSBT is still kept after the build")
			}
		})
	}
}

// An attacker double-spends the deposit between seen and confirmed: the PSBT pre-built for it
// is never signed. The double spend (paying the wallet again, at another outpoint) is swept by
// a PSBT built for it; a confirmation reported for the double-spent deposit itself (a lying
// server) finds its coin gone: the pre-built PSBT is discarded and nothing is signed or asked.
func TestEnginePrebuiltNeverSignsADoubleSpentDeposit(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	ev := e.seen(t, 2, 150_000)
	gone := ev.UTXO.OutPoint
	id := ProposalID("sweep", FundingKey(policy.TriggerFundingConfirmed, gone))
	if _, ok := e.eng.prebuilt.m[id]; !ok {
		t.Fatal("nothing pre-built when the deposit was seen")
	}
	e.chain.mu.Lock()
	delete(e.f.Chain.Coins, gone) // double-spent
	e.chain.mu.Unlock()
	ev2 := e.deposit(t, 3, 149_000) // the double spend pays the wallet again
	id2 := e.confirm(t, ev2)
	p2 := e.until(t, id2, StateBroadcast)
	if ins := inputsOf(e.built(t, id2)); !slices.Equal(ins, []wire.OutPoint{ev2.UTXO.OutPoint}) {
		t.Fatalf("the double spend's sweep spends %v", ins)
	}
	asked := len(e.co.asked)
	ev.UTXO.Height, ev.Confs = e.chain.Height, 1
	if err := e.eng.HandleEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	p := e.until(t, id, StateAbandoned)
	if !strings.HasPrefix(p.Reason, ReasonInsufficientFunds) || len(p.PSBT) != 0 {
		t.Fatalf("proposal for the double-spent deposit: %s (%s), PSBT stored: %v", p.State, p.Reason, len(p.PSBT) != 0)
	}
	if len(e.co.asked) != asked {
		t.Fatal("the co-signer was asked for the double-spent deposit")
	}
	rs, err := e.db.Reservations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].TxID != p2.UnsignedTxID {
		t.Fatalf("signed (ledger) %+v, want only the double spend's sweep", rs)
	}
	for _, tx := range e.chain.sent {
		for _, in := range tx.TxIn {
			if in.PreviousOutPoint == gone {
				t.Fatalf("broadcast %s spends the double-spent deposit", tx.TxHash())
			}
		}
	}
}

// The fee estimate is asked once per block (tip), and a new tip asks it again in the
// background; a change of the estimate within a block is seen at the next one.
func TestEngineFeeEstimateOncePerTip(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	calls := func() int { e.chain.mu.Lock(); defer e.chain.mu.Unlock(); return e.chain.estimates }
	if r := e.eng.estimateFee(ctx, 6); r.Rate != 3 || calls() != 1 {
		t.Fatalf("first estimate %v after %d calls", r.Rate, calls())
	}
	e.chain.feerate = 4
	if r := e.eng.estimateFee(ctx, 6); r.Rate != 3 || calls() != 1 {
		t.Fatalf("same tip: estimate %v after %d calls, want the kept 3 after 1", r.Rate, calls())
	}
	e.eng.estimateFee(ctx, 2) // another target is asked on its own
	if calls() != 2 {
		t.Fatalf("%d calls after a second target", calls())
	}
	e.chain.mine()
	if err := e.eng.HandleEvent(ctx, chainwatch.NewTip{Tip: e.chain.Tip()}); err != nil {
		t.Fatal(err)
	}
	e.eng.startBackground(ctx)
	e.eng.wg.Wait()
	if calls() != 3 {
		t.Fatalf("%d calls after a new tip, want the automation's target asked again", calls())
	}
	if r := e.eng.estimateFee(ctx, 6); r.Rate != 4 || calls() != 3 {
		t.Fatalf("new tip: estimate %v after %d calls, want 4 from the background call", r.Rate, calls())
	}
	// A failed call is not kept: the next build asks again.
	e.eng.fees.mu.Lock()
	e.eng.fees.m = nil
	e.eng.fees.mu.Unlock()
	failing := &failingFees{outChain: e.chain}
	e.eng.chain = failing
	e.eng.estimateFee(ctx, 6)
	e.eng.estimateFee(ctx, 6)
	if failing.n != 2 {
		t.Fatalf("a failed estimate was kept: %d calls", failing.n)
	}
}

type failingFees struct {
	*outChain
	n int
}

func (f *failingFees) EstimateFee(context.Context, int) electrum.FeeEstimate {
	f.n++
	return electrum.FeeEstimate{Rate: 2, Reason: errors.New("not connected")}
}

// A flood of deposits seen queues at most maxPrebuilt pre-builds and keeps at most maxPrebuilt
// PSBTs (the oldest go: they are built when they confirm); a deposit seen twice is queued once.
func TestPrebuildBounded(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	for i := range maxPrebuilt + 6 {
		ev := e.deposit(t, uint32(2+i), 150_000)
		for range 2 {
			if err := e.eng.HandleEvent(ctx, chainwatch.FundingSeen{UTXO: ev.UTXO}); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.eng.due.mu.Lock()
	n := len(e.eng.due.prebuild)
	e.eng.due.mu.Unlock()
	if n != maxPrebuilt {
		t.Fatalf("%d pre-builds queued, want %d", n, maxPrebuilt)
	}
	var s prebuiltSet
	for i := range maxPrebuilt + 6 {
		s.put(fmt.Sprint(i), prebuilt{})
	}
	if _, ok := s.take("0"); ok || len(s.m) != maxPrebuilt || len(s.order) != maxPrebuilt {
		t.Fatalf("kept %d (order %d), the oldest still there: %v", len(s.m), len(s.order), ok)
	}
}
