package psbtflow

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// request is a sign_psbt call from the env's client for a transaction spending ins that pays pay
// (outflow pay + 1,000 sat fee), under id; it returns the call and the unsigned txid.
func (e *exposureEnv) request(t *testing.T, id string, ins []wire.OutPoint, pay btcutil.Amount) (nip46.Call, string) {
	t.Helper()
	var total btcutil.Amount
	for _, op := range ins {
		total += e.f.chain.Coins[op].Value
	}
	p := e.f.buildPSBT(t, ins, pay, total-pay-1_000, 3)
	s, err := psbt.Encode(p, psbt.Base64)
	if err != nil {
		t.Fatal(err)
	}
	return nip46.Call{Client: e.client, ID: id, Method: "sign_psbt", Params: []string{s}}, p.UnsignedTx.TxHash().String()
}

// TestConcurrentRequestsAtTheLimitNeverOvercommit: many requests, each spending its own coin,
// reach the exposure check at the same moment (a barrier holds every one after its analysis until
// all have arrived), under a velocity limit that only k of them fit under. Exactly k are signed,
// the others refused by the window, and the exposure never exceeds the limit: reading the
// exposure and reserving the new transaction is one step. (Reading the exposure and then
// reserving in a second step lets every one of them read 0 and sign.)
func TestConcurrentRequestsAtTheLimitNeverOvercommit(t *testing.T) {
	const n, k, outflow = 24, 5, 10_000 // each request: 9,000 paid + 1,000 fee
	e := newExposureEnv(t, fmt.Sprintf("  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: %d sat}]\n", k*outflow+outflow-1))
	calls := make([]nip46.Call, n)
	for i := range calls {
		op := e.f.addCoin(t, 0, uint32(i%20), btcutil.Amount(100_000+i))
		calls[i], _ = e.request(t, fmt.Sprint("c", i), []wire.OutPoint{op}, outflow-1_000)
	}
	var arrived sync.WaitGroup
	arrived.Add(n)
	all := make(chan struct{})
	go func() { arrived.Wait(); close(all) }()
	e.svc.onDecide = func(nip46.Call) { arrived.Done(); <-all }

	errs := make([]error, n)
	var done sync.WaitGroup
	for i := range calls {
		done.Add(1)
		go func() {
			defer done.Done()
			_, errs[i] = e.svc.SignPSBT(context.Background(), calls[i])
		}()
	}
	done.Wait()
	signed := 0
	for i, err := range errs {
		switch {
		case err == nil:
			signed++
		case !strings.Contains(err.Error(), "velocity_1d"):
			t.Fatalf("request %d: %v; want signed or refused by velocity_1d", i, err)
		}
	}
	if signed != k {
		t.Fatalf("%d of %d concurrent requests signed under a limit that fits %d", signed, n, k)
	}
	ex, err := ExposureAt(context.Background(), e.db, []time.Duration{day}, e.now)
	if err != nil || ex[day] != k*outflow {
		t.Fatalf("exposure %v, %v; want %d", ex, err, k*outflow)
	}
	bookMatchesStore(t, e.svc, e.db, e.now, day)
}

// TestIndependentDecisionsDoNotWait: a decision held up after its analysis (for as long as the
// test likes) does not hold up another client's request for other coins: it is decided and
// answered meanwhile. (A lock over the whole decision would leave the second request waiting
// for ever, and the test with it.)
func TestIndependentDecisionsDoNotWait(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 1 BTC}]\n")
	slow, _ := e.request(t, "slow", []wire.OutPoint{e.f.addCoin(t, 0, 1, 200_000)}, 50_000)
	fast, _ := e.request(t, "fast", []wire.OutPoint{e.f.addCoin(t, 0, 2, 200_000)}, 50_000)
	inside, release := make(chan struct{}), make(chan struct{})
	e.svc.onDecide = func(c nip46.Call) {
		if c.ID == "slow" {
			close(inside)
			<-release
		}
	}
	slowErr := make(chan error, 1)
	go func() { _, err := e.svc.SignPSBT(context.Background(), slow); slowErr <- err }()
	<-inside
	if _, err := e.svc.SignPSBT(context.Background(), fast); err != nil {
		t.Fatalf("the independent request: %v", err)
	}
	close(release)
	if err := <-slowErr; err != nil {
		t.Fatalf("the held-up request: %v", err)
	}
}

