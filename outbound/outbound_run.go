package outbound

// Outbound proposals, the shell (issue 6): for each proposal in flight it gathers the facts
// (chain, signatures, tip), asks Next what to do, does it, and stores the result with one
// store.ChangeProposal guarded by the state it expected. Build (Select + Build), sign our share
// through the same Service path as an inbound sign_psbt (client "automation:<name>"), ask the
// co-signers in parallel (CosignerAsker), combine as answers arrive, finalize at the threshold,
// broadcast through the watcher, follow to confirmation, bump the fee by RBF.
//
// Crash safety: every external effect is preceded by the stored state it needs to be repeated
// safely — the unsigned PSBT before our signature (the Service answers the same request the same
// way), the co-signer request ids before asking (they answer the same request again), the final
// transaction before broadcasting (a finalized proposal is broadcast again, never rebuilt).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

// AutomationClientPrefix names the client of a PSBT an automation built: the Service decides
// it as client "automation:<name>" (policy rules may match it; it is not a Nostr client, so no
// NIP-46 answer is ever published for it).
const AutomationClientPrefix = policy.AutomationClientPrefix

// Chain is what the engine reads and does on the chain (satisfied by an adapter over
// *chainwatch.Watcher).
type Chain interface {
	psbtflow.ChainView
	// SpendableUTXOs is the wallet's UTXO set less immature coinbase outputs.
	SpendableUTXOs() []chainwatch.UTXO
	// Tx is a wallet transaction's state, if it is in a tracked script's history.
	Tx(txid chainhash.Hash) (chainwatch.TxState, bool)
	// Tip is the watcher's validated tip.
	Tip() chainwatch.Tip
	// Broadcast sends tx (blockchain.transaction.broadcast).
	Broadcast(ctx context.Context, tx *wire.MsgTx) (chainhash.Hash, error)
	// EstimateFee is blockchain.estimatefee(blocks) in sat/vB, or a fallback.
	EstimateFee(ctx context.Context, blocks int) electrum.FeeEstimate
}

// Signer decides and signs this co-signer's own share of a proposal's PSBT under the policy, as
// client "automation:<name>" under request id "proposal:<id>": satisfied by *psbtflow.Service
// (Decide), the same decision an inbound sign_psbt gets. It returns a signed copy of p, or an
// error that psbtflow.Held and psbtflow.Refused classify.
type Signer interface {
	Decide(ctx context.Context, client, id string, p *psbt.Packet) (*psbt.Packet, error)
}

// Store keeps the proposals (satisfied by *store.DB; store/outbound.go): every change of a
// proposal's state is one transaction guarded by the state it expects.
type Store interface {
	CreateProposal(ctx context.Context, p store.Proposal, detail string) (store.Proposal, bool, error)
	ChangeProposal(ctx context.Context, c store.ProposalChange) error
	GetProposal(ctx context.Context, id string) (store.Proposal, error)
	Proposals(ctx context.Context, states ...string) ([]store.Proposal, error)
	AddProposalEvent(ctx context.Context, e store.ProposalEvent) error
	ProposalTimeline(ctx context.Context, id string) ([]store.ProposalEvent, error)
	ProposalCosigners(ctx context.Context, id string) ([]store.ProposalCosigner, error)
	SetProposalCosigner(ctx context.Context, from string, c store.ProposalCosigner, events ...store.ProposalEvent) error
	RenewProposalCosigner(ctx context.Context, from string, c store.ProposalCosigner, events ...store.ProposalEvent) error
	// LastUsedIndex is the highest index of a derivation branch with a history (change outputs).
	LastUsedIndex(ctx context.Context, branch uint32) (uint32, bool, error)
	// LedgerEntry is the spend ledger's entry of a signed transaction (invalidations).
	LedgerEntry(ctx context.Context, txid string) (store.Reservation, bool, error)
}

var _ Store = (*store.DB)(nil)

// CosignerAsker asks another co-signer (a NIP-46 remote signer) for its signatures: satisfied by
// signer/cosign's Coordinator (contract6.md). Ask returns the co-signer's PSBT, a *Refusal
// (wrapped; its error answer), or another error (asked again after Config.RetryAfter); onHeld is
// called with the auth_url while it holds the request.
type CosignerAsker interface {
	Ask(ctx context.Context, bunkerURI, requestID string, p *psbt.Packet, onHeld func(url string)) (*psbt.Packet, error)
}

// Refusal is a co-signer's error answer to sign_psbt (a NIP-46 error response) as a
// CosignerAsker reports it.
type Refusal struct {
	// Text is the answer: "<code>: <message>" (policy_denied, unauthorized, unsafe_psbt, …).
	Text string
	// Passing: the co-signer may answer otherwise when asked again (internal: it has not
	// finished syncing; rate_limited).
	Passing bool
	// ViewLag: refused for good under this request id only because the co-signer's view of the
	// chain lags ours (it does not know the coin as unspent yet): asked again under a new id.
	ViewLag bool
	// Err is the transport's error, kept for errors.As.
	Err error
}

func (r *Refusal) Error() string { return "remote signer: " + r.Text }
func (r *Refusal) Unwrap() error { return r.Err }

// NoticeKind says what a Notice is about.
type NoticeKind string

// Notice kinds.
const (
	NoticeHeld      NoticeKind = "held"
	NoticeDenied    NoticeKind = "denied"
	NoticeStuck     NoticeKind = "stuck"
	NoticeBroadcast NoticeKind = "broadcast"
	NoticeConfirmed NoticeKind = "confirmed"
	NoticeAbandoned NoticeKind = "abandoned"
)

// Notice is a message for the operator about a proposal.
type Notice struct {
	Kind       NoticeKind
	ProposalID string
	Automation string
	Text       string
}

// Notifier tells the operator (NIP-17 direct messages, package notify). Notify must not block
// for long; errors are its own to log.
type Notifier interface {
	Notify(ctx context.Context, n Notice)
}

