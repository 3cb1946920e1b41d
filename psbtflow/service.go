package psbtflow

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/netparams"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// Service is the life of a signing request (docs/architecture.md): authorize,
// analyze, evaluate the policy, then sign (reserving the outflow in the spend ledger in the same
// transaction as the "signed" state), deny, or hold (answered with NIP-46 auth_url; the late
// answer goes through the Responder when the hold ends). Its SignPSBT, Approve and PSBTStatus
// answer the sign_psbt, approve and psbt_status methods.
type Service struct {
	desc   *descriptor.Descriptor
	slot   int
	keys   AccountKey
	chain  psbt.ChainView
	policy func() *policy.Policy
	db     Store
	log    *slog.Logger

	now     func() time.Time
	holdURL string        // base of auth_url links, e.g. http://127.0.0.1:8080
	tick    time.Duration // how often Run re-decides held requests and reconciles the ledger
	wake    chan struct{} // buffered (1): an approval arrived

	responder Responder

	// replaceable gives, for PSBTs of this co-signer's own automations only, the coins that its
	// own unconfirmed transactions spend, so that their RBF fee bumps can be analysed (nil: none).
	replaceable func(op wire.OutPoint) (psbt.Coin, bool)
	// spent and txConfirmed find coins spent by our own unconfirmed transactions for any
	// client's RBF replacement (replaceable.go).
	spent       spentCoins
	txConfirmed func(txid chainhash.Hash) bool
	// facts are the proven chain facts the spend exposure moves on (exposure.go; nil: none).
	facts SpendFacts

	// limits bound what a request and the waiting holds may cost (limits.go); holds is when
	// each waiting hold must be decided again (holds.go), guarded by mu.
	limits Limits
	holds  holdSchedule
	mu     sync.Mutex

	// Decisions run concurrently; they share only what the spend exposure needs.
	//   - requests serialises the decisions of one (client, id), so that it is never evaluated
	//     twice at once (a repeat waits and is answered from the store);
	//   - book is the spend exposure in memory: a decision reads it, evaluates the policy and
	//     reserves its transaction in one short critical section (book.mu), so two decisions
	//     never both fit under a limit only one fits under (exposure_book.go);
	//   - ledgerMu orders the writes of the spend ledger with the book's changes that mirror
	//     them (a signed decision's commit, the reconcile's moves);
	//   - reconcileMu serialises the reconciles (chain events, sweeps) with each other only;
	//   - holdRun serialises the re-decisions of held requests, holdCap the check of the hold
	//     caps with the new hold's write.
	// Lock order: holdRun → requests → holdCap → reconcileMu → ledgerMu → book.mu → mu.
	requests    keyedLocks
	book        exposureBook
	ledgerMu    sync.Mutex
	reconcileMu sync.Mutex
	holdRun     sync.Mutex
	holdCap     sync.Mutex
	sweepEvery  time.Duration
	sweepDue    atomic.Bool  // a sweep is due at the next Tick (start, a failed event)
	lastSweep   atomic.Int64 // when the last sweep ended, Unix nanoseconds
	// onReconcile and onDecide are test hooks: called by a sweep once the book is loaded, and by
	// a decision once its PSBT is analysed, before it reads the exposure.
	onReconcile func()
	onDecide    func(req nip46.Call)
}

// keyedLocks is one mutex per (client, request id), made on demand and forgotten when unused.
type keyedLocks struct {
	mu sync.Mutex
	m  map[holdKey]*keyedLock
}

type keyedLock struct {
	mu    sync.Mutex
	users int
}

// lock locks key's mutex and returns its unlock.
func (k *keyedLocks) lock(key holdKey) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[holdKey]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.users++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.users--; l.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// AccountKey is this co-signer's private account key as the Service uses it (satisfied by
// *keystore.Keys): the key source of the PSBT signer, and the identity (BIP32 master
// fingerprint, account path, xpub) that finds its slot in the descriptor.
type AccountKey interface {
	psbt.KeySource
	MasterFingerprint() [4]byte
	AccountPath() []uint32
	AccountXPub() string
	KeyOrigin() string
}

// Option configures a Service.
type Option func(*Service)

