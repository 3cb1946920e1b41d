package outbound

// The engine (issue 6): what it works with (Config: the chain, the store, this co-signer's
// signature, the co-signers, the clock), and its loop — for each proposal in flight, gather the
// facts, ask Next what to do, do it (advance).

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// Chain is what the engine reads and does on the chain (satisfied by an adapter over
// *chainwatch.Watcher).
type Chain interface {
	psbt.ChainView
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
	Decide(ctx context.Context, client, id string, p *btcpsbt.Packet) (*btcpsbt.Packet, error)
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
	Ask(ctx context.Context, bunkerURI, requestID string, p *btcpsbt.Packet, onHeld func(url string)) (*btcpsbt.Packet, error)
}

// CosignerWarmer may be implemented by a CosignerAsker (signer/cosign's Coordinator does):
// Warm connects to the co-signer at bunkerURI before the first Ask needs it (relays, NIP-46
// connect), so that a proposal's first request goes out at once. It returns once connected, or
// with ctx's error or a refusal of the connection.
type CosignerWarmer interface {
	Warm(ctx context.Context, bunkerURI string) error
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
	Prev   psbt.PrevTxFetcher
	Logger *slog.Logger
	// Tick is how often the runner re-checks every proposal in flight without a wake-up, a
	// safety net only: each step is woken by what enables it (runner.go) (default 5s);
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
	prev     psbt.PrevTxFetcher
	log      *slog.Logger
	now      func() time.Time

	tick, scheduleTick, retryAfter time.Duration
	wake                           chan struct{} // buffered (1): the runner has work (due)
	due                            due           // what the runner does next (runner.go)

	// prebuilt holds the PSBTs built while a deposit was only seen, for the funding_confirmed
	// proposal it will fire (prebuild.go); fees the fee estimates of the current tip.
	prebuilt prebuiltSet
	fees     feeCache
	// shapes and dests spare the passes decoding stored PSBTs and deriving destination
	// addresses again (outbound_run.go, build.go).
	shapes shapeCache
	dests  destCache

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
	// viewLags counts, per "proposal/cosigner", the view-lag refusals in a row (the retry waits
	// double); retryWake holds the timers that wake a proposal when a retry is due.
	viewLags  map[string]int
	retryWake map[string]*time.Timer
	// warmed lists the co-signers ("timeout bunker-URI") already connected or being connected.
	warmed map[string]bool
	noted  map[string]bool // what was already recorded or told once per process: "<id>" held, "stuck:<id>", "stuck-ask:<id>"
	wg     sync.WaitGroup
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
		asking: map[string]context.CancelFunc{}, retryAt: map[string]time.Time{}, conflicts: map[string]int{}, noted: map[string]bool{},
		viewLags: map[string]int{}, retryWake: map[string]*time.Timer{}, warmed: map[string]bool{}}
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
		// No step follows at once: the next one waits for the watcher to see the transaction.
		_, err := e.broadcast(ctx, p)
		return false, err
	case ActConfirm:
		return true, e.move(ctx, p, d.To, "confirmed", fmt.Sprintf("%d confirmation(s)", f.Confs), NoticeConfirmed)
	case ActUnconfirm:
		return true, e.move(ctx, p, d.To, "reorged", "its block left the chain; followed (and sent again) until it confirms", "")
	case ActMarkReplace:
		return true, e.move(ctx, p, d.To, "replaced", "its fee bump confirmed", "")
	case ActBump:
		if pk, err = storedPSBT(p); err != nil {
			return false, err
		}
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