// Config is what an Engine works with: the wallet, its proposals, the policy, this
// co-signer's signature, the chain, and the clock.
type Config struct {
	Descriptor *descriptor.Descriptor
	Store      Store
	// Policy is called for every decision, so a reloaded policy applies to the next one.
	Policy func() *policy.Policy
	Signer Signer
	Chain  Chain
	// Now is the clock of every delay and window (required): the daemon's trusted clock
	// (internal/trustedtime), the one psbtflow's holds run on, so that a wall clock stepped
	// forward neither ends an automation's loosen delay early nor fires a schedule slot early.
	Now func() time.Time
	// Asker reaches the other co-signers; nil leaves proposals awaiting co-signers.
	Asker CosignerAsker
	// AskerFor, when set, gives the Asker for an automation's timeout (how long one request
	// waits for an answer before it is sent again); it takes precedence over Asker.
	AskerFor func(timeout time.Duration) CosignerAsker
	// Notifier tells the operator; nil: no notices.
	Notifier Notifier
	// Prev fetches previous transactions for non_witness_utxo; nil: not added.
	Prev   psbtflow.PrevTxFetcher
	Logger *slog.Logger
	// Tick is how often the runner re-checks proposals without a wake-up (default 5s);
	// ScheduleTick how often schedule triggers are checked (default 10s); RetryAfter how long a
	// co-signer whose Ask failed waits before being asked again (default 30s). They only pace
	// the polling: what is due is decided on Now.
	Tick, ScheduleTick, RetryAfter time.Duration
}

// Engine runs the policy's automations: it turns chain events and schedules into proposals
// (HandleEvent, automate.go) and takes each proposal to a confirmed transaction (Run).
type Engine struct {
	signer   Signer
	desc     *descriptor.Descriptor
	chain    Chain
	db       Store
	policy   func() *policy.Policy
	asker    CosignerAsker
	askerFor func(time.Duration) CosignerAsker
	notify   Notifier
	prev     psbtflow.PrevTxFetcher
	log      *slog.Logger
	now      func() time.Time

	tick, scheduleTick, retryAfter time.Duration
	wake                           chan struct{} // buffered (1)

	// mu serialises changes to one proposal's PSBT (the runner and the answers of co-signers).
	mu sync.Mutex
	// asking holds the co-signer requests in flight ("proposal/cosigner") and when a failed
	// one may be asked again.
	askMu   sync.Mutex
	asking  map[string]context.CancelFunc
	retryAt map[string]time.Time
	// conflicts counts consecutive checks that saw a proposal's inputs spent by an unknown
	// transaction (two are needed: the watcher may learn of our own spend a moment later).
	conflicts map[string]int
	noted     map[string]bool // what was already recorded or told once per process: "<id>" held, "stuck:<id>", "stuck-ask:<id>"
	wg        sync.WaitGroup
}

// NewEngine returns an Engine. Errors: ErrConfig when a required field (Descriptor, Store,
// Policy, Signer, Chain, Now) is missing.
func NewEngine(cfg Config) (*Engine, error) {
	switch {
	case cfg.Descriptor == nil, cfg.Store == nil, cfg.Policy == nil, cfg.Signer == nil, cfg.Chain == nil:
		return nil, fmt.Errorf("%w: Descriptor, Store, Policy, Signer and Chain are required", ErrConfig)
	case cfg.Now == nil:
		return nil, fmt.Errorf("%w: Now is required (the trusted clock)", ErrConfig)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	e := &Engine{signer: cfg.Signer, desc: cfg.Descriptor, chain: cfg.Chain, db: cfg.Store, policy: cfg.Policy, asker: cfg.Asker,
		askerFor: cfg.AskerFor, notify: cfg.Notifier, prev: cfg.Prev, log: log.With("component", "outbound"), now: cfg.Now,
		tick: cfg.Tick, scheduleTick: cfg.ScheduleTick, retryAfter: cfg.RetryAfter, wake: make(chan struct{}, 1),
		asking: map[string]context.CancelFunc{}, retryAt: map[string]time.Time{}, conflicts: map[string]int{}, noted: map[string]bool{}}
	if e.tick <= 0 {
		e.tick = 5 * time.Second
	}
	if e.scheduleTick <= 0 {
		e.scheduleTick = 10 * time.Second
	}
	if e.retryAfter <= 0 {
		e.retryAfter = 30 * time.Second
	}
	return e, nil
}

// Wake makes the runner check the proposals now.
func (e *Engine) Wake() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Run takes the proposals in flight forward — on every tick, chain event (Wake) and co-signer
// answer — and fires schedule automations, until ctx ends; then it waits for the co-signer
// requests it started. It returns nil when ctx is cancelled.
func (e *Engine) Run(ctx context.Context) error {
	e.wg.Add(1)
	go func() { defer e.wg.Done(); e.runSchedule(ctx) }()
	defer e.wg.Wait()
	t := time.NewTicker(e.tick)
	defer t.Stop()
	for {
		if e.chain.Synced() {
			e.Step(ctx)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-e.wake:
		}
	}
}

// Step does one round of the runner's work now: each proposal in flight gets its next step(s).
// Errors are logged; the next round retries.
func (e *Engine) Step(ctx context.Context) {
	ps, err := e.db.Proposals(ctx, string(StateProposed), string(StateAwaitingCosigners), string(StateFinalized),
		string(StateBroadcast), string(StateConfirmed))
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("read proposals", "error", err)
		}
		return
	}
	defer e.stopStaleAsks(ctx)
	for _, p := range ps {
		if p.State == string(StateConfirmed) && p.BroadcastHeight > 0 && e.chain.TipHeight()-p.BroadcastHeight > 100 {
			continue // deep enough: no longer followed
		}
		// A step that changed the state is followed by the next one at once (built → signed →
		// asked), up to a few per round.
		for range 4 {
			changed, err := e.advance(ctx, p.ID)
			if err != nil {
				if ctx.Err() == nil {
					e.log.Warn("proposal step failed; retried later", "proposal", p.ID, "automation", p.Automation, "error", err)
				}
				break
			}
			if !changed {
				break
			}
		}
	}
}