// TestRepeatedRequestWaitsForItsFirstDecision: the same (client, id) sent twice at once is
// decided once: the repeat waits for the first decision and gets the same answer from the store.
func TestRepeatedRequestWaitsForItsFirstDecision(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n")
	call, _ := e.request(t, "same", []wire.OutPoint{e.f.addCoin(t, 0, 1, 200_000)}, 50_000)
	var decisions sync.Mutex
	n := 0
	inside, release := make(chan struct{}), make(chan struct{})
	e.svc.onDecide = func(nip46.Call) {
		decisions.Lock()
		n++
		first := n == 1
		decisions.Unlock()
		if first {
			close(inside)
			<-release
		}
	}
	type answer struct {
		out string
		err error
	}
	first := make(chan answer, 1)
	go func() { out, err := e.svc.SignPSBT(context.Background(), call); first <- answer{out, err} }()
	<-inside
	second := make(chan answer, 1)
	go func() { out, err := e.svc.SignPSBT(context.Background(), call); second <- answer{out, err} }()
	close(release)
	a, b := <-first, <-second
	if a.err != nil || b.err != nil || a.out != b.out {
		t.Fatalf("answers differ: %v / %v", a.err, b.err)
	}
	if n != 1 {
		t.Fatalf("the request was decided %d times", n)
	}
}

// TestRequestNotBlockedByReconcile: while a sweep of the spend exposure is under way (held at
// its hook for as long as the test likes), a request is decided and answered.
func TestRequestNotBlockedByReconcile(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 1 BTC}]\n")
	e.facts.Mine(e.now, chainhash.Hash{0x11}.String())
	call, _ := e.request(t, "r", []wire.OutPoint{e.f.addCoin(t, 0, 1, 200_000)}, 50_000)
	inside, release := make(chan struct{}), make(chan struct{})
	e.svc.onReconcile = func() { close(inside); <-release }
	swept := make(chan error, 1)
	go func() { swept <- e.svc.ReconcileExposure(context.Background()) }()
	<-inside
	if _, err := e.svc.SignPSBT(context.Background(), call); err != nil {
		t.Fatalf("request during a reconcile: %v", err)
	}
	close(release)
	if err := <-swept; err != nil {
		t.Fatal(err)
	}
}

