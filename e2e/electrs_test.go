package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/internal/scenario"
)

// TestCosignOnElectrs is the signing path with electrs 0.12 as the Electrum server of both the
// cosigner and BDK (ElectrumX still runs on the network but nobody uses it): an unconfirmed
// payment to the wallet is seen through electrs's mempool, its confirmation follows; BDK builds
// and signs a payment, nostr-tools sends it as sign_psbt, cosigner checks its inputs against
// what it watched through electrs and signs; BDK finalizes and broadcasts through electrs; the
// cosigner's UTXO set then equals btcd's. A missing electrs fails the test (never a skip).
func TestCosignOnElectrs(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	env, stop := startDaemon(ctx, t, scenario.Options{Race: true, Electrs: true})
	defer stop()
	if !strings.HasPrefix(env.ElectrumURL(), "tcp://") || env.ElectrumURL() == env.Net.ElectrumURL() {
		t.Fatalf("scenario's Electrum server %q is not electrs", env.ElectrumURL())
	}

	fund := btcutil.Amount(btcutil.SatoshiPerBitcoin)
	if _, _, err := env.Fund(ctx, 0, fund); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitStatus(ctx, time.Minute, func(s chainwatch.Status) bool { return s.Unconfirmed == fund }); err != nil {
		t.Fatalf("the unconfirmed payment never showed through electrs: %v", err)
	}
	if _, err := env.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitStatus(ctx, time.Minute, func(s chainwatch.Status) bool { return s.Confirmed == fund && s.Unconfirmed == 0 }); err != nil {
		t.Fatal(err)
	}

	bunker, err := env.BunkerURI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	payee, err := env.ExternalAddress()
	if err != nil {
		t.Fatal(err)
	}
	built, err := env.BuildPayment(ctx, payee, 30_000_000, 5)
	if err != nil {
		t.Fatal(err)
	}
	ans := nip46(t, ctx, env, bunker, env.ClientSK, "sign_psbt", built.PSBT)
	if ans.Error != "" {
		t.Fatalf("sign_psbt refused: %s", ans.Error)
	}
	p := decodePSBT(t, ans.Result)
	for i, in := range p.Inputs {
		if len(in.PartialSigs) != 2 {
			t.Fatalf("input %d has %d partial signatures, want 2 (B's and the cosigner's)", i, len(in.PartialSigs))
		}
	}
	fin, err := env.Finalize(ctx, ans.Result)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	want := fund - 30_000_000 - btcutil.Amount(fin.Fee)
	st, err := env.WaitStatus(ctx, time.Minute, func(s chainwatch.Status) bool { return s.Confirmed == want && s.Unconfirmed == 0 })
	if err != nil {
		t.Fatal(err)
	}
	assertUTXOsMatchNode(t, env, st)
	if _, err := env.WaitLog(ctx, 10*time.Second, `msg="coin spent"`, "spent_by="+fin.TxID); err != nil {
		t.Fatal(err)
	}
}
