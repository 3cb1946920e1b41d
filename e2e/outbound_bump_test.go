package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

// outbound_bump_test.go — the cases of issue 6 that need a pair of their own: the fee bump
// (btcd with a relay and mining floor keeps the first sweep unconfirmed) and a co-signer whose
// watcher is behind.

// TestOutboundFeeBump: the sweep stays unconfirmed past bump_after blocks and A replaces it
// (BIP-125) at a higher feerate, asking B again; the replacement confirms, the original is
// marked replaced, and each co-signer's spend ledger counts the sweep once.
//
// How a transaction stays unconfirmed on regtest, where `generate` mines the whole mempool:
// btcd runs with a relay and mining floor of 10 sat/vB (devnet.Config.MinRelayFeeRate, which
// also turns off btcd's priority rule for relay): a transaction below it enters the mempool but
// no block template takes it. The deposits pay 2 sat/vB and are mined all the same (their
// harness coinbase inputs are old and large, which puts them in btcd's high-priority block
// area), so btcd's fee estimate for the next block (estimatefee 1, the automation's target) is
// about 2 sat/vB and the sweep is built at that feerate: stuck. Then the fee market rises: each
// of the next blocks carries a harness payment at 40 sat/vB, so that the estimate for the next
// block follows; at bump_after blocks A's replacement takes the new estimate (within the
// automation's 60 sat/vB cap), which clears both the floor and btcd's BIP-125 rule 4 (the
// replacement pays at least the floor × its size more), and the next block confirms it.
func TestOutboundFeeBump(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	const floor = 10 // sat/vB
	p, stop := startPair(ctx, t, scenario.PairOptions{MinRelayFeeRate: floor,
		PolicyA: scenario.SweepPolicyA(scenario.SweepOptions{BumpAfter: 2, TargetBlocks: 1, MaxFeeRate: "60 sat/vB"})})
	defer stop()
	began := time.Now().Add(-time.Second)
	const amount = btcutil.Amount(40_000_000)

	op := deposit(ctx, t, p, amount, 2)
	first := waitFor(ctx, t, p, op, "broadcast")
	if first.FeeRate >= floor {
		t.Fatalf("the sweep pays %.1f sat/vB, not below btcd's floor of %d sat/vB: this test cannot keep it unconfirmed", first.FeeRate, floor)
	}
	t.Logf("sweep %s broadcast at %.1f sat/vB (%d sat)", first.TxID, first.FeeRate, first.FeeSat)

	payee, err := scenario.NewExternalAddress(p.Net.Params())
	if err != nil {
		t.Fatal(err)
	}
	payScript, err := txscript.PayToAddrScript(payee)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // bump_after blocks, each with a high-fee payment
		if _, err := p.Net.FundOutputs(ctx, []*wire.TxOut{wire.NewTxOut(1_000_000, payScript)}, devnet.FundOptions{FeeRate: 40}); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Net.Mine(ctx, 1); err != nil {
			t.Fatal(err)
		}
		if out, err := p.Net.RPC().GetTxOut(&op.Hash, op.Index, false); err != nil || out == nil {
			t.Fatalf("the deposit %s was spent in a block (%v): the low-fee sweep was mined after all", op, err)
		}
	}
	bump, err := p.WaitProposal(ctx, progress, func(pr scenario.Proposal) bool {
		return pr.Replaces == first.ID && (pr.State == "broadcast" || pr.State == "confirmed")
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("fee bump %s broadcast at %.1f sat/vB (%d sat)", bump.TxID, bump.FeeRate, bump.FeeSat)
	if bump.FeeRate <= first.FeeRate || bump.FeeSat <= first.FeeSat || bump.FeeRate > 60 {
		t.Fatalf("fee bump pays %.1f sat/vB (%d sat) after %.1f sat/vB (%d sat); want more, within the 60 sat/vB cap", bump.FeeRate, bump.FeeSat, first.FeeRate, first.FeeSat)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	bump, err = p.WaitProposal(ctx, progress, func(pr scenario.Proposal) bool { return pr.ID == bump.ID && pr.State == "confirmed" })
	if err != nil {
		t.Fatal(err)
	}
	orig, err := p.WaitProposal(ctx, progress, func(pr scenario.Proposal) bool { return pr.ID == first.ID && pr.State == "replaced" })
	if err != nil {
		t.Fatal(err)
	}
	if len(orig.Events("bumped")) == 0 {
		t.Errorf("timeline of the replaced sweep has no bumped entry: %+v", orig.Timeline)
	}
	checkSwept(ctx, t, p, bump, op, amount)
	vault, err := p.VaultBalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if vault.Confirmed != int64(amount)-bump.FeeSat {
		t.Fatalf("the vault holds %d sat, want the deposit less the bump's fee: %d", vault.Confirmed, int64(amount)-bump.FeeSat)
	}
	// B signed both versions under its policy; each co-signer's ledger counts the sweep once.
	signed := map[string]bool{}
	log, err := p.B.Audit(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range log {
		if a.Method == "sign_psbt" && a.Decision == "signed" {
			signed[a.UnsignedTxID] = true
		}
	}
	if !signed[first.UnsignedTxID] || !signed[bump.UnsignedTxID] {
		t.Fatalf("B's audit log signed %v; want both %s and its bump %s", signed, first.UnsignedTxID, bump.UnsignedTxID)
	}
	for _, d := range []*scenario.Daemon{p.A, p.B} {
		db, err := store.Open(ctx, d.DBPath())
		if err != nil {
			t.Fatal(err)
		}
		window := time.Since(began) + time.Minute
		ex, err := psbtflow.ExposureAt(ctx, db, []time.Duration{window}, time.Now())
		if err != nil {
			db.Close()
			t.Fatal(err)
		}
		if spent := ex[window]; spent != amount {
			rs, _ := db.Reservations(ctx)
			var entries []string
			for _, r := range rs {
				entries = append(entries, fmt.Sprintf("%s %s %d sat", r.TxID, r.State, r.OutflowSat))
			}
			t.Errorf("cosigner %s's spend ledger counts %d sat since the deposit, want the sweep's outflow %d once; entries:\n%s",
				d.Name, spent, amount, strings.Join(entries, "\n"))
		}
		db.Close()
	}
}

// TestOutboundCosignerBehind: B's watcher learns of each deposit seconds after A (its Electrum
// server's script notifications are held back), so A's first request reaches a B that has not
// seen the coin and answers unsafe_psbt: input_unspent … not yet seen. A must not take that as
// a refusal: it asks again, B signs once it has the coin, and the sweep completes.
func TestOutboundCosignerBehind(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, stop := startPair(ctx, t, scenario.PairOptions{LagB: 8 * time.Second})
	defer stop()
	const amount = btcutil.Amount(20_000_000)
	op := deposit(ctx, t, p, amount, 0)
	pr := confirmSweep(ctx, t, p, op)
	checkSwept(ctx, t, p, pr, op, amount)
	var refused, signed int
	log, err := p.B.Audit(ctx, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range log {
		// A's request ids for this proposal name it (a refused analysis records no txid).
		if a.Method != "sign_psbt" || !strings.Contains(a.RequestID, pr.ID) {
			continue
		}
		switch {
		case a.Decision == "signed" && a.UnsignedTxID == pr.UnsignedTxID:
			signed++
		case a.Decision == "rejected" && strings.Contains(a.Reason, "input_unspent"):
			refused++
		}
	}
	if refused == 0 || signed != 1 {
		t.Fatalf("B's audit log for %s: %d not-yet-seen refusals, %d signatures; want at least one refusal, then one signature", pr.UnsignedTxID, refused, signed)
	}
}