// stopStaleAsks cancels the co-signer requests of proposals no longer awaiting co-signers
// (cancelled by the operator, abandoned, or finalized with the others' signatures).
func (e *Engine) stopStaleAsks(ctx context.Context) {
	ps, err := e.db.Proposals(ctx, string(StateAwaitingCosigners))
	if err != nil {
		return
	}
	awaiting := map[string]bool{}
	for _, p := range ps {
		awaiting[p.ID] = true
	}
	e.askMu.Lock()
	defer e.askMu.Unlock()
	for key, cancel := range e.asking {
		if id, _, _ := strings.Cut(key, "/"); !awaiting[id] {
			cancel()
		}
	}
}

// automation returns the automation named name as in force now (policy.AutomationsAt: an added
// or loosened automation waits for the policy's loosen_delay).
func (e *Engine) automation(name string) (policy.Automation, bool) {
	for _, a := range e.policy().AutomationsAt(e.now()) {
		if a.Name == name {
			return a, true
		}
	}
	return policy.Automation{}, false
}

// needed is how many signatures the automation's transactions need: its signatures, which
// must equal the wallet's threshold (default).
func (e *Engine) needed(a policy.Automation) (int, error) {
	th := e.desc.Threshold()
	if a.Signatures == 0 {
		return th, nil
	}
	if a.Signatures != th {
		return 0, fmt.Errorf("%w: automation %q asks for %d signatures, the wallet needs %d", ErrAutomation, a.Name, a.Signatures, th)
	}
	return th, nil
}

// advance does the next step of proposal id and reports whether its stored state changed.
func (e *Engine) advance(ctx context.Context, id string) (bool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, err := e.db.GetProposal(ctx, id)
	if err != nil {
		return false, err
	}
	a, ok := e.automation(p.Automation)
	if !ok && ProposalState(p.State) == StateProposed {
		return true, e.abandon(ctx, p, fmt.Sprintf("automation %q is no longer in the policy", p.Automation))
	}
	f, pk, err := e.facts(ctx, p, a)
	if err != nil {
		return false, err
	}
	d := Next(f)
	switch d.Do {
	case ActNone:
		return false, nil
	case ActAbandon:
		return true, e.abandon(ctx, p, d.Reason)
	case ActBuild:
		return e.build(ctx, p, a)
	case ActSelfSign:
		return e.selfSign(ctx, p, a, pk)
	case ActAsk:
		e.ask(ctx, p, a, pk)
		e.noteStuck(ctx, p, a, f)
		return false, nil
	case ActFinalize:
		return true, e.finalize(ctx, p, pk)
	case ActBroadcast:
		return e.broadcast(ctx, p)
	case ActConfirm:
		return true, e.move(ctx, p, d.To, "confirmed", fmt.Sprintf("%d confirmation(s)", f.Confs), NoticeConfirmed)
	case ActUnconfirm:
		return true, e.move(ctx, p, d.To, "reorged", "its block left the chain; followed (and sent again) until it confirms", "")
	case ActMarkReplace:
		return true, e.move(ctx, p, d.To, "replaced", "its fee bump confirmed", "")
	case ActBump:
		return false, e.bump(ctx, p, a, pk)
	}
	return false, fmt.Errorf("psbtflow: unknown action %s", d.Do)
}

// noteStuck tells the operator once (per process) about a proposal that has been waiting for
// its co-signers, without any progress, for three of its automation's timeouts.
func (e *Engine) noteStuck(ctx context.Context, p store.Proposal, a policy.Automation, f Facts) {
	timeout := a.Timeout
	if timeout <= 0 {
		timeout = policy.DefaultCosignerTimeout
	}
	key := "stuck-ask:" + p.ID
	if e.noted[key] || e.now().Sub(p.UpdatedAt) < 3*timeout {
		return
	}
	e.noted[key] = true
	e.tell(ctx, p, NoticeStuck, fmt.Sprintf("proposal %s (%s) has waited %s for its co-signers (%d of %d signatures)",
		p.ID, p.Automation, e.now().Sub(p.UpdatedAt).Round(time.Second), f.Signatures, f.Needed))
}

// facts gathers what Next needs about p, and its stored PSBT (nil before it is built).
func (e *Engine) facts(ctx context.Context, p store.Proposal, a policy.Automation) (Facts, *psbt.Packet, error) {
	f := Facts{State: ProposalState(p.State), Tip: e.chain.TipHeight(), BroadcastHeight: p.BroadcastHeight, BumpAfter: a.BumpAfter}
	pk, err := storedPSBT(p)
	if pk == nil || err != nil {
		return f, nil, err
	}
	f.Built = true
	if f.State == StateAwaitingCosigners {
		if f.Needed, err = e.needed(a); err != nil {
			f.Needed = 0
		}
		if f.Signatures, err = psbtflow.Signatures(e.desc, pk); err != nil {
			return f, nil, fmt.Errorf("psbtflow: proposal %s: count signatures: %w", p.ID, err)
		}
	}
	txid := pk.UnsignedTx.TxHash()
	f.Seen, f.Confs = e.txConfs(txid)
	spent := false
	for _, in := range pk.UnsignedTx.TxIn {
		if _, ok := e.chain.Coin(in.PreviousOutPoint); !ok {
			spent = true
			break
		}
	}
	bumps, err := e.bumpsOf(ctx, p.ID)
	if err != nil {
		return f, nil, err
	}
	for _, b := range bumps {
		if Live(b.State) {
			f.BumpLive = true
		}
	}
	if !spent || f.Seen {
		delete(e.conflicts, p.ID)
		return f, pk, nil
	}
	// Some input is spent, not by this transaction (as far as the watcher knows).
	for _, b := range bumps {
		if bt, err := chainhash.NewHashFromStr(b.UnsignedTxID); err == nil {
			if seen, confs := e.txConfs(*bt); confs > 0 {
				f.Conflict = ConflictBumpConfirmed
				return f, pk, nil
			} else if seen {
				return f, pk, nil // our bump is in the mempool
			}
		}
	}
	if p.Replaces != "" {
		if orig, err := e.db.GetProposal(ctx, p.Replaces); err == nil {
			if ot, err := chainhash.NewHashFromStr(orig.UnsignedTxID); err == nil {
				if seen, confs := e.txConfs(*ot); confs > 0 {
					f.Conflict = ConflictOriginalConfirmed
					return f, pk, nil
				} else if seen {
					return f, pk, nil // the original is in the mempool: a bump spends its inputs
				}
			}
		}
	}
	e.conflicts[p.ID]++
	if e.conflicts[p.ID] >= 2 {
		f.Conflict = ConflictElsewhere
	}
	return f, pk, nil
}

