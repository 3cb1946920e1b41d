package psbtflow

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/testfakes"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// exposureEnv is one co-signer Service with a fake clock and fake proven facts.
type exposureEnv struct {
	f      *fixture
	db     *store.DB
	svc    *Service
	facts  *testfakes.Facts
	client string
	now    time.Time
	n      int
}

func newExposureEnv(t *testing.T, limits string) *exposureEnv {
	t.Helper()
	ctx := context.Background()
	e := &exposureEnv{f: newFixture(t), facts: testfakes.NewFacts(), now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	e.client, _ = nostr.GetPublicKey(nostr.GeneratePrivateKey())
	pol, err := policy.Parse("p.yaml", []byte(fmt.Sprintf("version: 1\nclients: [{name: c, pubkey: %s}]\nlimits:\n%s", e.client, limits)))
	if err != nil {
		t.Fatal(err)
	}
	if e.db, err = store.Open(ctx, filepath.Join(t.TempDir(), "c.db")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	e.svc, err = NewService(e.f.desc, e.f.keys[0], e.f.chain, func() *policy.Policy { return pol }, e.db, quiet, WithClock(func() time.Time { return e.now }), WithSpendFacts(e.facts))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// sign asks to sign a transaction spending ins that pays pay to an external address with a
// 1,000 sat fee (outflow pay + 1000); it returns the unsigned txid and the answer's error.
func (e *exposureEnv) sign(t *testing.T, ins []wire.OutPoint, pay btcutil.Amount) (string, error) {
	t.Helper()
	var total btcutil.Amount
	for _, op := range ins {
		total += e.f.chain.Coins[op].Value
	}
	p := e.f.buildPSBT(t, ins, pay, total-pay-1_000, 3)
	s, _ := psbt.Encode(p, psbt.Base64)
	e.n++
	_, err := e.svc.SignPSBT(context.Background(), nip46.Call{Client: e.client, ID: fmt.Sprint("r", e.n), Method: "sign_psbt", Params: []string{s}})
	return p.UnsignedTx.TxHash().String(), err
}

func (e *exposureEnv) mustSign(t *testing.T, ins []wire.OutPoint, pay btcutil.Amount) string {
	t.Helper()
	txid, err := e.sign(t, ins, pay)
	if err != nil {
		t.Fatalf("sign %s at %s: %v", pay, e.now.Format(time.DateOnly), err)
	}
	return txid
}

func (e *exposureEnv) mustRefuse(t *testing.T, ins []wire.OutPoint, pay btcutil.Amount, rule string) {
	t.Helper()
	if _, err := e.sign(t, ins, pay); err == nil || !strings.Contains(err.Error(), rule) {
		t.Fatalf("sign %s at %s: %v; want policy_denied: %s", pay, e.now.Format(time.DateOnly), err, rule)
	}
}

// tick runs the Service's periodic work (holds, exposure reconcile) at the current time.
func (e *exposureEnv) tick(t *testing.T) {
	t.Helper()
	e.svc.Tick(context.Background())
	if err := e.svc.ReconcileExposure(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (e *exposureEnv) state(t *testing.T, txid string) string {
	t.Helper()
	r, ok, err := e.db.LedgerEntry(context.Background(), txid)
	if err != nil || !ok {
		t.Fatalf("ledger entry %s: %v (found %v)", txid, err, ok)
	}
	return r.State
}

const day = 24 * time.Hour

// Finding 1: an authorized client signs up to the limit, withholds the transaction, waits past
// release_after and past the window, then asks again with other coins. The first signature is
// still valid, so the second request must be refused: time alone never releases exposure.
func TestWithheldSignatureStillCountsAfterReleaseAfterAndWindow(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n  velocity: [{window: 30d, max: 100000 sat}]\n  release_after: 72h\n")
	a, b := e.f.addCoin(t, 0, 1, 200_000), e.f.addCoin(t, 0, 2, 200_000)
	first := e.mustSign(t, []wire.OutPoint{a}, 90_000) // 91,000 outflow, withheld
	e.now = e.now.Add(73 * time.Hour)
	e.tick(t)
	e.mustRefuse(t, []wire.OutPoint{b}, 90_000, "velocity_30d")
	e.now = e.now.Add(31 * day)
	e.tick(t)
	e.mustRefuse(t, []wire.OutPoint{b}, 90_000, "velocity_30d")
	if got := e.state(t, first); got != store.LedgerOutstanding {
		t.Fatalf("withheld transaction is %s, want outstanding", got)
	}
	// Once the first confirms (now), it counts at its confirmation time until the window passes.
	e.facts.Mine(e.now, first, a)
	delete(e.f.chain.Coins, a)
	e.tick(t)
	e.mustRefuse(t, []wire.OutPoint{b}, 90_000, "velocity_30d")
	e.now = e.now.Add(30*day + time.Second)
	e.tick(t)
	e.mustSign(t, []wire.OutPoint{b}, 90_000)
}

// Finding 2: a mempool spend of a signed transaction's input — which an Electrum server can
// invent — does not lower the exposure; a spend that then disappears changes nothing either.
func TestInventedMempoolSpendDoesNotLowerExposure(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 100000 sat}]\n")
	a, b := e.f.addCoin(t, 0, 1, 200_000), e.f.addCoin(t, 0, 2, 200_000)
	first := e.mustSign(t, []wire.OutPoint{a}, 90_000)
	// The server reports a spend of a in its mempool by some other transaction.
	coin := e.f.chain.Coins[a]
	delete(e.f.chain.Coins, a)
	e.svc.NoteSpentCoin(a, coin, chainhash.Hash{0x66})
	e.tick(t)
	e.mustRefuse(t, []wire.OutPoint{b}, 50_000, "velocity_1d")
	if got := e.state(t, first); got != store.LedgerOutstanding {
		t.Fatalf("after an invented mempool spend the entry is %s, want outstanding", got)
	}
	// The invented spend disappears: nothing changes.
	e.f.chain.Coins[a] = coin
	e.tick(t)
	e.mustRefuse(t, []wire.OutPoint{b}, 50_000, "velocity_1d")
	if got := e.state(t, first); got != store.LedgerOutstanding {
		t.Fatalf("after the spend disappeared the entry is %s, want outstanding", got)
	}
}

// Finding 2: a server that hides a confirmed spend does not move the entry back; only a reorg
// of the watcher's own header chain does.
func TestHiddenConfirmedSpendDoesNotReopen(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 100000 sat}]\n")
	a, b := e.f.addCoin(t, 0, 1, 200_000), e.f.addCoin(t, 0, 2, 200_000)
	first := e.mustSign(t, []wire.OutPoint{a}, 90_000)
	height := e.facts.Mine(e.now, first, a)
	coin := e.f.chain.Coins[a]
	delete(e.f.chain.Coins, a)
	e.tick(t)
	if got := e.state(t, first); got != store.LedgerConfirmed {
		t.Fatalf("after its proven confirmation the entry is %s, want confirmed", got)
	}
	e.now = e.now.Add(day + time.Second)
	e.tick(t)
	second := e.mustSign(t, []wire.OutPoint{b}, 90_000) // the first is out of the window
	// The server hides the confirmed spend: the coin looks unspent again, no proof is offered.
	e.facts.Hide(a)
	e.f.chain.Coins[a] = coin
	e.tick(t)
	if got := e.state(t, first); got != store.LedgerConfirmed {
		t.Fatalf("after the server hid the confirmed spend the entry is %s, want confirmed", got)
	}
	// A reorg of our own header chain below its block does make it outstanding again.
	e.facts.Reorg(height - 1)
	e.tick(t)
	if got := e.state(t, first); got != store.LedgerOutstanding {
		t.Fatalf("after a reorg took its block away the entry is %s, want outstanding", got)
	}
	if got := e.state(t, second); got != store.LedgerOutstanding {
		t.Fatalf("second is %s", got)
	}
	c := e.f.addCoin(t, 0, 3, 200_000)
	e.mustRefuse(t, []wire.OutPoint{c}, 1_000, "velocity_1d")
}

// A transaction's input spent by a different, proven transaction ends its exposure; a mempool
// conflict does not.
func TestConfirmedConflictInvalidates(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 100000 sat}]\n")
	a, b := e.f.addCoin(t, 0, 1, 200_000), e.f.addCoin(t, 0, 2, 200_000)
	first := e.mustSign(t, []wire.OutPoint{a}, 90_000)
	other := chainhash.Hash{0x42}
	e.facts.Mine(e.now, other.String(), a)
	delete(e.f.chain.Coins, a)
	e.tick(t)
	if got := e.state(t, first); got != store.LedgerInvalidated {
		t.Fatalf("after a conflicting transaction confirmed the entry is %s, want invalidated", got)
	}
	e.mustSign(t, []wire.OutPoint{b}, 90_000)
}