// Responder delivers the late answer to a request that was answered with auth_url: result on
// success, or err (its nip46.MethodError wire form, see nip46.AsMethodError) on refusal, to
// every relay the client uses. It returns an error only if no relay accepted the answer.
// Implemented by *signer.RemoteSigner.
type Responder interface {
	Respond(ctx context.Context, client, requestID, result string, err error) error
}

// WithResponder sets the Responder that delivers late answers to held requests (none: ended
// holds of NIP-46 clients stay unanswered, and are answered by a later Service given one).
func WithResponder(r Responder) Option { return func(s *Service) { s.responder = r } }

// WithTxConfirmed sets how the Service tells whether a wallet transaction is confirmed (for
// replaceable coins: a coin spent by a confirmed transaction is gone for good; none: no coin
// is replaceable).
func WithTxConfirmed(f func(txid chainhash.Hash) bool) Option {
	return func(s *Service) { s.txConfirmed = f }
}

// WithSpendFacts sets where the spend exposure reads proven facts. Without it nothing is ever
// settled: every signed transaction stays outstanding (the safe reading).
func WithSpendFacts(f SpendFacts) Option { return func(s *Service) { s.facts = f } }

// WithReplaceable sets where the analysis of a PSBT built by one of the policy's automations
// (client "automation:<name>") finds the coins spent by this co-signer's own unconfirmed
// transactions (an RBF fee bump spends them again): outbound.Replaceable. Inbound requests
// never see them: for a Nostr client such a coin is not unspent.
func WithReplaceable(f func(op wire.OutPoint) (psbt.Coin, bool)) Option {
	return func(s *Service) { s.replaceable = f }
}

// WithClock replaces time.Now (tests).
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithHoldURL sets the base of the auth_url given for held requests: BASE/requests/<token>,
// served by HTTPHandler (for example "http://127.0.0.1:8080", the daemon's health address).
func WithHoldURL(base string) Option {
	return func(s *Service) { s.holdURL = strings.TrimSuffix(base, "/") }
}

// WithTick sets how often Run re-decides held requests and reconciles the spend ledger
// (default 2s).
func WithTick(d time.Duration) Option { return func(s *Service) { s.tick = d } }