// txConfs reports whether txid is in the wallet's history and its confirmations on the
// watcher's header chain (0 unless its merkle proof checked).
func (e *Engine) txConfs(txid chainhash.Hash) (bool, int32) { return txConfs(e.chain, txid) }

func txConfs(chain Chain, txid chainhash.Hash) (bool, int32) {
	st, ok := chain.Tx(txid)
	if !ok {
		return false, 0
	}
	if !st.Verified || st.Height <= 0 {
		return true, 0
	}
	return true, max(0, chain.TipHeight()-st.Height+1)
}

func (e *Engine) bumpsOf(ctx context.Context, id string) ([]store.Proposal, error) {
	all, err := e.db.Proposals(ctx)
	if err != nil {
		return nil, err
	}
	var out []store.Proposal
	for _, q := range all {
		if q.Replaces == id {
			out = append(out, q)
		}
	}
	return out, nil
}

// move stores p's change to state to with one timeline entry (event, detail), and notifies.
func (e *Engine) move(ctx context.Context, p store.Proposal, to ProposalState, event, detail string, notice NoticeKind) error {
	if err := checkTransition(ProposalState(p.State), to); err != nil {
		return err
	}
	from := p.State
	p.State, p.UpdatedAt = string(to), e.now()
	if err := e.db.ChangeProposal(ctx, store.ProposalChange{From: from, Proposal: p, Events: []store.ProposalEvent{{Event: event, Detail: detail}}}); err != nil {
		return err
	}
	e.log.Info("proposal "+event, "proposal", p.ID, "automation", p.Automation, "state", to, "txid", p.TxID, "detail", detail)
	if notice != "" {
		text := fmt.Sprintf("proposal %s (%s): %s", p.ID, p.Automation, event)
		if p.TxID != "" {
			text += " — txid " + p.TxID
		}
		if detail != "" {
			text += " — " + detail
		}
		e.tell(ctx, p, notice, text)
	}
	return nil
}

func (e *Engine) abandon(ctx context.Context, p store.Proposal, reason string) error {
	from := p.State
	if err := checkTransition(ProposalState(from), StateAbandoned); err != nil {
		return err
	}
	p.State, p.Reason, p.UpdatedAt = string(StateAbandoned), reason, e.now()
	if err := e.db.ChangeProposal(ctx, store.ProposalChange{From: from, Proposal: p, Events: []store.ProposalEvent{{Event: "abandoned", Detail: reason}}}); err != nil {
		return err
	}
	e.log.Warn("proposal abandoned", "proposal", p.ID, "automation", p.Automation, "reason", reason)
	e.tell(ctx, p, NoticeAbandoned, fmt.Sprintf("proposal %s (%s) abandoned: %s", p.ID, p.Automation, reason))
	return nil
}

// tell sends a notice (bounded in time) and records it in the timeline.
func (e *Engine) tell(ctx context.Context, p store.Proposal, kind NoticeKind, text string) {
	if e.notify == nil {
		return
	}
	nctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	e.notify.Notify(nctx, Notice{Kind: kind, ProposalID: p.ID, Automation: p.Automation, Text: text})
	if err := e.db.AddProposalEvent(ctx, store.ProposalEvent{ProposalID: p.ID, At: e.now(), Event: "notified", Detail: string(kind)}); err != nil {
		e.log.Warn("timeline", "proposal", p.ID, "error", err)
	}
}

// takenInputs maps each input of a live proposal's PSBT to the proposal's id.
func (e *Engine) takenInputs(ctx context.Context) (map[wire.OutPoint]string, error) {
	out := map[wire.OutPoint]string{}
	err := e.eachBuilt(ctx, func(p store.Proposal, pk *psbt.Packet) {
		for _, in := range pk.UnsignedTx.TxIn {
			out[in.PreviousOutPoint] = p.ID
		}
	}, string(StateProposed), string(StateAwaitingCosigners), string(StateFinalized), string(StateBroadcast))
	return out, err
}

// usedOutputs lists the output scripts of every proposal's PSBT (any state), so that a
// destination or change index is not reused.
func (e *Engine) usedOutputs(ctx context.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := e.eachBuilt(ctx, func(_ store.Proposal, pk *psbt.Packet) {
		for _, o := range pk.UnsignedTx.TxOut {
			out[string(o.PkScript)] = true
		}
	})
	return out, err
}

// eachBuilt calls f with every built proposal in the given states (any state with none) and its
// decoded PSBT. Errors: the database's, or a stored PSBT that does not decode.
func (e *Engine) eachBuilt(ctx context.Context, f func(store.Proposal, *psbt.Packet), states ...string) error {
	ps, err := e.db.Proposals(ctx, states...)
	if err != nil {
		return err
	}
	for _, p := range ps {
		pk, err := storedPSBT(p)
		if err != nil {
			return err
		}
		if pk != nil {
			f(p, pk)
		}
	}
	return nil
}

// storedPSBT decodes proposal p's stored PSBT (nil, nil before it is built).
func storedPSBT(p store.Proposal) (*psbt.Packet, error) {
	if len(p.PSBT) == 0 {
		return nil, nil
	}
	pk, err := psbt.NewFromRawBytes(bytes.NewReader(p.PSBT), false)
	if err != nil {
		return nil, fmt.Errorf("psbtflow: proposal %s: stored PSBT: %w", p.ID, err)
	}
	return pk, nil
}