// An RBF fee bump and its original count once (the larger outflow) while both are outstanding.
func TestFeeBumpCountedOnce(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 100000 sat}]\n")
	a, b, c := e.f.addCoin(t, 0, 1, 200_000), e.f.addCoin(t, 0, 2, 200_000), e.f.addCoin(t, 0, 3, 200_000)
	e.mustSign(t, []wire.OutPoint{a}, 59_000) // 60,000
	e.mustSign(t, []wire.OutPoint{a}, 69_000) // its bump: 70,000; counted once → 70,000
	e.mustRefuse(t, []wire.OutPoint{b}, 30_000, "velocity_1d")
	e.mustSign(t, []wire.OutPoint{b}, 28_000) // 70,000 + 29,000 ≤ 100,000
	// A transaction spending the inputs of both replaces neither for counting: if it never
	// confirms, the bump of a and b can both still confirm (99,000).
	e.mustSign(t, []wire.OutPoint{a, b, c}, 2_000)
	ex, err := ExposureAt(context.Background(), e.db, []time.Duration{day}, e.now)
	if err != nil || ex[day] != 99_000 {
		t.Fatalf("exposure %v, %v; want 99000", ex, err)
	}
	d := e.f.addCoin(t, 0, 4, 200_000)
	e.mustRefuse(t, []wire.OutPoint{d}, 1_000, "velocity_1d")
}