// NewService checks that desc contains this co-signer's key (same master fingerprint, account
// path and xpub) and returns the Service. policy is called once per decision, so a reloaded
// policy applies to the next one.
func NewService(desc *descriptor.Descriptor, keys AccountKey, chain psbt.ChainView, pol func() *policy.Policy, db Store, log *slog.Logger, opts ...Option) (*Service, error) {
	slot := -1
	for i, k := range desc.Keys() {
		if k.Fingerprint == keys.MasterFingerprint() && slices.Equal(k.OriginPath, keys.AccountPath()) &&
			k.XPub.String() == keys.AccountXPub() {
			slot = i
		}
	}
	if slot < 0 {
		return nil, fmt.Errorf("psbtflow: the registered descriptor does not contain this co-signer's key %s", keys.KeyOrigin())
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Service{desc: desc, slot: slot, keys: keys, chain: chain, policy: pol, db: db, log: log.With("component", "psbtflow"),
		now: time.Now, tick: 2 * time.Second, wake: make(chan struct{}, 1), limits: DefaultLimits(), sweepEvery: defaultSweepEvery}
	for _, o := range opts {
		o(s)
	}
	s.book.reset()
	s.sweepDue.Store(true)
	return s, nil
}

// chainFor is the wallet view a request from client is analysed against: the watcher's, plus
// the coins spent by this co-signer's own unconfirmed transactions (which an RBF replacement
// spends again; see replaceable.go), plus, for the policy's automations, the coins of the
// engine's own broadcast proposals. Safe for concurrent use.
func (s *Service) chainFor(ctx context.Context, client string) psbt.ChainView {
	own := s.replaceable
	if !strings.HasPrefix(client, policy.AutomationClientPrefix) {
		own = nil
	}
	return replaceableView{ChainView: s.chain, more: func(op wire.OutPoint) (psbt.Coin, bool) {
		if c, ok := s.replaceableCoin(ctx, op); ok {
			return c, true
		}
		if own != nil {
			return own(op)
		}
		return psbt.Coin{}, false
	}}
}

// replaceableView adds coins spent by our own unconfirmed transactions to a wallet view.
type replaceableView struct {
	psbt.ChainView
	more func(op wire.OutPoint) (psbt.Coin, bool)
}

func (v replaceableView) Coin(op wire.OutPoint) (psbt.Coin, bool) {
	if c, ok := v.ChainView.Coin(op); ok {
		return c, true
	}
	return v.more(op)
}

func (s *Service) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// options are the sign_psbt options object (second param).
type options struct {
	Network string `json:"network"`
}

// SignPSBT answers sign_psbt [psbt, options?] (docs/nip46-clients.md). The result is the PSBT
// with this co-signer's partial signatures, in the request's encoding. Errors are
// *nip46.MethodError (unauthorized, rate_limited, invalid_params, invalid_psbt, wrong_network,
// not_our_wallet, unsafe_psbt, policy_denied, internal) or *nip46.HeldError when the policy
// holds the request (the answer follows through the Responder). The same (client, id) is
// answered again from the store, never evaluated twice.
func (s *Service) SignPSBT(ctx context.Context, req nip46.Call) (string, error) {
	pol, now, pre, err := s.admit(ctx, req)
	if err != nil {
		return "", err
	}
	return s.signOnce(ctx, req, pol, now, func() verdict { return s.decideFrom(ctx, req, pre, pol, now, time.Time{}, nil) })
}

// Decide is the sign_psbt decision for a PSBT this co-signer's outbound engine built itself,
// already decoded, as client (an automation: "automation:<name>") under request id: the same
// path as SignPSBT after decoding — authorize, analyse, spend ledger, policy, sign — with the
// same sign_requests row (the PSBT as base64 names the request and is what a hold keeps), audit
// entry and ledger reservation. It returns a signed copy of p (p is not modified); a repeated
// (client, id) is answered from the store. Errors are SignPSBT's: *nip46.MethodError (see
// Refused) or *nip46.HeldError (see Held).
func (s *Service) Decide(ctx context.Context, client, id string, p *btcpsbt.Packet) (*btcpsbt.Packet, error) {
	text, err := psbt.Encode(p, psbt.Base64)
	if err != nil {
		return nil, WireError(err)
	}
	req := nip46.Call{Client: client, ID: id, Method: "sign_psbt", Params: []string{text}}
	pol, now, _, err := s.admit(ctx, req)
	if err != nil {
		return nil, err
	}
	var signed *btcpsbt.Packet
	res, err := s.signOnce(ctx, req, pol, now, func() verdict {
		q, err := psbt.Clone(p)
		if err != nil {
			return s.refused("rejected", WireError(err), "decode", nil)
		}
		v := s.decidePacket(ctx, req, q, psbt.Base64, pol, now, time.Time{}, nil)
		if v.rec.State == store.RequestSigned {
			signed = q
		}
		return v
	})
	if err != nil {
		return nil, err
	}
	if signed != nil {
		return signed, nil
	}
	out, _, err := psbt.Decode(res) // answered from the store: a repeated request
	return out, err
}

// Held reports whether err (from SignPSBT or Decide) says the policy holds the request, with
// the hold's auth_url and reason.
func Held(err error) (url, reason string, ok bool) {
	var h *nip46.HeldError
	if !errors.As(err, &h) {
		return "", "", false
	}
	return h.URL, h.Reason, true
}

// Refused reports whether err (from SignPSBT or Decide) is a refusal, a NIP-46 error answer
// ("<code>: <message>"); transient is true when asking again may be answered otherwise
// (internal: not synced yet, a passing failure).
func Refused(err error) (text string, transient, ok bool) {
	var me *nip46.MethodError
	if !errors.As(err, &me) {
		return "", false, false
	}
	return me.Error(), me.Code == nip46.CodeInternal, true
}

// admit refuses, before anything is stored, a request the policy does not let this client
// make (audited), a malformed or oversized one, and any while the wallet view is not complete.
// It returns the policy, the time the request is decided under, and the PSBT as decoded for
// the count check (nil when the text does not decode: the decision records that refusal).
func (s *Service) admit(ctx context.Context, req nip46.Call) (*policy.Policy, time.Time, *decoded, error) {
	pol := s.policy()
	now := s.now()
	if d := policy.Authorize(pol, req.Client, req.Method, now); d.Outcome != policy.Allow {
		s.audit(ctx, req, "rejected", d, nil)
		return nil, now, nil, nip46.Errorf(nip46.CodeUnauthorized, "%s", d.Reason)
	}
	if len(req.Params) < 1 || len(req.Params) > 2 {
		return nil, now, nil, nip46.Errorf(nip46.CodeInvalidParams, "sign_psbt takes [psbt] or [psbt, options-json], got %d params", len(req.Params))
	}
	if err := s.limits.psbtLimits().CheckText(req.Params[0]); err != nil {
		// Refused before any write: the same text is refused the same way again.
		return nil, now, nil, WireError(err)
	}
	var pre *decoded
	if p, enc, err := psbt.Decode(req.Params[0]); err == nil {
		pre = &decoded{p: p, enc: enc}
		if err := s.limits.psbtLimits().CheckCounts(p); err != nil {
			// Refused before the lock and before any write, like an oversized text: the counts
			// are the text's own, so the same text is refused the same way again, and a client
			// sending PSBTs far over the bounds holds no other client's request up while its
			// refusals are recorded. (A text that does not decode is recorded and refused below.)
			return nil, now, nil, WireError(err)
		}
	}
	if !s.chain.Synced() {
		// A request already decided or held is answered from the store (signOnce), which needs
		// no wallet view: a client re-sending it after a restart, while the watcher syncs, gets
		// its signature, refusal or auth_url again — not "retry", which a client may take as
		// the request's answer and then miss the late answer of its hold.
		if prev, ok, err := s.db.SignRequestRow(ctx, req.Client, req.ID); err == nil && ok && prev.State != store.RequestReceived {
			return pol, now, pre, nil
		}
		// Not recorded: the same request is decided normally once the view is complete.
		return nil, now, nil, nip46.Errorf(nip46.CodeInternal, "the co-signer has not finished syncing its wallet with the Electrum server; retry in a moment")
	}
	return pol, now, pre, nil
}

// signOnce decides req once, under pol at now: a repeated (client, id) is answered from the
// store, a new one is rate-limited, then decided by decide and its verdict written.
func (s *Service) signOnce(ctx context.Context, req nip46.Call, pol *policy.Policy, now time.Time, decide func() verdict) (string, error) {
	defer s.requests.lock(holdKey{req.Client, req.ID})()

	h := sha256.Sum256([]byte(strings.Join(req.Params, "\x00")))
	prev, existed, err := s.db.BeginSignRequest(ctx, store.SignRequest{Client: req.Client, RequestID: req.ID, Method: req.Method, PSBTSHA256: h[:]})
	if err != nil {
		return "", err
	}
	if existed {
		if string(prev.PSBTSHA256) != string(h[:]) {
			return "", nip46.Errorf(nip46.CodeInvalidRequest, "request id %q was already used for a different PSBT", req.ID)
		}
		switch prev.State {
		case store.RequestSigned:
			s.log.Info("answering a repeated request from the store", "client", req.Client, "id", req.ID)
			return prev.Result, nil
		case store.RequestDenied, store.RequestFailed:
			return "", parseMethodError(prev.Error)
		case store.RequestHeld:
			hold, err := s.db.FindHold(ctx, req.Client, req.ID)
			if err != nil {
				return "", err
			}
			return "", &nip46.HeldError{URL: hold.URL, Reason: hold.Reason}
		}
		// state received: an earlier attempt stopped before deciding; decide now.
	} else if rates := pol.RateLimits(req.Client, now); len(rates) > 0 {
		recent := make([]int, len(rates))
		for i, r := range rates {
			n, err := s.db.CountRequests(ctx, req.Client, now.Add(-r.Per))
			if err != nil {
				return "", err
			}
			recent[i] = n - 1 // not counting this one
		}
		if d := policy.CheckRate(rates, recent); d.Outcome != policy.Allow {
			d.PolicyHash = pol.Hash
			me := nip46.Errorf(nip46.CodeRateLimited, "%s", d.Reason)
			v := s.refused("rejected", me, d.Rule, nil)
			v.decision = &d
			return s.finish(ctx, req, h[:], v, "")
		}
	}
	return s.finish(ctx, req, h[:], decide(), "")
}

// verdict is one decision as values: the answer, the request row's state, the audit entry, the
// policy decision (nil when refused before the policy was asked), and what to reserve or hold.
type verdict struct {
	result   string
	rec      store.SignRequest
	audit    store.AuditEntry
	decision *policy.Decision
	reserve  *store.Reservation
	pending  string // the reservation's key in the exposure book (see finishSigned)
	held     bool
	recheck  time.Time // when held: when to decide again with time alone (policy.NextChange); zero = never
}

func (s *Service) refused(decision string, me *nip46.MethodError, rule string, a *psbt.Analysis) verdict {
	state := store.RequestDenied
	if me.Code == nip46.CodeInternal {
		state = store.RequestFailed
	}
	ae := store.AuditEntry{Decision: decision, Rule: rule, Reason: me.Error()}
	fillAudit(&ae, a, s.limits.AuditDestinations)
	rec := store.SignRequest{State: state, Error: me.Error()}
	if a != nil {
		rec.UnsignedTxID = a.UnsignedTxID
	}
	return verdict{rec: rec, audit: ae}
}

// finish writes verdict v of a new request (holdState "") or of a held one (holdState = the
// hold's final state) and returns the answer.
func (s *Service) finish(ctx context.Context, req nip46.Call, psbtHash []byte, v verdict, holdState string) (string, error) {
	v.rec.Client, v.rec.RequestID, v.rec.Method, v.rec.PSBTSHA256 = req.Client, req.ID, req.Method, psbtHash
	v.audit.Client, v.audit.RequestID, v.audit.Method = req.Client, req.ID, req.Method
	d := store.Decided{Request: v.rec, Audit: v.audit, Reserve: v.reserve, HoldState: holdState}
	if v.decision != nil {
		d.PolicyHash = v.decision.PolicyHash
		if b, err := json.Marshal(v.decision.Explanation); err == nil {
			d.Explanation = string(b)
		}
	}
	var held *nip46.HeldError
	if v.held && holdState == "" {
		// The caps are checked and the new hold written under holdCap, so that concurrent
		// decisions cannot all pass the check.
		s.holdCap.Lock()
		defer s.holdCap.Unlock()
		if mine, all, err := s.db.CountWaitingHolds(ctx, req.Client); err != nil {
			return "", err
		} else if mine >= s.limits.MaxHoldsPerClient || all >= s.limits.MaxHolds {
			me := nip46.AsMethodError(errTooManyHolds(mine, all, s.limits))
			dec := v.decision
			v = s.refused("rejected", me, "max_holds", nil)
			v.decision = dec
			return s.finish(ctx, req, psbtHash, v, "")
		}
		token, err := newHoldToken()
		if err != nil {
			return "", err
		}
		held = &nip46.HeldError{URL: s.holdLink(token), Reason: v.decision.Rule + ": " + v.decision.Reason}
		d.NewHold = &store.Hold{Client: req.Client, RequestID: req.ID, Token: token, Params: req.Params, Rule: v.decision.Rule,
			HeldSince: s.now(), URL: held.URL, Reason: held.Reason}
	}
	if v.held && holdState != "" {
		return "", nil // still held: nothing changes
	}
	var err error
	if v.reserve != nil {
		err = s.finishSigned(ctx, d, v.pending)
	} else {
		err = s.db.FinishDecision(ctx, d)
	}
	if err != nil {
		return "", err
	}
	s.log.Info("sign_psbt decided", "client", req.Client, "id", req.ID, "decision", v.audit.Decision, "rule", v.audit.Rule,
		"reason", v.audit.Reason, "unsigned_txid", v.audit.UnsignedTxID, "outflow_sat", v.audit.OutflowSat, "fee_sat", v.audit.FeeSat,
		"policy", short(d.PolicyHash))
	if held != nil {
		s.mu.Lock()
		s.scheduleHold(holdKey{req.Client, req.ID}, v.recheck)
		s.mu.Unlock()
		return "", held
	}
	if v.rec.State != store.RequestSigned {
		return "", parseMethodError(v.rec.Error)
	}
	return v.result, nil
}

// newHoldToken is a hold's auth_url token: 128 random bits (crypto/rand), hex. It is stored
// with the hold and cannot be computed from the request (issue 11, finding 8); approvers
// name a held request by it (or by the unsigned txid).
func newHoldToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nip46.Errorf(nip46.CodeInternal, "hold token: %v", err)
	}
	return hex.EncodeToString(b[:]), nil
}