// changeIndex is the wallet's next unused change index: after the last one with a history,
// skipping those paid by a proposal, and within the watcher's lookahead (else Analyze would not
// know the output as change).
func (e *Engine) changeIndex(ctx context.Context, used map[string]bool) (uint32, error) {
	last, ok, err := e.db.LastUsedIndex(ctx, psbtflow.ChangeBranch)
	if err != nil {
		return 0, err
	}
	i := uint32(0)
	if ok {
		i = last + 1
	}
	for ; ; i++ {
		script, err := e.desc.PkScript(psbtflow.ChangeBranch, i)
		if err != nil {
			return 0, fmt.Errorf("psbtflow: change address %d: %w", i, err)
		}
		if _, _, tracked := e.chain.Lookup(script); !tracked {
			return 0, fmt.Errorf("psbtflow: no unused change address within the watcher's lookahead (at index %d); raise COSIGNER_LOOKAHEAD", i)
		}
		if !used[string(script)] {
			return i, nil
		}
	}
}

// destination is the script an automation pays: its address, or its named descriptor's first
// receive address not paid by any proposal yet.
func (e *Engine) destination(a policy.Automation, used map[string]bool) ([]byte, error) {
	to := a.Action.To
	if to.Descriptor == nil {
		if len(to.PkScript) == 0 {
			return nil, fmt.Errorf("%w: automation %q has no destination", ErrAutomation, a.Name)
		}
		return to.PkScript, nil
	}
	d, err := descriptor.Parse(to.Descriptor.Descriptor, e.desc.Network())
	if err != nil {
		return nil, fmt.Errorf("%w: automation %q: destination %s: %v", ErrAutomation, a.Name, to.Text, err)
	}
	for i := uint32(0); i < 100_000; i++ {
		s, err := d.PkScript(0, i)
		if err != nil {
			return nil, fmt.Errorf("%w: automation %q: destination %s at %d: %v", ErrAutomation, a.Name, to.Text, i, err)
		}
		if !used[string(s)] {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w: automation %q: destination %s has no unused address", ErrAutomation, a.Name, to.Text)
}

// limitFeeRate is the strictest limits.max_feerate of the policies in force, 0 when none is set.
func (e *Engine) limitFeeRate() policy.FeeRate {
	if l := e.policy().MaxFeeRateAt(e.now()); l.Set {
		return l.V
	}
	return 0
}

// AutomationFeeRate is the feerate an automation builds with: the server's estimate for its
// target (or its fallback when there is none), never above its max_feerate nor the policy's
// limits.max_feerate (when set), never below 1 sat/vB.
func AutomationFeeRate(a policy.Automation, est electrum.FeeEstimate, limitMax policy.FeeRate) psbtflow.FeeRate {
	rate := psbtflow.FeeRate(est.Rate)
	if !est.Estimated {
		rate = psbtflow.FeeRate(a.Fee.Fallback)
		if rate <= 0 {
			rate = 2
		}
	}
	return max(1, min(rate, FeeCeiling(a, limitMax)))
}

// FeeCeiling is the highest feerate an automation may pay: its fee.max_feerate (default
// 100 sat/vB), lowered to the policy's limits.max_feerate when that is set (limitMax > 0).
func FeeCeiling(a policy.Automation, limitMax policy.FeeRate) psbtflow.FeeRate {
	ceiling := psbtflow.FeeRate(a.Fee.MaxFeeRate)
	if ceiling <= 0 {
		ceiling = 100
	}
	if limitMax > 0 && psbtflow.FeeRate(limitMax) < ceiling {
		ceiling = psbtflow.FeeRate(limitMax)
	}
	return ceiling
}

// build selects the coins and writes the unsigned PSBT (state stays proposed).
func (e *Engine) build(ctx context.Context, p store.Proposal, a policy.Automation) (bool, error) {
	if txid, op, ok := ParseInvalidationKey(p.TriggerKey); ok {
		return e.buildInvalidation(ctx, p, a, txid, op) // invalidate.go
	}
	if _, err := e.needed(a); err != nil {
		return true, e.abandon(ctx, p, err.Error())
	}
	target := a.Fee.TargetBlocks
	if target <= 0 {
		target = 6
	}
	rate := AutomationFeeRate(a, e.chain.EstimateFee(ctx, target), e.limitFeeRate())
	taken, err := e.takenInputs(ctx)
	if err != nil {
		return false, err
	}
	used, err := e.usedOutputs(ctx)
	if err != nil {
		return false, err
	}
	tip := e.chain.Tip()
	next := chainwatch.Tip{Height: tip.Height + 1}
	var coins []psbtflow.UTXO
	reserve := btcutil.Amount(0)
	var payTo []byte
	switch a.Action.Kind {
	case policy.ActionSweep, policy.ActionForward:
		op, isFunding := FundingOutPoint(p.TriggerKey)
		if a.Action.Kind == policy.ActionForward && !isFunding {
			return true, e.abandon(ctx, p, fmt.Sprintf("forward needs a funding trigger, not %s", p.TriggerKey))
		}
		for _, u := range e.chain.SpendableUTXOs() {
			trig := isFunding && u.OutPoint == op
			if a.Action.Kind == policy.ActionForward && !trig {
				continue
			}
			if !trig && u.Confirmations(tip) < 1 || !u.Mature(next) {
				continue
			}
			if by, ok := taken[u.OutPoint]; ok {
				if trig {
					return true, e.abandon(ctx, p, fmt.Sprintf("%s: the deposit %s is already spent by proposal %s", ReasonInsufficientFunds, op, by))
				}
				continue
			}
			coins = append(coins, toCoin(u))
		}
		if a.Action.Kind == policy.ActionSweep {
			reserve = a.Action.Reserve
		}
		if payTo, err = e.destination(a, used); err != nil {
			return true, e.abandon(ctx, p, err.Error())
		}
	case policy.ActionConsolidate:
		if a.Action.MaxFeeRate > 0 && rate > psbtflow.FeeRate(a.Action.MaxFeeRate) {
			return true, e.abandon(ctx, p, fmt.Sprintf("feerate_too_high: %.1f sat/vB is above the consolidation limit %.1f sat/vB", float64(rate), float64(a.Action.MaxFeeRate)))
		}
		for _, u := range e.chain.SpendableUTXOs() {
			if _, ok := taken[u.OutPoint]; ok || u.Confirmations(tip) < 1 || !u.Mature(next) || u.Value >= a.Action.Below {
				continue
			}
			coins = append(coins, toCoin(u))
		}
		if n := max(a.Action.MinInputs, 2); len(coins) < n {
			return true, e.abandon(ctx, p, fmt.Sprintf("%s: %d coins below %s, consolidation needs %d", ReasonInsufficientFunds, len(coins), a.Action.Below, n))
		}
		idx, err := e.changeIndex(ctx, used)
		if err != nil {
			return false, err
		}
		if payTo, err = e.desc.PkScript(psbtflow.ChangeBranch, idx); err != nil {
			return false, err
		}
		used[string(payTo)] = true
	default:
		return true, e.abandon(ctx, p, fmt.Sprintf("unknown action %q", a.Action.Kind))
	}
	if len(coins) == 0 {
		return true, e.abandon(ctx, p, ReasonInsufficientFunds+": no confirmed coin free to spend")
	}
	pk, err := e.buildPSBT(ctx, coins, payTo, reserve, rate, used)
	if err != nil {
		if errors.Is(err, psbtflow.ErrInsufficientFunds) || errors.Is(err, psbtflow.ErrDustOutput) || errors.Is(err, psbtflow.ErrTooManyInputs) {
			return true, e.abandon(ctx, p, ReasonInsufficientFunds+": "+strings.TrimPrefix(err.Error(), "psbtflow: "))
		}
		if errors.Is(err, psbtflow.ErrUnsupportedDescriptor) || errors.Is(err, psbtflow.ErrPayment) || errors.Is(err, psbtflow.ErrSelectParams) {
			// Building again would fail the same way (an unsupported descriptor, a destination of
			// another network, a descriptor without a change branch).
			return true, e.abandon(ctx, p, "cannot build: "+strings.TrimPrefix(err.Error(), "psbtflow: "))
		}
		return false, err
	}
	return true, e.storeBuilt(ctx, p, pk, rate, fmt.Sprintf("%d inputs at %.1f sat/vB", len(pk.UnsignedTx.TxIn), float64(rate)))
}

func toCoin(u chainwatch.UTXO) psbtflow.UTXO {
	return psbtflow.UTXO{OutPoint: u.OutPoint, Coin: psbtflow.Coin{Value: u.Value, PkScript: u.PkScript, Branch: u.Branch, Index: u.Index, Height: u.Height}}
}

// buildPSBT sweeps coins to payTo at rate, keeping reserve as change (at the next change index).
func (e *Engine) buildPSBT(ctx context.Context, coins []psbtflow.UTXO, payTo []byte, reserve btcutil.Amount, rate psbtflow.FeeRate, used map[string]bool) (*psbt.Packet, error) {
	pays := []psbtflow.Payment{{PkScript: payTo}}
	params, err := psbtflow.NewSelectParams(e.desc, pays)
	if err != nil {
		return nil, err
	}
	params.Mode, params.Reserve = psbtflow.SelectSweep, reserve
	sel, err := psbtflow.Select(coins, 0, rate, params)
	if err != nil {
		return nil, err
	}
	var changeIdx uint32
	if sel.Change > 0 {
		if changeIdx, err = e.changeIndex(ctx, used); err != nil {
			return nil, err
		}
	}
	return psbtflow.Build(ctx, e.desc, sel, pays, psbtflow.BuildOptions{ChangeIndex: changeIdx, TipHeight: e.chain.TipHeight()}, e.prev)
}

// storeBuilt stores the unsigned PSBT of proposal p (state proposed).
func (e *Engine) storeBuilt(ctx context.Context, p store.Proposal, pk *psbt.Packet, rate psbtflow.FeeRate, detail string) error {
	var buf bytes.Buffer
	if err := pk.Serialize(&buf); err != nil {
		return err
	}
	fee, _ := pk.GetTxFee()
	from := p.State
	p.PSBT, p.UnsignedTxID, p.FeeSat, p.FeeRate, p.UpdatedAt = buf.Bytes(), pk.UnsignedTx.TxHash().String(), int64(fee), float64(rate), e.now()
	if err := e.db.ChangeProposal(ctx, store.ProposalChange{From: from, Proposal: p, Events: []store.ProposalEvent{{Event: "built", Detail: detail}}}); err != nil {
		return err
	}
	e.log.Info("proposal built", "proposal", p.ID, "automation", p.Automation, "unsigned_txid", p.UnsignedTxID, "fee_sat", p.FeeSat, "detail", detail)
	return nil
}

// selfSign signs our share through the Service (policy, ledger, audit) as client
// "automation:<name>", request id "proposal:<id>"; on success it stores the signed PSBT and the
// co-signers' request ids (state awaiting_cosigners) in one transaction.
func (e *Engine) selfSign(ctx context.Context, p store.Proposal, a policy.Automation, pk *psbt.Packet) (bool, error) {
	client := AutomationClientPrefix + p.Automation
	signed, err := e.signer.Decide(ctx, client, "proposal:"+p.ID, pk)
	if url, reason, held := psbtflow.Held(err); held {
		if !e.noted[p.ID] {
			e.noted[p.ID] = true
			tl, _ := e.db.ProposalTimeline(ctx, p.ID)
			if len(tl) == 0 || tl[len(tl)-1].Event != "held" && tl[len(tl)-1].Event != "notified" {
				if err := e.db.AddProposalEvent(ctx, store.ProposalEvent{ProposalID: p.ID, At: e.now(), Event: "held", Detail: reason}); err != nil {
					return false, err
				}
				e.tell(ctx, p, NoticeHeld, fmt.Sprintf("proposal %s (%s) is held by this co-signer's policy: %s (%s)", p.ID, p.Automation, reason, url))
			}
		}
		return false, nil
	}
	if text, transient, refused := psbtflow.Refused(err); refused && !transient {
		e.tell(ctx, p, NoticeDenied, fmt.Sprintf("proposal %s (%s) denied by this co-signer's policy: %s", p.ID, p.Automation, text))
		return true, e.abandon(ctx, p, text)
	}
	if err != nil {
		return false, err // not synced, or a passing failure: try again
	}
	var buf bytes.Buffer
	if err := signed.Serialize(&buf); err != nil {
		return false, err
	}
	var cos []store.ProposalCosigner
	var evs []store.ProposalEvent
	evs = append(evs, store.ProposalEvent{Event: "self_signed", Detail: "signed under " + client})
	for _, uri := range a.Cosigners {
		bp, err := nip46.ParseBunkerURI(uri)
		if err != nil {
			return true, e.abandon(ctx, p, fmt.Sprintf("co-signer URI: %v", err))
		}
		cos = append(cos, store.ProposalCosigner{Cosigner: bp.RemoteSignerPubKey, BunkerURI: uri, RequestID: "proposal-" + p.ID + "-" + bp.RemoteSignerPubKey[:8],
			State: CosignerWaiting})
		evs = append(evs, store.ProposalEvent{Event: "requested", Detail: bp.RemoteSignerPubKey})
	}
	delete(e.noted, p.ID)
	from := p.State
	p.State, p.PSBT, p.UpdatedAt = string(StateAwaitingCosigners), buf.Bytes(), e.now()
	if err := e.db.ChangeProposal(ctx, store.ProposalChange{From: from, Proposal: p, Cosigners: cos, Events: evs}); err != nil {
		return false, err
	}
	e.log.Info("proposal signed by this co-signer", "proposal", p.ID, "automation", p.Automation, "cosigners", len(cos))
	return true, nil
}

// ask starts one request per co-signer that has not answered (and is not being asked).
func (e *Engine) ask(ctx context.Context, p store.Proposal, a policy.Automation, pk *psbt.Packet) {
	if e.asker == nil && e.askerFor == nil {
		return
	}
	cos, err := e.db.ProposalCosigners(ctx, p.ID)
	if err != nil {
		e.log.Warn("read co-signers", "proposal", p.ID, "error", err)
		return
	}
	timeout := a.Timeout
	for _, c := range cos {
		if c.State == CosignerSigned || c.State == CosignerDenied {
			continue
		}
		key := p.ID + "/" + c.Cosigner
		actx, cancel := context.WithCancel(ctx)
		e.askMu.Lock()
		busy := e.asking[key] != nil || e.now().Before(e.retryAt[key])
		if !busy {
			e.asking[key] = cancel
		}
		e.askMu.Unlock()
		if busy {
			cancel()
			continue
		}
		cp, err := psbt.NewFromRawBytes(bytes.NewReader(p.PSBT), false) // the stored PSBT pk was read from, a copy per co-signer
		if err != nil {
			e.askMu.Lock()
			delete(e.asking, key)
			e.askMu.Unlock()
			cancel()
			e.log.Error("copy PSBT", "proposal", p.ID, "error", err)
			return
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer cancel()
			e.askOne(actx, p, c, pk.UnsignedTx.TxHash(), cp, timeout)
		}()
	}
}

// askOne asks one co-signer and records its answer: its signatures combined into the
// proposal's PSBT, or its refusal (the proposal is abandoned when the others cannot make up the
// threshold), or a failure (asked again after RetryAfter).
func (e *Engine) askOne(ctx context.Context, p store.Proposal, c store.ProposalCosigner, txid chainhash.Hash, pk *psbt.Packet, timeout time.Duration) {
	key := p.ID + "/" + c.Cosigner
	defer func() {
		e.askMu.Lock()
		delete(e.asking, key)
		e.askMu.Unlock()
		e.Wake()
	}()
	onHeld := func(url string) {
		c.State, c.Detail, c.UpdatedAt = CosignerHeld, url, e.now()
		if err := e.db.SetProposalCosigner(ctx, string(StateAwaitingCosigners), c, store.ProposalEvent{Event: "held", Detail: c.Cosigner + " " + url}); err != nil {
			e.log.Warn("record held co-signer", "proposal", p.ID, "error", err)
			return
		}
		e.tell(ctx, p, NoticeHeld, fmt.Sprintf("proposal %s (%s): co-signer %s holds the request: %s", p.ID, p.Automation, c.Cosigner[:12], url))
	}
	asker := e.asker
	if e.askerFor != nil {
		asker = e.askerFor(timeout)
	}
	got, err := asker.Ask(ctx, c.BunkerURI, c.RequestID, pk, onHeld)
	if ctx.Err() != nil {
		return
	}
	var re *Refusal
	switch {
	case errors.As(err, &re) && re.ViewLag:
		// The co-signer's watcher has not seen the coin yet (its Electrum server lags ours):
		// it refused this request id for good, so ask again soon under a new one (it signed
		// nothing under the old).
		e.askMu.Lock()
		e.retryAt[key] = e.now().Add(e.tick)
		e.askMu.Unlock()
		c.RequestID = renewRequestID(c.RequestID, e.now())
		c.State, c.Detail, c.UpdatedAt = CosignerError, re.Text, e.now()
		if err := e.db.RenewProposalCosigner(ctx, string(StateAwaitingCosigners), c); err != nil && !errors.Is(err, store.ErrProposalState) {
			e.log.Warn("renew co-signer request", "proposal", p.ID, "error", err)
		}
		e.log.Info("co-signer has not seen the coins yet; asked again under a new request id", "proposal", p.ID, "cosigner", c.Cosigner, "answer", re.Text)
		return
	case errors.As(err, &re) && !re.Passing:
		// A refusal (policy_denied, unauthorized, unsafe_psbt, …); internal (not synced yet)
		// and rate_limited are passing, asked again below.
		e.denied(ctx, p.ID, c, re.Text)
		return
	case err != nil:
		e.askMu.Lock()
		e.retryAt[key] = e.now().Add(e.retryAfter)
		e.askMu.Unlock()
		c.State, c.Detail, c.UpdatedAt = CosignerError, err.Error(), e.now()
		if err := e.db.SetProposalCosigner(ctx, string(StateAwaitingCosigners), c); err != nil && !errors.Is(err, store.ErrProposalState) {
			e.log.Warn("record co-signer error", "proposal", p.ID, "error", err)
		}
		e.log.Warn("co-signer request failed; asked again later", "proposal", p.ID, "cosigner", c.Cosigner, "error", err)
		return
	}
	if got.UnsignedTx.TxHash() != txid {
		e.denied(ctx, p.ID, c, "invalid_answer: the co-signer returned another transaction")
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	cur, err := e.db.GetProposal(ctx, p.ID)
	if err != nil || cur.State != string(StateAwaitingCosigners) {
		return // cancelled or finished meanwhile
	}
	base, err := psbt.NewFromRawBytes(bytes.NewReader(cur.PSBT), false)
	if err != nil {
		e.log.Error("stored PSBT", "proposal", p.ID, "error", err)
		return
	}
	combined, err := psbtflow.Combine(base, got)
	if err != nil {
		e.denied(ctx, p.ID, c, "invalid_answer: "+err.Error())
		return
	}
	var buf bytes.Buffer
	if err := combined.Serialize(&buf); err != nil {
		e.log.Error("serialize PSBT", "proposal", p.ID, "error", err)
		return
	}
	n, _ := psbtflow.Signatures(e.desc, combined)
	cur.PSBT, cur.UpdatedAt = buf.Bytes(), e.now()
	c.State, c.Detail, c.UpdatedAt = CosignerSigned, fmt.Sprintf("every input now has %d signature(s)", n), e.now()
	if err := e.db.ChangeProposal(ctx, store.ProposalChange{From: string(StateAwaitingCosigners), Proposal: cur, Cosigners: []store.ProposalCosigner{c},
		Events: []store.ProposalEvent{{Event: "answered", Detail: c.Cosigner}}}); err != nil {
		e.log.Warn("record co-signer answer", "proposal", p.ID, "error", err)
		return
	}
	e.log.Info("co-signer signed", "proposal", p.ID, "cosigner", c.Cosigner, "signatures", n)
}

// renewRequestID is the next request id for a co-signer after a view-lag refusal: the first id
// with a "~<unix nanoseconds>" suffix (replacing an earlier one).
func renewRequestID(id string, now time.Time) string {
	base, _, _ := strings.Cut(id, "~")
	return fmt.Sprintf("%s~%d", base, now.UnixNano())
}

// denied records a co-signer's refusal and abandons the proposal when the co-signers that may
// still sign cannot reach the threshold.
func (e *Engine) denied(ctx context.Context, id string, c store.ProposalCosigner, text string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c.State, c.Detail, c.UpdatedAt = CosignerDenied, text, e.now()
	if err := e.db.SetProposalCosigner(ctx, string(StateAwaitingCosigners), c, store.ProposalEvent{Event: "denied", Detail: c.Cosigner + ": " + text}); err != nil {
		if !errors.Is(err, store.ErrProposalState) {
			e.log.Warn("record co-signer refusal", "proposal", id, "error", err)
		}
		return
	}
	p, err := e.db.GetProposal(ctx, id)
	if err != nil {
		return
	}
	e.log.Warn("co-signer refused", "proposal", id, "cosigner", c.Cosigner, "reason", text)
	e.tell(ctx, p, NoticeDenied, fmt.Sprintf("proposal %s (%s): co-signer %s refused: %s", id, p.Automation, c.Cosigner[:12], text))
	a, _ := e.automation(p.Automation)
	need, err := e.needed(a)
	if err != nil {
		need = e.desc.Threshold()
	}
	pk, err := psbt.NewFromRawBytes(bytes.NewReader(p.PSBT), false)
	if err != nil {
		return
	}
	have, _ := psbtflow.Signatures(e.desc, pk)
	cos, err := e.db.ProposalCosigners(ctx, id)
	if err != nil {
		return
	}
	possible := have
	for _, x := range cos {
		if x.State != CosignerDenied && x.State != CosignerSigned {
			possible++
		}
	}
	if possible < need {
		if err := e.abandon(ctx, p, text); err != nil {
			e.log.Warn("abandon", "proposal", id, "error", err)
		}
	}
}

// finalize plays the Finalizer and Extractor and stores the network transaction (finalized).
func (e *Engine) finalize(ctx context.Context, p store.Proposal, pk *psbt.Packet) error {
	tx, err := psbtflow.Finalize(e.desc, pk)
	if err != nil {
		return fmt.Errorf("psbtflow: finalize proposal %s: %w", p.ID, err)
	}
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		return err
	}
	p.FinalTx, p.TxID = buf.Bytes(), tx.TxHash().String()
	return e.move(ctx, p, StateFinalized, "finalized", p.TxID, "")
}

// broadcast sends the stored final transaction ("already known" counts as sent) and moves the
// proposal to broadcast (recording the tip height the first time).
func (e *Engine) broadcast(ctx context.Context, p store.Proposal) (bool, error) {
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(p.FinalTx)); err != nil {
		return false, fmt.Errorf("psbtflow: proposal %s: stored transaction: %w", p.ID, err)
	}
	if _, err := e.chain.Broadcast(ctx, &tx); err != nil && !errors.Is(err, electrum.ErrTxAlreadyKnown) {
		if seen, _ := e.txConfs(tx.TxHash()); !seen {
			if p.Replaces != "" && p.State == string(StateFinalized) && errors.Is(err, electrum.ErrFeeTooLow) {
				// A fee bump that does not pay enough over what it replaces: abandoned; the next
				// bump starts above it.
				return true, e.abandon(ctx, p, ReasonFeeTooLow+": "+err.Error())
			}
			return false, err
		}
	}
	if p.State == string(StateBroadcast) {
		e.log.Info("proposal sent again", "proposal", p.ID, "txid", p.TxID)
		return false, nil
	}
	if p.BroadcastHeight == 0 {
		p.BroadcastHeight = e.chain.TipHeight()
	}
	return true, e.move(ctx, p, StateBroadcast, "broadcast", p.TxID, NoticeBroadcast)
}