// TestExposureFollowsChainEvents: the exposure moves on chain events alone, without a sweep,
// and only the entries an event names or watches move: a proven confirmation of a spent coin
// settles its entry at the Spent event; a mempool spend is watched and settled by the block that
// proves a conflicting transaction (NewTip); a reorg (NewTip with Reorged) reopens what was
// settled above the fork; an entry whose spend no event reported is left to the sweep. After
// every step the book counts what the store says.
func TestExposureFollowsChainEvents(t *testing.T) {
	ctx := context.Background()
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 300000 sat}]\n")
	a, b, c := e.f.addCoin(t, 0, 1, 200_000), e.f.addCoin(t, 0, 2, 200_000), e.f.addCoin(t, 0, 3, 200_000)
	first := e.mustSign(t, []wire.OutPoint{a}, 90_000)  // 91,000
	second := e.mustSign(t, []wire.OutPoint{b}, 90_000) // 91,000
	third := e.mustSign(t, []wire.OutPoint{c}, 90_000)  // 91,000
	spent := func(op wire.OutPoint, by string) chainwatch.Spent {
		h, _ := chainhash.NewHashFromStr(by)
		coin := e.f.chain.Coins[op]
		delete(e.f.chain.Coins, op)
		return chainwatch.Spent{OutPoint: op, UTXO: chainwatch.UTXO{OutPoint: op, Value: coin.Value, PkScript: coin.PkScript}, SpentBy: h}
	}
	handle := func(ev chainwatch.Event) {
		t.Helper()
		if err := e.svc.HandleChainEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		bookMatchesStore(t, e.svc, e.db, e.now, day)
	}
	// first is mined; its Spent event arrives with the proof already checked.
	height := e.facts.Mine(e.now, first, a)
	handle(spent(a, first))
	if got := e.state(t, first); got != store.LedgerConfirmed {
		t.Fatalf("first after its proven spend: %s, want confirmed", got)
	}
	// b is spent in the mempool by another transaction: watched, still outstanding.
	other := chainhash.Hash{0x42}.String()
	handle(spent(b, other))
	if got := e.state(t, second); got != store.LedgerOutstanding {
		t.Fatalf("second after a mempool spend: %s, want outstanding", got)
	}
	// c is spent by third and mined, but no Spent event says so (yet).
	e.facts.Mine(e.now, third, c)
	// The block proving the conflicting spend of b arrives.
	e.facts.Mine(e.now, other, b)
	handle(chainwatch.NewTip{Tip: e.facts.Tip()})
	if got := e.state(t, second); got != store.LedgerInvalidated {
		t.Fatalf("second after a conflicting spend was proven: %s, want invalidated", got)
	}
	if got := e.state(t, third); got != store.LedgerOutstanding {
		t.Fatalf("third moved on an event that did not name or watch it: %s", got)
	}
	// A reorg below first's block takes every later block away too: first and second are
	// outstanding again.
	e.facts.Reorg(height - 1)
	handle(chainwatch.NewTip{Tip: e.facts.Tip(), Fork: height - 1, Reorged: true})
	if got := e.state(t, first); got != store.LedgerOutstanding {
		t.Fatalf("first after a reorg took its block away: %s, want outstanding", got)
	}
	if got := e.state(t, second); got != store.LedgerOutstanding {
		t.Fatalf("second after a reorg took its invalidation's block away: %s, want outstanding", got)
	}
	// third is mined in the new chain; the sweep finds what no event reported.
	e.facts.Mine(e.now, third, c)
	if err := e.svc.ReconcileExposure(ctx); err != nil {
		t.Fatal(err)
	}
	bookMatchesStore(t, e.svc, e.db, e.now, day)
	if got := e.state(t, third); got != store.LedgerConfirmed {
		t.Fatalf("third after a sweep: %s, want confirmed", got)
	}
	// first and second (outstanding) and third (confirmed now): 273,000; 27,000 fit.
	d := e.f.addCoin(t, 0, 4, 200_000)
	e.mustRefuse(t, []wire.OutPoint{d}, 26_001, "velocity_1d")
	e.mustSign(t, []wire.OutPoint{d}, 26_000)
}

// failingLedger fails LedgerEntry while fail is set (a disk error on the read-back).
type failingLedger struct {
	*store.DB
	mu   sync.Mutex
	fail bool
}

func (f *failingLedger) LedgerEntry(ctx context.Context, txid string) (store.Reservation, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail {
		return store.Reservation{}, false, errors.New("disk I/O error")
	}
	return f.DB.LedgerEntry(ctx, txid)
}

// TestUnreadableCommitKeepsCounting: when a signed decision's entry cannot be read back after
// its commit, its reservation keeps counting (the next request over the limit is refused) until
// the book is rebuilt from the store, which has it.
func TestUnreadableCommitKeepsCounting(t *testing.T) {
	e := newExposureEnv(t, "  max_per_tx: 1 BTC\n  velocity: [{window: 1d, max: 100000 sat}]\n")
	fl := &failingLedger{DB: e.db}
	e.svc.db = fl
	a, b, c := e.f.addCoin(t, 0, 1, 200_000), e.f.addCoin(t, 0, 2, 200_000), e.f.addCoin(t, 0, 3, 200_000)
	fl.fail = true
	e.mustSign(t, []wire.OutPoint{a}, 59_000) // 60,000, committed; the read-back fails
	fl.fail = false
	e.mustRefuse(t, []wire.OutPoint{b}, 49_000, "velocity_1d") // 60,000 + 50,000 > 100,000
	bookMatchesStore(t, e.svc, e.db, e.now, day)
	e.mustSign(t, []wire.OutPoint{c}, 39_000)
}
