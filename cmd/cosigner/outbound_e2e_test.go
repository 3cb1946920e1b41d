package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"

	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/store"
)

// TestOutboundSweepWithCosigner runs the automations engine end to end on the local test
// network with two daemons (internal/scenario.Pair): a deposit confirmed once is swept by A,
// signed by A under its policy, co-signed by B over NIP-46, finalized, broadcast and confirmed
// into the cold vault; then B's policy is tightened and the next deposit's proposal is abandoned
// with B's policy_denied reason, nothing broadcast.
func TestOutboundSweepWithCosigner(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, err := scenario.SetupPair(ctx, scenario.PairOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.LogOnFailure(t, 60)
		p.Close()
	}()
	op, err := p.Deposit(ctx, 50_000_000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	pr, err := p.WaitProposal(ctx, 3*time.Minute, scenario.ForTrigger(op, "broadcast", "confirmed", "abandoned"))
	if err != nil {
		t.Fatal(err)
	}
	if pr.State == "abandoned" {
		t.Fatalf("sweep abandoned: %s; timeline %+v", pr.Reason, pr.Timeline)
	}
	if len(pr.Cosigners) != 1 || pr.Cosigners[0].State != "signed" || pr.Cosigners[0].PubKey != p.B.Key.NostrPubKey || pr.TxID == "" {
		t.Fatalf("proposal %+v", pr)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	pr, err = p.WaitProposal(ctx, 2*time.Minute, scenario.ForTrigger(op, "confirmed"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{"proposed", "built", "self_signed", "requested", "answered", "finalized", "broadcast", "confirmed"} {
		if len(pr.Events(ev)) != 1 {
			t.Fatalf("timeline has %d %q entries: %+v", len(pr.Events(ev)), ev, pr.Timeline)
		}
	}
	// The PSBT carries non_witness_utxo (fetched from the Electrum server) for hardware co-signers.
	db, err := store.Open(ctx, p.A.DBPath())
	if err != nil {
		t.Fatal(err)
	}
	stored, err := db.GetProposal(ctx, pr.ID)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := psbt.NewFromRawBytes(bytes.NewReader(stored.PSBT), false)
	if err != nil || pk.Inputs[0].NonWitnessUtxo == nil || pk.Inputs[0].NonWitnessUtxo.TxHash() != op.Hash {
		t.Fatalf("stored PSBT: %v; input 0 non_witness_utxo %v", err, pk.Inputs[0].NonWitnessUtxo)
	}
	vault, err := p.VaultBalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := btcutil.Amount(vault.Confirmed); got != 50_000_000-btcutil.Amount(pr.FeeSat) {
		t.Fatalf("vault has %s, want 0.5 BTC less the fee %d sat", got, pr.FeeSat)
	}

	// B tightens its policy (applies at once): the next sweep is refused by B.
	tight := scenario.CosignerPolicyB("0.001 BTC")
	if err := p.WritePolicyB(tight); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(p.Expand(tight)))
	if _, err := p.B.WaitLog(ctx, time.Minute, "policy loaded", hex.EncodeToString(sum[:])); err != nil {
		t.Fatal(err)
	}
	op2, err := p.Deposit(ctx, 20_000_000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	pr2, err := p.WaitProposal(ctx, 3*time.Minute, scenario.ForTrigger(op2, "abandoned", "broadcast", "confirmed"))
	if err != nil {
		t.Fatal(err)
	}
	if pr2.State != "abandoned" || !strings.Contains(pr2.Reason, "policy_denied") || pr2.TxID != "" || len(pr2.Events("denied")) != 1 {
		t.Fatalf("second proposal %s %q txid %q; timeline %+v", pr2.State, pr2.Reason, pr2.TxID, pr2.Timeline)
	}
}

// TestOutboundFeeBumpWithCosigner: btcd mines nothing below 15 sat/vB; A's automation may pay at
// most 10 sat/vB, so its sweep stays unconfirmed and cannot be bumped (stuck). A's operator
// raises the cap to 50 sat/vB: the bump due after bump_after (1 block) is built at the server's
// estimate, signed by A under its policy and by B under its own — B's watcher saw the original
// spend the deposit and B signed the original, so it analyses the replacement against that
// coin — and it confirms; the original becomes replaced.
func TestOutboundFeeBumpWithCosigner(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, err := scenario.SetupPair(ctx, scenario.PairOptions{Dir: t.TempDir(), MinRelayFeeRate: 15,
		PolicyA: scenario.SweepPolicyA(scenario.SweepOptions{BumpAfter: 1, Fallback: "2 sat/vB", MaxFeeRate: "10 sat/vB"})})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.LogOnFailure(t, 80)
		p.Close()
	}()
	op, err := p.Deposit(ctx, 30_000_000, 40)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	orig, err := p.WaitProposal(ctx, 3*time.Minute, scenario.ForTrigger(op, "broadcast", "confirmed", "abandoned"))
	if err != nil {
		t.Fatal(err)
	}
	if orig.State != "broadcast" || orig.FeeRate > 10 {
		t.Fatalf("original %s at %.1f sat/vB (%s)", orig.State, orig.FeeRate, orig.Reason)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Raise the automation's fee cap (a loosening; loosen_delay is 0 here).
	if err := p.WritePolicyA(scenario.SweepPolicyA(scenario.SweepOptions{BumpAfter: 1, Fallback: "2 sat/vB", MaxFeeRate: "50 sat/vB"})); err != nil {
		t.Fatal(err)
	}
	bump, err := p.WaitProposal(ctx, 3*time.Minute, func(pr scenario.Proposal) bool {
		return pr.Replaces == orig.ID && (pr.State == "broadcast" || pr.State == "confirmed" || pr.State == "abandoned")
	})
	if err != nil {
		t.Fatal(err)
	}
	if bump.State == "abandoned" || bump.FeeRate < 15 || bump.FeeSat <= orig.FeeSat || len(bump.Cosigners) != 1 || bump.Cosigners[0].State != "signed" {
		t.Fatalf("bump %+v of %+v", bump, orig)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitProposal(ctx, 2*time.Minute, func(pr scenario.Proposal) bool { return pr.ID == bump.ID && pr.State == "confirmed" }); err != nil {
		t.Fatal(err)
	}
	replaced, err := p.WaitProposal(ctx, 2*time.Minute, func(pr scenario.Proposal) bool { return pr.ID == orig.ID && pr.State == "replaced" })
	if err != nil {
		t.Fatal(err)
	}
	if len(replaced.Events("bumped")) != 1 {
		t.Fatalf("original's timeline %+v", replaced.Timeline)
	}
}

// TestOutboundRestartWithCosignerOffline: B is down when the deposit confirms, so A's proposal
// waits for its co-signer; A is killed (SIGKILL) while it waits and started again, then B comes
// back. The sweep completes once: A signed its share once (one audit entry), B was asked under
// the stored request id and decided once, one transaction reached the vault.
func TestOutboundRestartWithCosignerOffline(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	p, err := scenario.SetupPair(ctx, scenario.PairOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		p.LogOnFailure(t, 60)
		p.Close()
	}()
	if err := p.B.StopDaemon(); err != nil {
		t.Fatal(err)
	}
	op, err := p.Deposit(ctx, 40_000_000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waiting, err := p.WaitProposal(ctx, 3*time.Minute, scenario.ForTrigger(op, "awaiting_cosigners"))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.A.KillDaemon(); err != nil {
		t.Fatal(err)
	}
	if err := p.A.StartDaemon(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.B.StartDaemon(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.WaitProposal(ctx, 3*time.Minute, scenario.ForTrigger(op, "broadcast", "confirmed")); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	done, err := p.WaitProposal(ctx, 2*time.Minute, scenario.ForTrigger(op, "confirmed"))
	if err != nil {
		t.Fatal(err)
	}
	ps, err := p.Proposals(ctx)
	if err != nil || len(ps) != 1 || done.ID != waiting.ID || len(done.Events("finalized")) != 1 || len(done.Events("self_signed")) != 1 {
		t.Fatalf("proposals %+v (%v); timeline %+v", ps, err, done.Timeline)
	}
	count := func(d *scenario.Daemon, client string) int {
		log, err := d.Audit(ctx, 200)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, a := range log {
			if a.Method == "sign_psbt" && (client == "" || a.Client == client) && a.UnsignedTxID == done.UnsignedTxID {
				n++
			}
		}
		return n
	}
	if n := count(p.A, "automation:sweep_deposits"); n != 1 {
		t.Fatalf("A decided its own share %d times", n)
	}
	if n := count(p.B, p.A.Key.NostrPubKey); n != 1 {
		t.Fatalf("B decided %d times", n)
	}
	vault, err := p.VaultBalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := vault.Confirmed; got != 40_000_000-done.FeeSat {
		t.Fatalf("vault has %d sat, want %d", got, 40_000_000-done.FeeSat)
	}
}
