package psbtflow

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// benchService is a Service over a fresh database with the policy text rules (after a client
// list naming client and max_per_tx 1 BTC), at a fixed clock.
func benchService(b *testing.B, rules string, opts ...Option) (*Service, *fixture, *store.DB, string) {
	b.Helper()
	f := newFixture(b)
	db, err := store.Open(context.Background(), filepath.Join(b.TempDir(), "c.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	client, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	doc := "version: 1\nclients:\n  - {name: coordinator, pubkey: " + client + "}\nlimits:\n  max_per_tx: 1 BTC\n" + rules
	pol, err := policy.Parse("p.yaml", []byte(doc))
	if err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	opts = append([]Option{WithClock(func() time.Time { return now })}, opts...)
	svc, err := NewService(f.desc, f.keys[1], f.chain, func() *policy.Policy { return pol }, db, quiet, opts...)
	if err != nil {
		b.Fatal(err)
	}
	return svc, f, db, client
}

// BenchmarkHeldTick is one Run tick with 100 requests held for a day's cooling-off: nothing is
// due, so nothing should need deciding again.
func BenchmarkHeldTick(b *testing.B) {
	svc, f, _, client := benchService(b, "rules:\n  - {name: wait, action: hold, hold: {cooling_off: 24h}}\n")
	ctx := context.Background()
	for i := range 100 {
		op := f.addCoin(b, 0, uint32(i%20), 100_000+benchAmount(i))
		s, err := psbt.Encode(f.buildPSBT(b, []wire.OutPoint{op}, 50_000, 100_000+benchAmount(i)-51_000, 2), psbt.Base64)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := svc.SignPSBT(ctx, nip46.Call{Client: client, ID: fmt.Sprint("h", i), Method: "sign_psbt", Params: []string{s}}); err == nil {
			b.Fatal("want held")
		}
	}
	b.ResetTimer()
	for b.Loop() {
		svc.Tick(ctx)
	}
}

func benchAmount(i int) btcutil.Amount { return btcutil.Amount(i) }

// manyOutputsPSBT spends one wallet coin to n zero-value outputs (finding 4 of issue 11).
func manyOutputsPSBT(tb testing.TB, f *fixture, n int) string {
	op := f.addCoin(tb, 0, 3, 100_000)
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(&wire.TxIn{PreviousOutPoint: op, Sequence: wire.MaxTxInSequenceNum - 2})
	for range n {
		tx.AddTxOut(wire.NewTxOut(0, []byte{txscript.OP_RETURN}))
	}
	p, err := btcpsbt.NewFromUnsignedTx(tx)
	if err != nil {
		tb.Fatal(err)
	}
	c := f.chain.Coins[op]
	p.Inputs[0].WitnessUtxo = wire.NewTxOut(int64(c.Value), c.PkScript)
	s, err := psbt.Encode(p, psbt.Base64)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// BenchmarkDenied4000Outputs is one sign_psbt request of one wallet coin and 4,000 zero-value
// outputs that the policy denies; audit_bytes/op is what it adds to audit_log.
func BenchmarkDenied4000Outputs(b *testing.B) {
	svc, f, db, client := benchService(b, "rules:\n  - {name: no, action: deny}\n")
	ctx := context.Background()
	s := manyOutputsPSBT(b, f, 4000)
	b.ReportMetric(float64(len(s)), "request_bytes")
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		if _, err := svc.SignPSBT(ctx, nip46.Call{Client: client, ID: fmt.Sprint("d", i), Method: "sign_psbt", Params: []string{s}}); err == nil {
			b.Fatal("want refused")
		}
	}
	b.StopTimer()
	var n int64
	if err := db.SQL.QueryRow(`SELECT coalesce(sum(length(analysis) + length(explanation)), 0) FROM audit_log`).Scan(&n); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(n)/float64(i), "audit_bytes/op")
}
