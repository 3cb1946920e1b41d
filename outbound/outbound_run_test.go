package outbound

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/testfakes"
	"github.com/custodyagents/cosigner/internal/wallettest"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

// outChain is the fixture's wallet view as the engine reads it, with a mempool and blocks:
// Broadcast takes the inputs out of the UTXO set and puts the transaction in the mempool; mine
// confirms the mempool at the next height.
type outChain struct {
	*wallettest.Chain
	mu        sync.Mutex
	txs       map[chainhash.Hash]chainwatch.TxState
	mempool   []*wire.MsgTx
	sent      []*wire.MsgTx
	all       map[chainhash.Hash]*wire.MsgTx
	feerate   float64
	estimates int                        // EstimateFee calls
	broadcast func(tx *wire.MsgTx) error // optional: refuse
}

func newOutChain(f *wallettest.Wallet) *outChain {
	return &outChain{Chain: f.Chain, txs: map[chainhash.Hash]chainwatch.TxState{}, all: map[chainhash.Hash]*wire.MsgTx{}, feerate: 3}
}

func (c *outChain) Coin(op wire.OutPoint) (psbt.Coin, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Chain.Coin(op)
}

func (c *outChain) SpendableUTXOs() []chainwatch.UTXO {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []chainwatch.UTXO
	for op, x := range c.Coins {
		out = append(out, chainwatch.UTXO{OutPoint: op, Value: x.Value, PkScript: x.PkScript, Branch: x.Branch, Index: x.Index, Height: x.Height})
	}
	slices.SortFunc(out, func(a, b chainwatch.UTXO) int { return strings.Compare(a.OutPoint.String(), b.OutPoint.String()) })
	return out
}

func (c *outChain) Tx(txid chainhash.Hash) (chainwatch.TxState, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.txs[txid]
	return st, ok
}

func (c *outChain) Tip() chainwatch.Tip { return chainwatch.Tip{Height: c.Height} }

func (c *outChain) Broadcast(_ context.Context, tx *wire.MsgTx) (chainhash.Hash, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broadcast != nil {
		if err := c.broadcast(tx); err != nil {
			return chainhash.Hash{}, err
		}
	}
	c.sent = append(c.sent, tx)
	if _, ok := c.txs[tx.TxHash()]; ok {
		return chainhash.Hash{}, fmt.Errorf("chainwatch: %w", electrum.ErrTxAlreadyKnown)
	}
	for _, in := range tx.TxIn {
		if _, ok := c.Coins[in.PreviousOutPoint]; !ok && c.spender(in.PreviousOutPoint) < 0 {
			return chainhash.Hash{}, fmt.Errorf("chainwatch: %w", electrum.ErrMissingInputs)
		}
	}
	for _, in := range tx.TxIn {
		delete(c.Coins, in.PreviousOutPoint)
		if i := c.spender(in.PreviousOutPoint); i >= 0 { // BIP-125 replacement
			delete(c.txs, c.mempool[i].TxHash())
			c.mempool = slices.Delete(c.mempool, i, i+1)
		}
	}
	c.txs[tx.TxHash()] = chainwatch.TxState{TxID: tx.TxHash()}
	c.all[tx.TxHash()] = tx
	c.mempool = append(c.mempool, tx)
	return tx.TxHash(), nil
}

// spender is the index in the mempool of the transaction spending op, or -1.
func (c *outChain) spender(op wire.OutPoint) int {
	return slices.IndexFunc(c.mempool, func(tx *wire.MsgTx) bool {
		return slices.ContainsFunc(tx.TxIn, func(in *wire.TxIn) bool { return in.PreviousOutPoint == op })
	})
}

func (c *outChain) EstimateFee(context.Context, int) electrum.FeeEstimate {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.estimates++
	return electrum.FeeEstimate{Rate: electrum.FeeRate(c.feerate), Estimated: true}
}

// mine confirms the mempool in a new block.
func (c *outChain) mine() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.Height++
	for _, tx := range c.mempool {
		c.txs[tx.TxHash()] = chainwatch.TxState{TxID: tx.TxHash(), Height: c.Height, Verified: true}
	}
	c.mempool = nil
}

// reorg takes the last block away: its transactions go back to the mempool.
func (c *outChain) reorg() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, st := range c.txs {
		if st.Height == c.Height {
			c.txs[id] = chainwatch.TxState{TxID: id}
			c.mempool = append(c.mempool, c.all[id])
		}
	}
	c.Height--
}