// The worked example: a 30-day window of 1 BTC. Day 0: 0.8 BTC signed, not broadcast. Day 40:
// a 0.5 BTC request is refused, the day-0 signature still outstanding. Day 41: the day-0
// transaction confirms; it counts at day 41 until day 71.
func TestExposureWorkedExample(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 2 BTC\n  velocity: [{window: 30d, max: 1 BTC}]\n")
	day0 := e.now
	a, b := e.f.addCoin(t, 0, 1, 90_000_000), e.f.addCoin(t, 0, 2, 60_000_000)
	first := e.mustSign(t, []wire.OutPoint{a}, 79_999_000) // 0.8 BTC with the fee
	e.now = day0.Add(40 * day)
	e.tick(t)
	e.mustRefuse(t, []wire.OutPoint{b}, 49_999_000, "velocity_30d")
	e.now = day0.Add(41 * day)
	e.facts.Mine(e.now, first, a)
	delete(e.f.chain.Coins, a)
	e.tick(t)
	r, _, _ := e.db.LedgerEntry(context.Background(), first)
	if r.State != store.LedgerConfirmed || !r.ConfAt.Equal(day0.Add(41*day)) {
		t.Fatalf("entry %+v, want confirmed counting at day 41", r)
	}
	e.mustRefuse(t, []wire.OutPoint{b}, 49_999_000, "velocity_30d")
	e.now = day0.Add(71*day - time.Second)
	e.tick(t)
	e.mustRefuse(t, []wire.OutPoint{b}, 49_999_000, "velocity_30d")
	e.now = day0.Add(71*day + time.Second)
	e.tick(t)
	e.mustSign(t, []wire.OutPoint{b}, 49_999_000)
}

// A block whose header time is before the signing time (miners' clocks) never counts a
// confirmation earlier than the signature.
func TestConfirmationNeverCountsBeforeSigning(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 100000 sat}]\n")
	a := e.f.addCoin(t, 0, 1, 200_000)
	first := e.mustSign(t, []wire.OutPoint{a}, 90_000)
	e.facts.Mine(e.now.Add(-3*day), first, a)
	e.tick(t)
	r, _, _ := e.db.LedgerEntry(context.Background(), first)
	if r.State != store.LedgerConfirmed || r.ConfAt.Before(r.At) {
		t.Fatalf("entry %+v: confirmed before it was signed", r)
	}
}

func TestOutstandingExposureGroups(t *testing.T) {
	rs := func(xs ...any) []store.Reservation {
		var out []store.Reservation
		for i := 0; i < len(xs); i += 2 {
			out = append(out, store.Reservation{TxID: fmt.Sprint(i), OutflowSat: int64(xs[i].(int)), Inputs: strings.Split(xs[i+1].(string), ",")})
		}
		return out
	}
	cases := []struct {
		name string
		in   []store.Reservation
		want btcutil.Amount
	}{
		{"empty", nil, 0},
		{"unrelated", rs(10, "a", 20, "b"), 30},
		{"bump", rs(10, "a", 20, "a"), 20},
		{"one replaces two", rs(10, "a", 20, "b", 25, "a,b"), 30},
		{"chain", rs(10, "a", 20, "a,b", 15, "b"), 25},
		{"two groups", rs(10, "a", 20, "a", 5, "c"), 25},
	}
	var bumps16, bumps17 []store.Reservation
	for i := range maxExactGroup + 1 {
		r := store.Reservation{TxID: fmt.Sprint("b", i), OutflowSat: 10, Inputs: []string{"a"}}
		if i < maxExactGroup {
			bumps16 = append(bumps16, r)
		}
		bumps17 = append(bumps17, r)
	}
	cases = append(cases, struct {
		name string
		in   []store.Reservation
		want btcutil.Amount
	}{"16 bumps: exact", bumps16, 10}, struct {
		name string
		in   []store.Reservation
		want btcutil.Amount
	}{"17 bumps: never less (the sum)", bumps17, 170})
	for _, c := range cases {
		if got := OutstandingExposure(c.in); got != c.want {
			t.Errorf("%s: %d, want %d", c.name, got, c.want)
		}
	}
}

// BenchmarkOutstandingExposure: 1,000 outstanding transactions, in fee-bump chains of three and
// one worst-case group of maxExactGroup transactions that share inputs pairwise along a path.
func BenchmarkOutstandingExposure(b *testing.B) {
	var rs []store.Reservation
	for i := range 1000 - maxExactGroup {
		rs = append(rs, store.Reservation{TxID: fmt.Sprint(i), OutflowSat: int64(1000 + i), Inputs: []string{fmt.Sprint("c", i/3)}})
	}
	for i := range maxExactGroup {
		rs = append(rs, store.Reservation{TxID: fmt.Sprint("p", i), OutflowSat: 500, Inputs: []string{fmt.Sprint("p", i), fmt.Sprint("p", i+1)}})
	}
	b.ReportAllocs()
	for b.Loop() {
		OutstandingExposure(rs)
	}
}
