package outbound

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/testfakes"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

// TestEngineInvalidation: the operator invalidates a withheld signature. The engine builds a
// transaction spending one of its inputs back to the wallet's change branch, signs it through
// the policy path, gets the co-signer's signature, broadcasts it; the withheld signature keeps
// counting until the invalidation is proven confirmed, then stops.
func TestEngineInvalidation(t *testing.T) {
	facts := testfakes.NewFacts()
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n", psbtflow.WithSpendFacts(facts))
	ctx := context.Background()
	client, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	pol, err := policy.Parse("a.yaml", []byte("version: 1\nclients:\n  - {name: app, pubkey: "+client+"}\nlimits:\n  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 0.002 BTC}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	pol.Automations = []policy.Automation{e.auto}
	e.pol = pol
	ev := e.deposit(t, 2, 150_000)
	op := ev.UTXO.OutPoint
	// The client gets a signature and withholds it.
	withheld := e.f.BuildPSBT(t, []wire.OutPoint{op}, 100_000, 49_000, 4)
	text, _ := psbt.Encode(withheld, psbt.Base64)
	if _, err := e.svc.SignPSBT(ctx, nip46.Call{Client: client, ID: "w1", Method: "sign_psbt", Params: []string{text}}); err != nil {
		t.Fatal(err)
	}
	txid := withheld.UnsignedTx.TxHash().String()
	exposure := func() int64 {
		ex, err := psbtflow.ExposureAt(ctx, e.db, []time.Duration{24 * time.Hour}, e.now)
		if err != nil {
			t.Fatal(err)
		}
		return int64(ex[24*time.Hour])
	}
	if got := exposure(); got != 101_000 {
		t.Fatalf("exposure %d, want 101000", got)
	}
	if _, _, err := RequestInvalidation(ctx, e.db, e.chain.SpendableUTXOs(), "00"+txid[2:], "sweep", e.now); !errors.Is(err, ErrNotOutstanding) {
		t.Fatalf("unknown txid: %v", err)
	}
	p, created, err := RequestInvalidation(ctx, e.db, e.chain.SpendableUTXOs(), txid, "sweep", e.now)
	if err != nil || !created {
		t.Fatalf("request: %v (created %v)", err, created)
	}
	if again, created, err := RequestInvalidation(ctx, e.db, e.chain.SpendableUTXOs(), txid, "sweep", e.now); err != nil || created || again.ID != p.ID {
		t.Fatalf("second request: %+v %v %v; want the one in flight", again, created, err)
	}
	p = e.until(t, p.ID, StateBroadcast)
	inv := e.chain.sent[len(e.chain.sent)-1]
	if len(inv.TxIn) != 1 || inv.TxIn[0].PreviousOutPoint != op || len(inv.TxOut) != 1 {
		t.Fatalf("invalidation %v does not spend %s alone", inv, op)
	}
	if b, _, ok := e.chain.Lookup(inv.TxOut[0].PkScript); !ok || b != psbt.ChangeBranch {
		t.Fatalf("invalidation pays %x, not a change address of the wallet", inv.TxOut[0].PkScript)
	}
	// Broadcast (and even confirmed per the server) but not proven: still outstanding, counted
	// once with the invalidation (they share the input).
	e.chain.mine()
	if err := e.svc.ReconcileExposure(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := e.db.LedgerEntry(ctx, txid); r.State != store.LedgerOutstanding {
		t.Fatalf("withheld entry is %s before the invalidation is proven", r.State)
	}
	if got := exposure(); got != 101_000 {
		t.Fatalf("exposure %d while both are outstanding, want 101000 (the larger)", got)
	}
	facts.Mine(e.now, inv.TxHash().String(), op)
	if err := e.svc.ReconcileExposure(ctx); err != nil {
		t.Fatal(err)
	}
	if r, _, _ := e.db.LedgerEntry(ctx, txid); r.State != store.LedgerInvalidated || r.InvalidBy != inv.TxHash().String() {
		t.Fatalf("withheld entry after the proven invalidation: %+v", r)
	}
	if got := exposure(); got != p.FeeSat {
		t.Fatalf("exposure %d after the invalidation confirmed, want its fee %d", got, p.FeeSat)
	}
	if _, _, err := RequestInvalidation(ctx, e.db, e.chain.SpendableUTXOs(), txid, "sweep", e.now); !errors.Is(err, ErrNotOutstanding) {
		t.Fatalf("invalidating a settled entry: %v", err)
	}
}

func TestParseInvalidationKey(t *testing.T) {
	op := wire.OutPoint{Index: 3}
	op.Hash[0] = 7
	txid := "ab" + "00000000000000000000000000000000000000000000000000000000000000"
	key := InvalidationKey(txid, op, 2)
	got, gotOp, ok := ParseInvalidationKey(key)
	if !ok || got != txid || gotOp != op {
		t.Fatalf("%s → %s %v %v", key, got, gotOp, ok)
	}
	for _, bad := range []string{"", "invalidate:", "funding_confirmed:" + op.String(), "invalidate:xyz:" + op.String() + ":0", "invalidate:" + txid + ":" + op.String(), "invalidate:" + txid + ":" + op.String() + ":x"} {
		if _, _, ok := ParseInvalidationKey(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}