// localCosigner is a co-signer reached in-process: a real Service with its own key, policy and
// store, asked as a NIP-46 client would (the real transport is tested with cosign's Coordinator).
type localCosigner struct {
	svc    *psbtflow.Service
	client string
	mu     sync.Mutex
	asked  []string // request ids
	down   bool
	// hang makes Ask wait for its context (a co-signer that never answers); cancelled counts
	// the asks that ended that way.
	hang      bool
	cancelled int
	// lag answers that many requests with input_unspent (its watcher has not seen the coin);
	// fail that many with a transport error.
	lag, fail int
	// raw, when set, signs instead of the Service (like the wallet's offline key C in BDK).
	raw func(p *btcpsbt.Packet) error
}

func (l *localCosigner) Ask(ctx context.Context, _ string, id string, p *btcpsbt.Packet, onHeld func(string)) (*btcpsbt.Packet, error) {
	l.mu.Lock()
	l.asked = append(l.asked, id)
	down, hang := l.down, l.hang
	l.mu.Unlock()
	if down {
		return nil, errors.New("relays unreachable")
	}
	l.mu.Lock()
	fail := l.fail > 0
	if fail {
		l.fail--
	}
	l.mu.Unlock()
	if fail {
		return nil, errors.New("relays unreachable")
	}
	if l.lag > 0 {
		l.mu.Lock()
		l.lag--
		l.mu.Unlock()
		return nil, fmt.Errorf("co-signer bb: %w", &Refusal{ViewLag: true,
			Text: "unsafe_psbt: input_unspent: input 0 (x:0) pays one of this wallet's scripts but is not unspent on the chain (already spent, or not yet seen)"})
	}
	if hang {
		<-ctx.Done()
		l.mu.Lock()
		l.cancelled++
		l.mu.Unlock()
		return nil, ctx.Err()
	}
	if l.raw != nil {
		return p, l.raw(p)
	}
	text, err := psbt.Encode(p, psbt.Base64)
	if err != nil {
		return nil, err
	}
	res, err := l.svc.SignPSBT(ctx, nip46.Call{Client: l.client, ID: id, Method: "sign_psbt", Params: []string{text}})
	var me *nip46.MethodError
	if errors.As(err, &me) {
		return nil, &Refusal{Text: me.Error(), Passing: me.Code == nip46.CodeInternal || me.Code == nip46.CodeRateLimited}
	}
	if err != nil {
		return nil, err
	}
	out, _, err := psbt.Decode(res)
	return out, err
}

type noticeLog struct {
	mu  sync.Mutex
	got []Notice
}

func (n *noticeLog) Notify(_ context.Context, x Notice) {
	n.mu.Lock()
	n.got = append(n.got, x)
	n.mu.Unlock()
}

func (n *noticeLog) kinds() []NoticeKind {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []NoticeKind
	for _, x := range n.got {
		out = append(out, x.Kind)
	}
	return out
}

type engineEnv struct {
	f     *wallettest.Wallet
	chain *outChain
	db    *store.DB
	pol   *policy.Policy
	svc   *psbtflow.Service
	eng   *Engine
	co    *localCosigner
	coPol *policy.Policy
	notes *noticeLog
	now   time.Time
	dest  []byte
	auto  policy.Automation
}

const bunkerB = "bunker://" + "bb" + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" + "?relay=ws://127.0.0.1:1&secret=s3cret"

