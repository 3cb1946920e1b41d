package outbound

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/store"
)

// orderStore records the proposals the engine reads one by one (GetProposal), in order.
type orderStore struct {
	*store.DB
	mu   sync.Mutex
	read []string
}

func (s *orderStore) GetProposal(ctx context.Context, id string) (store.Proposal, error) {
	s.mu.Lock()
	s.read = append(s.read, id)
	s.mu.Unlock()
	return s.DB.GetProposal(ctx, id)
}

// A proposal fired by a chain event is stepped first, before the pass over the proposals
// already in flight, and that pass does not step it again.
func TestStepWokenProposalFirst(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	os := &orderStore{DB: e.db}
	eng, err := NewEngine(Config{Descriptor: e.f.Desc, Store: os, Policy: func() *policy.Policy { return e.pol }, Signer: e.svc, Chain: e.chain,
		Asker: e.co, Now: func() time.Time { return e.now }, Logger: e.eng.log})
	if err != nil {
		t.Fatal(err)
	}
	// Two proposals in flight, stored before (not woken); then a deposit confirms.
	for _, i := range []uint32{2, 3} {
		if err := eng.fire(ctx, FundingFirings(e.pol.Automations, e.deposit(t, i, 150_000))); err != nil {
			t.Fatal(err)
		}
	}
	ev := e.deposit(t, 4, 150_000)
	if err := eng.HandleEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	id := ProposalID("sweep", FundingKey(policy.TriggerFundingConfirmed, ev.UTXO.OutPoint))
	e.co.hang = true // no answers: only the runner reads
	sctx, cancel := context.WithCancel(ctx)
	eng.Step(sctx)
	cancel()
	eng.wg.Wait()
	os.mu.Lock()
	read := slices.Clone(os.read)
	os.mu.Unlock()
	if len(read) < 3 || read[0] != id {
		t.Fatalf("read %v, want the woken proposal %s first", read, id)
	}
	// Stepped in a row (built, signed, asked — one read each), not again by the pass.
	if n := countOf(read[:3], id); n != 3 || countOf(read[3:], id) != 0 || len(read) == 3 {
		t.Fatalf("read %v: want the woken proposal's three steps, then the others'", read)
	}
}

func countOf(ss []string, s string) int {
	n := 0
	for _, x := range ss {
		if x == s {
			n++
		}
	}
	return n
}

// The co-signer's answer that completes the threshold is stored with the finalized transaction:
// no further step is needed before the broadcast.
func TestEngineAnswerFinalizesAtOnce(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	_, id := e.fund(t, 2, 150_000)
	e.eng.Step(ctx) // built, signed here, asked
	e.settle()      // the answer
	p, err := e.db.GetProposal(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if p.State != string(StateFinalized) || p.TxID == "" || len(p.FinalTx) == 0 {
		t.Fatalf("after the answer: %s (txid %q)", p.State, p.TxID)
	}
	tl, _ := e.db.ProposalTimeline(ctx, id)
	n := len(tl)
	if n < 2 || tl[n-2].Event != "answered" || tl[n-1].Event != "finalized" || !tl[n-1].At.Equal(tl[n-2].At) {
		t.Fatalf("timeline %v", e.timeline(t, id))
	}
	e.until(t, id, StateBroadcast)
}

// runEngine runs eng until the test ends.
func runEngine(t *testing.T, eng *Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); eng.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// waitState waits (at most a minute: a liveness bound, not a speed measure) until proposal id
// is in state.
func (e *engineEnv) waitState(t *testing.T, id string, state ProposalState) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if p, err := e.db.GetProposal(context.Background(), id); err == nil && p.State == string(state) {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	p, _ := e.db.GetProposal(context.Background(), id)
	t.Fatalf("proposal %s is %s (%s), never reached %s", id, p.State, p.Reason, state)
}

// A co-signer asked again (it failed, or its chain view lagged) is asked when the retry falls
// due, woken by a timer: the runner's tick (an hour here) is not waited for.
func TestEngineRetryWokenWithoutTick(t *testing.T) {
	for _, c := range []struct {
		name string
		set  func(co *localCosigner)
	}{
		{"transport failure", func(co *localCosigner) { co.fail = 1 }},
		{"chain view lags", func(co *localCosigner) { co.lag = 2 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
			c.set(e.co)
			eng := e.engine(t, Config{Asker: e.co, Now: time.Now, Tick: time.Hour, RetryAfter: 20 * time.Millisecond})
			e.eng = eng
			runEngine(t, eng)
			_, id := e.fund(t, 2, 150_000)
			e.waitState(t, id, StateBroadcast)
			e.co.mu.Lock()
			defer e.co.mu.Unlock()
			if len(e.co.asked) < 2 {
				t.Fatalf("asked %v", e.co.asked)
			}
		})
	}
}

// warmAsker is a co-signer asker that can connect ahead of time.
type warmAsker struct {
	*localCosigner
	mu     sync.Mutex
	warmed []string
}

func (w *warmAsker) Warm(_ context.Context, uri string) error {
	w.mu.Lock()
	w.warmed = append(w.warmed, uri)
	w.mu.Unlock()
	return nil
}

func (w *warmAsker) calls() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.warmed)
}

// The engine connects to its automations' co-signers when it starts (and again, for a deposit
// seen, to any it is not connected to), so that the first request of a proposal goes out at
// once; a co-signer is connected once.
func TestEngineWarmsCosigners(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	w := &warmAsker{localCosigner: e.co}
	eng := e.engine(t, Config{Asker: w, Now: time.Now, Tick: time.Hour})
	e.eng = eng
	runEngine(t, eng)
	deadline := time.Now().Add(time.Minute)
	for len(w.calls()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := w.calls(); !slices.Equal(got, []string{bunkerB}) {
		t.Fatalf("Warm calls %v, want one for the co-signer when the engine starts", got)
	}
	// A deposit seen asks for the connection again: the co-signer is connected already.
	ev := e.deposit(t, 2, 150_000)
	if err := eng.HandleEvent(context.Background(), chainwatch.FundingSeen{UTXO: ev.UTXO}); err != nil {
		t.Fatal(err)
	}
	_, id := e.fund(t, 3, 150_000)
	e.waitState(t, id, StateBroadcast)
	if got := w.calls(); !slices.Equal(got, []string{bunkerB}) {
		t.Fatalf("Warm calls %v, want one for the co-signer", got)
	}
}
