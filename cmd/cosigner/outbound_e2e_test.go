package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/internal/scenario"
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