// newEngineEnv makes A (key 1, the engine) and B (key 0, a local co-signer) of the fixture's
// 2-of-3 wallet. rulesA / limitsB are policy fragments; optsA configure A's Service.
func newEngineEnv(t *testing.T, rulesA, limitsB string, optsA ...psbtflow.Option) *engineEnv {
	t.Helper()
	e := &engineEnv{f: wallettest.New(t), notes: &noticeLog{}, now: time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)}
	e.chain = newOutChain(e.f)
	var err error
	open := func(name string) *store.DB {
		db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	e.db = open("a.db")
	someClient, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	if e.pol, err = policy.Parse("a.yaml", []byte("version: 1\nclients:\n  - {name: app, pubkey: "+someClient+"}\nlimits:\n  max_per_tx: 1 BTC\n"+rulesA)); err != nil {
		t.Fatal(err)
	}
	e.dest, _ = txscript.PayToAddrScript(wallettest.ExternalAddr)
	e.auto = policy.Automation{Name: "sweep", Trigger: policy.Trigger{Kind: policy.TriggerFundingConfirmed, Confirmations: 1},
		Action: policy.Action{Kind: policy.ActionSweep, To: policy.Destination{Text: wallettest.ExternalAddr.String(), PkScript: e.dest}},
		Fee:    policy.FeeStrategy{TargetBlocks: 6, MaxFeeRate: 50, Fallback: 2}, Cosigners: []string{bunkerB}, Timeout: time.Minute, BumpAfter: 3}
	e.pol.Automations = []policy.Automation{e.auto}
	clock := func() time.Time { return e.now }
	e.svc, err = psbtflow.NewService(e.f.Desc, e.f.Keys[1], e.chain, func() *policy.Policy { return e.pol }, e.db, wallettest.Quiet,
		append([]psbtflow.Option{psbtflow.WithClock(clock), psbtflow.WithReplaceable(Replaceable(e.db, e.chain))}, optsA...)...)
	if err != nil {
		t.Fatal(err)
	}
	e.co = &localCosigner{}
	e.co.client, _ = nostr.GetPublicKey(nostr.GeneratePrivateKey())
	if e.coPol, err = policy.Parse("b.yaml", []byte("version: 1\nclients:\n  - {name: a, pubkey: "+e.co.client+", methods: [sign_psbt]}\nlimits:\n"+limitsB)); err != nil {
		t.Fatal(err)
	}
	// B tells its own transactions' confirmations from the chain, as the daemon does from its
	// watcher (a coin spent by an unconfirmed one of them is replaceable).
	txConfirmed := func(txid chainhash.Hash) bool { st, ok := e.chain.Tx(txid); return ok && st.Verified && st.Height > 0 }
	if e.co.svc, err = psbtflow.NewService(e.f.Desc, e.f.Keys[0], e.chain, func() *policy.Policy { return e.coPol }, open("b.db"), wallettest.Quiet,
		psbtflow.WithClock(clock), psbtflow.WithTxConfirmed(txConfirmed)); err != nil {
		t.Fatal(err)
	}
	e.eng = e.engine(t, Config{Asker: e.co, Notifier: e.notes, Now: clock, RetryAfter: time.Nanosecond})
	return e
}

// engine returns an Engine of A over the env's wallet, store, policy, Service and chain, with
// cfg's asker, notifier, clock and timings.
func (e *engineEnv) engine(t *testing.T, cfg Config) *Engine {
	t.Helper()
	cfg.Descriptor, cfg.Store, cfg.Policy, cfg.Signer, cfg.Chain, cfg.Logger = e.f.Desc, e.db, func() *policy.Policy { return e.pol }, e.svc, e.chain, wallettest.Quiet
	eng, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return eng
}

// deposit puts a confirmed receive-branch coin in the wallet and returns its FundingConfirmed.
func (e *engineEnv) deposit(t *testing.T, index uint32, value btcutil.Amount) chainwatch.FundingConfirmed {
	op := e.f.AddCoin(t, 0, index, value)
	c := e.f.Chain.Coins[op]
	return chainwatch.FundingConfirmed{UTXO: chainwatch.UTXO{OutPoint: op, Value: c.Value, PkScript: c.PkScript, Branch: 0, Index: index, Height: c.Height}, Confs: 11}
}

