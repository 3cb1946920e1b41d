package psbtflow

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// TestReplacementOfTwoCountsBoth: a transaction C spending the inputs of two reserved,
// non-conflicting transactions A and B replaces both, but if C never confirms, A and B can both
// still confirm: the ledger must keep counting A + B, not only the larger of the two.
func TestReplacementOfTwoCountsBoth(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	pol, err := policy.Parse("p.yaml", []byte(fmt.Sprintf("version: 1\nclients: [{name: c, pubkey: %s}]\nlimits:\n  max_per_tx: 120000 sat\n  velocity: [{window: 1h, max: 150000 sat}]\n", client)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	svc, err := NewService(f.desc, f.keys[0], f.chain, func() *policy.Policy { return pol }, db, quiet, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	x, y, z := f.addCoin(t, 0, 1, 100_000), f.addCoin(t, 0, 2, 100_000), f.addCoin(t, 0, 3, 100_000)
	n := 0
	sign := func(ins []wire.OutPoint, pay btcutil.Amount) error {
		var total btcutil.Amount
		for _, op := range ins {
			total += f.chain.Coins[op].Value
		}
		s, _ := psbt.Encode(f.buildPSBT(t, ins, pay, total-pay-1_000, 2), psbt.Base64)
		n++
		_, err := svc.SignPSBT(ctx, nip46.Call{Client: client, ID: fmt.Sprint(n), Method: "sign_psbt", Params: []string{s}})
		return err
	}
	if err := sign([]wire.OutPoint{x}, 69_000); err != nil { // A: 70000 out
		t.Fatal(err)
	}
	if err := sign([]wire.OutPoint{y}, 69_000); err != nil { // B: 70000 out
		t.Fatal(err)
	}
	if err := sign([]wire.OutPoint{x, y}, 4_000); err != nil { // C replaces A and B: 5000 out
		t.Fatal(err)
	}
	// A and B may still both confirm (140000): D of 70000 more must be refused.
	if err := sign([]wire.OutPoint{z}, 69_000); err == nil || !strings.Contains(err.Error(), "velocity_1h") {
		t.Fatalf("D after C replaced A and B: %v; want policy_denied: velocity_1h", err)
	}
}