func (s *Service) holdLink(token string) string {
	if s.holdURL == "" {
		return "urn:cosigner:request:" + token
	}
	return s.holdURL + "/requests/" + token
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// decide is the whole decision for one request, as values. It reads the spend ledger (the
// totals the policy's velocity windows need) but writes nothing. heldSince and approvals are
// the hold's state when a held request is decided again.
func (s *Service) decide(ctx context.Context, req nip46.Call, pol *policy.Policy, now, heldSince time.Time, approvals []string) verdict {
	return s.decideFrom(ctx, req, nil, pol, now, heldSince, approvals)
}

// decoded is a request's PSBT as admit decoded it, so that the decision does not decode it
// again.
type decoded struct {
	p   *btcpsbt.Packet
	enc psbt.Encoding
}

// decideFrom is decide with the PSBT already decoded (pre; nil: decoded from req here).
func (s *Service) decideFrom(ctx context.Context, req nip46.Call, pre *decoded, pol *policy.Policy, now, heldSince time.Time, approvals []string) verdict {
	if len(req.Params) == 2 {
		var o options
		dec := json.NewDecoder(strings.NewReader(req.Params[1]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return s.refused("rejected", nip46.Errorf(nip46.CodeInvalidParams, "options must be a JSON object with only known keys (network): %v", err), "options", nil)
		}
		if o.Network != "" && !sameNetwork(o.Network, s.desc.Network()) {
			return s.refused("rejected", nip46.Errorf(nip46.CodeWrongNetwork, "request is for %q but this co-signer's wallet is on %s", o.Network, s.desc.Network().Name), "network", nil)
		}
	}
	if pre == nil {
		p, enc, err := psbt.Decode(req.Params[0])
		if err != nil {
			return s.refused("rejected", WireError(err), "decode", nil)
		}
		pre = &decoded{p: p, enc: enc}
	}
	return s.decidePacket(ctx, req, pre.p, pre.enc, pol, now, heldSince, approvals)
}

// decidePacket is decide after decoding: limits, analysis, spend ledger, policy, and the
// signature when allowed (added to p, answered in enc).
func (s *Service) decidePacket(ctx context.Context, req nip46.Call, p *btcpsbt.Packet, enc psbt.Encoding, pol *policy.Policy, now, heldSince time.Time, approvals []string) verdict {
	if err := s.limits.psbtLimits().CheckCounts(p); err != nil {
		return s.refused("rejected", WireError(err), "limits", nil)
	}
	chain := s.chainFor(ctx, req.Client)
	a, err := psbt.AnalyzeWith(p, s.desc, chain, psbt.AnalyzeOptions{AllowSighash: pol.AllowSighash(now)})
	if err != nil {
		me := WireError(err)
		if me.Code == nip46.CodeInternal {
			s.log.Error("analysis failed", "error", err)
		}
		return s.refused("rejected", me, "analysis", nil)
	}
	in := PolicyInput(req.Client, req.Method, now, p, a)
	in.HeldSince, in.Approvals = heldSince, approvals
	if s.onDecide != nil {
		s.onDecide(req)
	}
	d, pending, err := s.decideExposure(ctx, pol, &in, a)
	if err != nil {
		s.log.Error("spend ledger read failed", "error", err)
		return s.refused("error", nip46.AsMethodError(err), "ledger", a)
	}
	withDecision := func(v verdict) verdict { v.decision = &d; return v }
	switch d.Outcome {
	case policy.Unauthorized:
		return withDecision(s.refused("denied", nip46.Errorf(nip46.CodeUnauthorized, "%s", d.Reason), d.Rule, a))
	case policy.Deny:
		return withDecision(s.refused("denied", nip46.Errorf(nip46.CodePolicyDenied, "%s: %s", d.Rule, d.Reason), d.Rule, a))
	case policy.Hold:
		ae := store.AuditEntry{Decision: "held", Rule: d.Rule, Reason: d.Reason}
		fillAudit(&ae, a, s.limits.AuditDestinations)
		recheck, _ := policy.NextChange(pol, in)
		return verdict{rec: store.SignRequest{State: store.RequestHeld, UnsignedTxID: a.UnsignedTxID}, audit: ae, decision: &d, held: true, recheck: recheck}
	}
	n, err := psbt.SignInputs(p, a, s.desc, s.slot, s.keys, chain)
	if err != nil {
		s.dropPending(pending)
		s.log.Error("signing failed", "error", err)
		return withDecision(s.refused("error", nip46.AsMethodError(err), "sign", a))
	}
	out, err := psbt.Encode(p, enc)
	if err != nil {
		s.dropPending(pending)
		return withDecision(s.refused("error", nip46.AsMethodError(err), "encode", a))
	}
	ae := store.AuditEntry{Decision: "signed", Rule: d.Rule, Reason: fmt.Sprintf("%s; %d partial signature(s) added", d.Reason, n)}
	fillAudit(&ae, a, s.limits.AuditDestinations)
	res := &store.Reservation{TxID: a.UnsignedTxID, Client: req.Client, RequestID: req.ID, OutflowSat: int64(a.Outflow),
		Inputs: outpoints(a), At: now}
	return verdict{result: out, rec: store.SignRequest{State: store.RequestSigned, Result: out, UnsignedTxID: a.UnsignedTxID},
		audit: ae, decision: &d, reserve: res, pending: pending}
}

func outpoints(a *psbt.Analysis) []string {
	out := make([]string, len(a.Inputs))
	for i, x := range a.Inputs {
		out[i] = x.OutPoint
	}
	return out
}

// Explain is a dry run of a sign_psbt decision (cosigner policy test): decode and analyse
// psbtText against the wallet view, read the spend ledger, and evaluate pol for client at now.
// Nothing is signed or written. Errors are *nip46.MethodError for a PSBT that would be refused
// before the policy is asked.
func Explain(ctx context.Context, desc *descriptor.Descriptor, chain psbt.ChainView, db Ledger, pol *policy.Policy, client, psbtText string, now time.Time) (*psbt.Analysis, policy.Decision, error) {
	p, _, err := psbt.Decode(psbtText)
	if err != nil {
		return nil, policy.Decision{}, WireError(err)
	}
	a, err := psbt.AnalyzeWith(p, desc, chain, psbt.AnalyzeOptions{AllowSighash: pol.AllowSighash(now)})
	if err != nil {
		return nil, policy.Decision{}, WireError(err)
	}
	in := PolicyInput(client, "sign_psbt", now, p, a)
	if err := withLedger(ctx, db, pol, &in, a); err != nil {
		return a, policy.Decision{}, err
	}
	return a, policy.Evaluate(pol, in), nil
}

// PolicyInput builds the facts policy.Evaluate reads from an analysis (and the PSBT's output
// scripts, which destination lists match): amounts, fee, feerate, locktime and its kind, RBF,
// PSBT version, script type, per input its sighash type, spending path and relative lock, and
// the warning codes.
func PolicyInput(client, method string, now time.Time, p *btcpsbt.Packet, a *psbt.Analysis) policy.Input {
	in := policy.Input{Client: client, Method: method, Now: now, UnsignedTxID: a.UnsignedTxID, InputTotal: a.InputTotal,
		ChangeTotal: a.ChangeTotal, Outflow: a.Outflow, Fee: a.Fee, VSize: a.VSize, FeeRate: policy.FeeRate(a.FeeRate),
		LockTime: a.LockTime, RBF: a.RBF, PSBTVersion: a.PSBTVersion, ScriptType: a.ScriptType, LockTimeKind: a.LockTimeKind}
	for _, w := range a.Warnings {
		in.Warnings = append(in.Warnings, w.Code)
	}
	for _, x := range a.Inputs {
		in.Inputs = append(in.Inputs, policy.InputFact{OutPoint: x.OutPoint, Value: x.Value, Confirmations: x.Confirmations,
			SighashType: x.SighashType, ScriptType: x.ScriptType, SpendingPath: x.SpendingPath, RelativeLock: x.RelativeLock})
	}
	for _, o := range a.Outputs {
		of := policy.OutputFact{Index: o.Index, Address: o.Address, Value: o.Value, Kind: o.Kind}
		if o.Index >= 0 && o.Index < len(p.UnsignedTx.TxOut) {
			of.PkScript = p.UnsignedTx.TxOut[o.Index].PkScript
		}
		in.Outputs = append(in.Outputs, of)
	}
	return in
}

func (s *Service) audit(ctx context.Context, req nip46.Call, decision string, d policy.Decision, a *psbt.Analysis) {
	ae := store.AuditEntry{Client: req.Client, RequestID: req.ID, Method: req.Method, Decision: decision, Rule: d.Rule, Reason: d.Reason}
	fillAudit(&ae, a, s.limits.AuditDestinations)
	expl, _ := json.Marshal(d.Explanation)
	if err := s.db.AppendDecisionAudit(ctx, ae, d.PolicyHash, string(expl)); err != nil {
		s.log.Error("audit write failed", "error", err)
	}
}

func sameNetwork(name string, p *chaincfg.Params) bool {
	name = strings.ToLower(name)
	switch p.Net {
	case chaincfg.MainNetParams.Net:
		return name == "mainnet" || name == "bitcoin" || name == "main"
	case chaincfg.RegressionNetParams.Net:
		return name == "regtest"
	case chaincfg.SigNetParams.Net:
		return name == "signet"
	case netparams.TestNet4Magic:
		return name == "testnet4"
	default:
		return name == "testnet" || name == "testnet3" || name == p.Name
	}
}

func parseMethodError(s string) *nip46.MethodError {
	code, msg, ok := strings.Cut(s, ": ")
	if !ok {
		return &nip46.MethodError{Code: nip46.CodeInternal, Message: s}
	}
	return &nip46.MethodError{Code: code, Message: msg}
}

// Run re-decides held requests when they are due (cooling-off over, approvals in) and delivers
// their late answers, every tick and whenever an approval arrives, and sweeps the spend exposure
// when one is due (see exposure_reconcile.go; chain events move it in between), until ctx
// ends. It returns nil when ctx is cancelled.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.tick)
	defer t.Stop()
	for {
		s.Tick(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.wake:
		}
	}
}

// Tick does one round of Run's work now: decide again the waiting holds that are due (see
// holdSchedule), answer the holds that ended, sweep the spend exposure when a sweep is due (the
// first tick, after a chain event failed, every sweepEvery). Errors are logged (the next tick
// retries).
func (s *Service) Tick(ctx context.Context) {
	if s.chain.Synced() {
		if err := s.processHolds(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("held requests", "error", err)
		}
		if s.sweepNeeded() {
			if err := s.ReconcileExposure(ctx); err != nil && ctx.Err() == nil {
				s.sweepDue.Store(true)
				s.log.Error("spend exposure reconcile", "error", err)
			}
		}
	}
	if err := s.respondEnded(ctx); err != nil && ctx.Err() == nil {
		s.log.Warn("late answers", "error", err)
	}
}

func isMethodError(err error) bool {
	var me *nip46.MethodError
	return errors.As(err, &me)
}

// respondEnded sends the late answer of every ended hold not yet answered.
func (s *Service) respondEnded(ctx context.Context) error {
	r := s.responder
	if r == nil {
		return nil
	}
	holds, err := s.db.UnrespondedHolds(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, h := range holds {
		if strings.HasPrefix(h.Client, policy.AutomationClientPrefix) {
			// An automation's own request: no NIP-46 client waits for it; the outbound engine
			// reads the decision by asking again under the same id.
			if err := s.db.MarkHoldResponded(ctx, h.Client, h.RequestID); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		rec, ok, err := s.db.SignRequestRow(ctx, h.Client, h.RequestID)
		if err != nil || !ok {
			errs = append(errs, fmt.Errorf("held request %s: %v", h.RequestID, err))
			continue
		}
		var answerErr error
		if rec.State != store.RequestSigned {
			answerErr = parseMethodError(rec.Error)
		}
		if err := r.Respond(ctx, h.Client, h.RequestID, rec.Result, answerErr); err != nil {
			errs = append(errs, fmt.Errorf("answer held request %s: %w", h.RequestID, err))
			continue
		}
		if err := s.db.MarkHoldResponded(ctx, h.Client, h.RequestID); err != nil {
			errs = append(errs, err)
		}
		s.log.Info("held request answered", "client", h.Client, "id", h.RequestID, "state", rec.State)
	}
	return errors.Join(errs...)
}