// fund deposits a confirmed receive-branch coin of value at index, hands its FundingConfirmed
// to the engine, and returns the event and the id of the sweep proposal it fires.
func (e *engineEnv) fund(t *testing.T, index uint32, value btcutil.Amount) (chainwatch.FundingConfirmed, string) {
	t.Helper()
	ev := e.deposit(t, index, value)
	if err := e.eng.HandleEvent(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	return ev, ProposalID("sweep", FundingKey(policy.TriggerFundingConfirmed, ev.UTXO.OutPoint))
}

// settle waits until no co-signer request the engine started is in flight (their answers
// arrive on their own goroutines), except, while the co-signer hangs, the requests that wait
// for their cancellation. It waits on the requests, not on a clock.
func (e *engineEnv) settle() {
	for {
		e.co.mu.Lock()
		hang := e.co.hang
		e.co.mu.Unlock()
		e.eng.askMu.Lock()
		n := len(e.eng.asking)
		e.eng.askMu.Unlock()
		if n == 0 || hang {
			return
		}
		runtime.Gosched()
	}
}

// until steps the engine, each step's co-signer requests settled, until the proposal reaches
// state; it fails after many steps.
func (e *engineEnv) until(t *testing.T, id string, state ProposalState) store.Proposal {
	t.Helper()
	var p store.Proposal
	for range 2000 {
		e.eng.Step(context.Background())
		e.settle()
		var err error
		if p, err = e.db.GetProposal(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		if ProposalState(p.State) == state {
			return p
		}
	}
	t.Fatalf("proposal %s is %s (%s), never reached %s", id, p.State, p.Reason, state)
	return p
}

func (e *engineEnv) timeline(t *testing.T, id string) []string {
	t.Helper()
	tl, err := e.db.ProposalTimeline(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range tl {
		out = append(out, x.Event)
	}
	return out
}

func TestEngineSweepToConfirmed(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	ev := e.deposit(t, 2, 150_000)
	// A change output (branch 1) never fires: it could be our own sweep's change.
	change := ev
	change.UTXO.Branch = 1
	if err := e.eng.HandleEvent(ctx, change); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the same event twice (a restart re-delivers it): one proposal
		if err := e.eng.HandleEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	ps, _ := e.db.Proposals(ctx)
	if len(ps) != 1 || ps[0].TriggerKey != "funding_confirmed:"+ev.UTXO.OutPoint.String() || ps[0].ID != ProposalID("sweep", ps[0].TriggerKey) {
		t.Fatalf("proposals: %+v", ps)
	}
	id := ps[0].ID
	p := e.until(t, id, StateBroadcast)
	if len(e.chain.sent) != 1 {
		t.Fatalf("%d broadcasts", len(e.chain.sent))
	}
	tx := e.chain.sent[0]
	if tx.TxHash().String() != p.TxID || len(tx.TxIn) != 1 || tx.TxIn[0].PreviousOutPoint != ev.UTXO.OutPoint || len(tx.TxOut) != 1 ||
		string(tx.TxOut[0].PkScript) != string(e.dest) || tx.TxOut[0].Value != 150_000-p.FeeSat {
		t.Fatalf("broadcast tx %v does not sweep the deposit to the destination", tx)
	}
	// The signatures are valid: the final witness executes against the deposit.
	prev := txscript.NewCannedPrevOutputFetcher(ev.UTXO.PkScript, int64(ev.UTXO.Value))
	vm, err := txscript.NewEngine(ev.UTXO.PkScript, tx, 0, txscript.StandardVerifyFlags, nil, txscript.NewTxSigHashes(tx, prev), int64(ev.UTXO.Value), prev)
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.Execute(); err != nil {
		t.Fatalf("final witness: %v", err)
	}
	if p.FeeRate != 3 || p.FeeSat < 3*140 {
		t.Fatalf("fee %d sat at %v sat/vB", p.FeeSat, p.FeeRate)
	}
	// The co-signer was asked under the stored request id.
	cos, _ := e.db.ProposalCosigners(ctx, id)
	if len(cos) != 1 || cos[0].State != CosignerSigned || !slices.Contains(e.co.asked, cos[0].RequestID) {
		t.Fatalf("cosigners %+v, asked %v", cos, e.co.asked)
	}
	e.chain.mine()
	e.until(t, id, StateConfirmed)
	want := []string{"proposed", "built", "self_signed", "requested", "answered", "finalized", "broadcast", "notified", "confirmed", "notified"}
	if got := e.timeline(t, id); !slices.Equal(got, want) {
		t.Fatalf("timeline %v, want %v", got, want)
	}
	if got := e.notes.kinds(); !slices.Equal(got, []NoticeKind{NoticeBroadcast, NoticeConfirmed}) {
		t.Fatalf("notices %v", got)
	}
	// A reorg takes the block away: back to broadcast (sent again, never rebuilt), then
	// confirmed again.
	e.chain.reorg()
	e.until(t, id, StateBroadcast)
	e.chain.mine()
	e.until(t, id, StateConfirmed)
	if tl := e.timeline(t, id); !slices.Contains(tl, "reorged") || tl[len(tl)-2] != "confirmed" {
		t.Fatalf("timeline after the reorg %v", tl)
	}
	for _, s := range e.chain.sent {
		if s.TxHash() != tx.TxHash() {
			t.Fatalf("another transaction was broadcast: %s", s.TxHash())
		}
	}
	// Our own signature went through the policy path: one signed request, audited, reserved.
	rs, err := e.db.Reservations(ctx)
	if err != nil || len(rs) != 1 || rs[0].Client != "automation:sweep" || rs[0].TxID != p.UnsignedTxID {
		t.Fatalf("ledger %+v %v", rs, err)
	}
}

func TestEngineCosignerDenies(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 0.001 BTC\n")
	ctx := context.Background()
	_, id := e.fund(t, 2, 150_000)
	p := e.until(t, id, StateAbandoned)
	if !strings.HasPrefix(p.Reason, "policy_denied: ") || len(e.chain.sent) != 0 {
		t.Fatalf("reason %q, %d broadcasts", p.Reason, len(e.chain.sent))
	}
	cos, _ := e.db.ProposalCosigners(ctx, id)
	if len(cos) != 1 || cos[0].State != CosignerDenied {
		t.Fatalf("cosigners %+v", cos)
	}
	if got := e.notes.kinds(); !slices.Contains(got, NoticeDenied) || !slices.Contains(got, NoticeAbandoned) {
		t.Fatalf("notices %v", got)
	}
}

func TestEngineOwnPolicyDenies(t *testing.T) {
	e := newEngineEnv(t, "rules:\n  - {name: small_only, match: {max_outflow: 10000 sat}, action: allow}\n", "  max_per_tx: 1 BTC\n")
	_, id := e.fund(t, 2, 150_000)
	p := e.until(t, id, StateAbandoned)
	if !strings.HasPrefix(p.Reason, "policy_denied: ") || len(e.co.asked) != 0 || len(e.chain.sent) != 0 {
		t.Fatalf("reason %q, asked %v, sent %d", p.Reason, e.co.asked, len(e.chain.sent))
	}
}

func TestEngineHoldThenContinues(t *testing.T) {
	ans := &testfakes.Answers{}
	e := newEngineEnv(t, "rules:\n  - name: wait\n    action: hold\n    hold: {cooling_off: 1h}\n", "  max_per_tx: 1 BTC\n", psbtflow.WithResponder(ans))
	ctx := context.Background()
	_, id := e.fund(t, 2, 150_000)
	for range 3 {
		e.eng.Step(ctx)
	}
	p, _ := e.db.GetProposal(ctx, id)
	if p.State != string(StateProposed) || !slices.Contains(e.timeline(t, id), "held") || !slices.Contains(e.notes.kinds(), NoticeHeld) {
		t.Fatalf("state %s, timeline %v, notices %v", p.State, e.timeline(t, id), e.notes.kinds())
	}
	// The hold ends; no NIP-46 answer is published for the automation's own request.
	e.now = e.now.Add(2 * time.Hour)
	e.svc.Tick(ctx)
	e.until(t, id, StateBroadcast)
	e.svc.Tick(ctx)
	if got := ans.List(); len(got) != 0 {
		t.Fatalf("late answers published for an automation: %v", got)
	}
	if hs, err := e.db.UnrespondedHolds(ctx); err != nil || len(hs) != 0 {
		t.Fatalf("unresponded holds %v %v", hs, err)
	}
}

// Another transaction spends the proposal's coin before it is finalized: abandoned, nothing
// broadcast.
func TestEngineInputsSpentElsewhere(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	e.co.hang = true
	ev, id := e.fund(t, 2, 150_000)
	e.until(t, id, StateAwaitingCosigners)
	e.chain.mu.Lock()
	delete(e.chain.Coins, ev.UTXO.OutPoint)
	e.chain.mu.Unlock()
	p := e.until(t, id, StateAbandoned)
	if p.Reason != ReasonSpentElsewhere || len(e.chain.sent) != 0 {
		t.Fatalf("reason %q, %d sent", p.Reason, len(e.chain.sent))
	}
}

func TestEngineCancelBeforeFinalized(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	e.co.hang = true
	_, id := e.fund(t, 2, 150_000)
	e.until(t, id, StateAwaitingCosigners)
	// No answer for three timeouts: the operator hears that it is stuck (once).
	e.now = e.now.Add(3 * e.auto.Timeout)
	e.eng.Step(ctx)
	e.eng.Step(ctx)
	if got := e.notes.kinds(); !slices.Equal(got, []NoticeKind{NoticeStuck}) {
		t.Fatalf("notices %v", got)
	}
	if _, err := Cancel(ctx, e.db, id, ReasonCancelled, e.now); err != nil {
		t.Fatal(err)
	}
	// The request in flight is stopped at the next step (never answered here).
	e.co.mu.Lock()
	e.co.hang = false // settle waits for the hanging request too
	e.co.mu.Unlock()
	e.eng.Step(ctx)
	e.settle()
	e.co.mu.Lock()
	n := e.co.cancelled
	e.co.mu.Unlock()
	if n != 1 {
		t.Fatal("the co-signer request of a cancelled proposal was not stopped")
	}
	p, _ := e.db.GetProposal(ctx, id)
	if p.State != string(StateAbandoned) || p.Reason != ReasonCancelled || len(e.chain.sent) != 0 {
		t.Fatalf("after cancel: %s %q, %d sent", p.State, p.Reason, len(e.chain.sent))
	}
}

// A new engine over the same store (a restart after kill -9 between finalize and broadcast)
// broadcasts the stored transaction; it never builds or signs again.
func TestEngineRestartBroadcastsStoredTransaction(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	_, id := e.fund(t, 2, 150_000)
	refuse := errors.New("connection reset")
	e.chain.broadcast = func(*wire.MsgTx) error { return refuse }
	p := e.until(t, id, StateFinalized)
	e.chain.broadcast = nil
	asked := len(e.co.asked)
	restarted := e.engine(t, Config{Asker: e.co, Now: func() time.Time { return e.now }})
	e.eng = restarted
	q := e.until(t, id, StateBroadcast)
	if q.TxID != p.TxID || len(e.co.asked) != asked {
		t.Fatalf("rebuilt or re-asked: txid %s → %s, asked %d → %d", p.TxID, q.TxID, asked, len(e.co.asked))
	}
}

// Bump: unconfirmed bump_after blocks → a replacement of the same coins to the same
// destination at a higher feerate (BIP-125: more fee by at least the incremental relay fee),
// signed by this co-signer through its policy; when it confirms the original is replaced.
func TestEngineFeeBump(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	ev, id := e.fund(t, 2, 150_000)
	orig := e.until(t, id, StateBroadcast)
	// Three blocks without it (it stays in the mempool).
	pending := e.chain.mempool
	e.chain.mempool = nil
	for range 3 {
		e.chain.mine()
	}
	e.chain.mempool = pending
	e.chain.feerate = 4
	// B's watcher saw the original spend the deposit (a Spent event naming it): B co-signed
	// the original, so it analyses the replacement against that coin.
	orig0 := e.chain.sent[0]
	c := psbt.Coin{Value: ev.UTXO.Value, PkScript: ev.UTXO.PkScript, Branch: 0, Index: ev.UTXO.Index, Height: ev.UTXO.Height}
	e.co.svc.NoteSpentCoin(ev.UTXO.OutPoint, c, orig0.TxHash())
	// The network refuses the first bump as paying too little over the original (btcd's
	// incremental relay fee is its minrelaytxfee): it is abandoned and the next one pays more.
	refused := 0
	e.chain.broadcast = func(tx *wire.MsgTx) error {
		if tx.TxHash() != orig0.TxHash() && refused == 0 {
			refused++
			return fmt.Errorf("chainwatch: %w: insufficient fee", electrum.ErrFeeTooLow)
		}
		return nil
	}
	first := e.until(t, ProposalID("sweep", "bump:"+id), StateAbandoned)
	if !strings.HasPrefix(first.Reason, ReasonFeeTooLow) {
		t.Fatalf("first bump: %q", first.Reason)
	}
	bumpID := ProposalID("sweep", "bump:"+id+":2")
	b := e.until(t, bumpID, StateBroadcast)
	if b.FeeRate <= first.FeeRate || b.FeeSat <= first.FeeSat {
		t.Fatalf("second bump %.1f sat/vB (%d sat) after a refused %.1f (%d)", b.FeeRate, b.FeeSat, first.FeeRate, first.FeeSat)
	}
	bt := e.chain.sent[len(e.chain.sent)-1]
	if b.Replaces != id || b.FeeRate < orig.FeeRate+1 || b.FeeSat < orig.FeeSat+int64(bt.SerializeSizeStripped()) ||
		bt.TxIn[0].PreviousOutPoint != ev.UTXO.OutPoint || string(bt.TxOut[0].PkScript) != string(e.dest) {
		t.Fatalf("bump %+v of %+v", b, orig)
	}
	if tl := e.timeline(t, id); !slices.Contains(tl, "bumped") {
		t.Fatalf("original's timeline %v", tl)
	}
	// The spend exposure counts the replacements once: all outstanding, the largest counted.
	rs, _ := e.db.Reservations(ctx, store.LedgerOutstanding)
	var largest int64
	for _, r := range rs {
		largest = max(largest, r.OutflowSat)
	}
	if len(rs) < 2 || psbtflow.OutstandingExposure(rs) != btcutil.Amount(largest) {
		t.Fatalf("ledger %+v", rs)
	}
	// The replacement confirms instead of the original.
	e.chain.mu.Lock()
	e.chain.Height++
	e.chain.txs[bt.TxHash()] = chainwatch.TxState{TxID: bt.TxHash(), Height: e.chain.Height, Verified: true}
	delete(e.chain.txs, e.chain.sent[0].TxHash())
	e.chain.mempool = nil
	e.chain.mu.Unlock()
	e.until(t, bumpID, StateConfirmed)
	e.until(t, id, StateReplaced)
}

// A coin spent by a transaction this co-signer never signed (or by a confirmed one) is not
// replaceable: a PSBT spending it is refused as before.
func TestReplaceableCoinNeedsOwnUnconfirmedSpend(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	op := e.f.AddCoin(t, 0, 4, 100_000)
	c := e.f.Chain.Coins[op]
	p := e.f.BuildPSBT(t, []wire.OutPoint{op}, 50_000, 49_000, 0)
	text, _ := psbt.Encode(p, psbt.Base64)
	delete(e.f.Chain.Coins, op)                      // spent by some transaction
	e.co.svc.NoteSpentCoin(op, c, chainhash.Hash{7}) // unconfirmed, not in B's ledger
	_, err := e.co.svc.SignPSBT(ctx, nip46.Call{Client: e.co.client, ID: "x1", Method: "sign_psbt", Params: []string{text}})
	var me *nip46.MethodError
	if !errors.As(err, &me) || !strings.Contains(me.Message, "input_unspent") {
		t.Fatalf("foreign spender: %v", err)
	}
}

// setAutomation replaces the env's automation (name kept) in A's policy.
func (e *engineEnv) setAutomation(mod func(a *policy.Automation)) {
	a := e.auto
	mod(&a)
	e.auto = a
	e.pol.Automations = []policy.Automation{a}
}

func (e *engineEnv) built(t *testing.T, id string) *btcpsbt.Packet {
	t.Helper()
	p, err := e.db.GetProposal(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := btcpsbt.NewFromRawBytes(bytes.NewReader(p.PSBT), false)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

func TestEngineBuilderChoices(t *testing.T) {
	ctx := context.Background()
	t.Run("forward spends only the deposit", func(t *testing.T) {
		e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
		e.setAutomation(func(a *policy.Automation) { a.Action.Kind = policy.ActionForward })
		e.deposit(t, 1, 300_000)
		ev, id := e.fund(t, 2, 150_000)
		e.until(t, id, StateBroadcast)
		tx := e.chain.sent[0]
		if len(tx.TxIn) != 1 || tx.TxIn[0].PreviousOutPoint != ev.UTXO.OutPoint || len(tx.TxOut) != 1 {
			t.Fatalf("forward tx %v", tx)
		}
	})
	t.Run("sweep keeps the reserve as change", func(t *testing.T) {
		e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
		e.setAutomation(func(a *policy.Automation) { a.Action.Reserve = 50_000 })
		e.deposit(t, 1, 300_000)
		_, id := e.fund(t, 2, 150_000)
		e.until(t, id, StateBroadcast)
		tx := e.chain.sent[0]
		var change, paid int64
		for _, o := range tx.TxOut {
			if br, _, ok := e.f.Chain.Lookup(o.PkScript); ok && br == psbt.ChangeBranch {
				change += o.Value
			} else {
				paid += o.Value
			}
		}
		p, _ := e.db.GetProposal(ctx, id)
		if len(tx.TxIn) != 2 || change != 50_000 || paid != 450_000-50_000-p.FeeSat {
			t.Fatalf("sweep: %d inputs, change %d, paid %d, fee %d", len(tx.TxIn), change, paid, p.FeeSat)
		}
	})
	t.Run("consolidate spends the small coins to the next change address", func(t *testing.T) {
		e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
		e.setAutomation(func(a *policy.Automation) {
			a.Trigger = policy.Trigger{Kind: policy.TriggerSchedule, Every: time.Hour}
			a.Action = policy.Action{Kind: policy.ActionConsolidate, Below: 100_000, MinInputs: 3, MaxFeeRate: 5}
		})
		small := []wire.OutPoint{e.deposit(t, 1, 20_000).UTXO.OutPoint, e.deposit(t, 2, 30_000).UTXO.OutPoint, e.deposit(t, 3, 40_000).UTXO.OutPoint}
		e.deposit(t, 4, 500_000)
		slot := ScheduleSlot(e.now.Add(time.Hour), time.Hour)
		if err := e.eng.fire(ctx, ScheduleFirings(e.pol.Automations, slot, e.now)); err != nil {
			t.Fatal(err)
		}
		id := ProposalID("sweep", ScheduleKey(slot))
		e.until(t, id, StateBroadcast)
		tx := e.chain.sent[0]
		var ins []wire.OutPoint
		for _, in := range tx.TxIn {
			ins = append(ins, in.PreviousOutPoint)
		}
		slices.SortFunc(ins, func(a, b wire.OutPoint) int { return strings.Compare(a.String(), b.String()) })
		slices.SortFunc(small, func(a, b wire.OutPoint) int { return strings.Compare(a.String(), b.String()) })
		want0, _ := e.f.Desc.PkScript(psbt.ChangeBranch, 0)
		if !slices.Equal(ins, small) || len(tx.TxOut) != 1 || string(tx.TxOut[0].PkScript) != string(want0) {
			t.Fatalf("consolidation %v", tx)
		}
		// Above its feerate limit it does not run (the estimate is asked once per block: the
		// higher one comes with the next).
		e.chain.feerate = 8
		e.chain.mine()
		slot2 := slot.Add(time.Hour)
		e.deposit(t, 5, 10_000)
		e.deposit(t, 6, 11_000)
		e.deposit(t, 7, 12_000)
		if err := e.eng.fire(ctx, ScheduleFirings(e.pol.Automations, slot2, e.now)); err != nil {
			t.Fatal(err)
		}
		p := e.until(t, ProposalID("sweep", ScheduleKey(slot2)), StateAbandoned)
		if !strings.HasPrefix(p.Reason, "feerate_too_high") {
			t.Fatalf("reason %q", p.Reason)
		}
	})
	t.Run("a named descriptor is paid at a new address each time", func(t *testing.T) {
		e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
		var parts []string
		for i := byte(4); i < 7; i++ {
			parts = append(parts, wallettest.Keys(t, i).Public.KeyOrigin()+"/0/*")
		}
		vault := &policy.NamedDescriptor{Name: "vault", Descriptor: "wsh(sortedmulti(2," + strings.Join(parts, ",") + "))"}
		e.setAutomation(func(a *policy.Automation) {
			a.Action.To = policy.Destination{Text: "descriptor:vault", Descriptor: vault}
		})
		// Without rules, A's limits allow any destination; B has no destination list.
		var paid [][]byte
		for i, idx := range []uint32{2, 3} {
			ev := e.deposit(t, idx, 150_000)
			if err := e.eng.HandleEvent(ctx, ev); err != nil {
				t.Fatal(err)
			}
			e.until(t, ProposalID("sweep", FundingKey(policy.TriggerFundingConfirmed, ev.UTXO.OutPoint)), StateBroadcast)
			paid = append(paid, e.chain.sent[i].TxOut[0].PkScript)
		}
		d, err := descriptor.Parse(vault.Descriptor, wallettest.Net)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range paid {
			want, _ := d.PkScript(0, uint32(i))
			if string(s) != string(want) {
				t.Fatalf("sweep %d paid %x, want the vault's address %d", i, s, i)
			}
		}
	})
	t.Run("funding_seen sweeps the unconfirmed deposit that fired it", func(t *testing.T) {
		e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
		e.setAutomation(func(a *policy.Automation) { a.Trigger = policy.Trigger{Kind: policy.TriggerFundingSeen} })
		ev := e.deposit(t, 2, 150_000)
		e.f.Chain.Coins[ev.UTXO.OutPoint] = psbt.Coin{Value: 150_000, PkScript: ev.UTXO.PkScript, Branch: 0, Index: 2} // in the mempool
		seen := chainwatch.FundingSeen{UTXO: ev.UTXO}
		seen.UTXO.Height = 0
		if err := e.eng.HandleEvent(ctx, seen); err != nil {
			t.Fatal(err)
		}
		// The deposit that fired it is swept even unconfirmed (funding_seen); the policy decides.
		p := e.until(t, ProposalID("sweep", FundingKey(policy.TriggerFundingSeen, ev.UTXO.OutPoint)), StateBroadcast)
		if p.TxID == "" {
			t.Fatal("no transaction")
		}
	})
}

// The co-signer has not seen the deposit yet when first asked (input_unspent, decided for good
// under that request id): it is asked again under a new request id, and signs.
func TestEngineCosignerViewLags(t *testing.T) {
	e := newEngineEnv(t, "", "  max_per_tx: 1 BTC\n")
	ctx := context.Background()
	e.co.lag = 1
	_, id := e.fund(t, 2, 150_000)
	e.until(t, id, StateAwaitingCosigners)
	for i := 0; ; i++ {
		e.eng.Step(ctx)
		e.settle()
		cos, _ := e.db.ProposalCosigners(ctx, id)
		if len(cos) == 1 && cos[0].State == CosignerError {
			break
		}
		if i > 2000 {
			t.Fatalf("co-signer rows %+v", cos)
		}
	}
	e.now = e.now.Add(time.Minute)
	e.until(t, id, StateBroadcast)
	e.co.mu.Lock()
	asked := slices.Clone(e.co.asked)
	e.co.mu.Unlock()
	if len(asked) != 2 || asked[0] == asked[1] || !strings.HasPrefix(asked[1], asked[0]+"~") {
		t.Fatalf("request ids %v", asked)
	}
}
