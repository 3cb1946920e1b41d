package psbtflow

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/store"
)

// Service handles sign_psbt for the remote signer: it implements signer.PSBTHandler.
type Service struct {
	desc   *descriptor.Descriptor
	slot   int
	keys   *signer.Keys
	chain  ChainView
	policy func() *policy.Policy
	db     *store.DB
	log    *slog.Logger

	// mu serialises sign_psbt so that one (client, id) is never evaluated twice at once and two
	// conflicting PSBTs are never analysed against the same UTXO snapshot concurrently.
	mu sync.Mutex
}

// NewService checks that desc contains this co-signer's key (same master fingerprint, account
// path and xpub) and returns the Service. policy is called once per request, so a reloaded
// policy applies to the next request.
func NewService(desc *descriptor.Descriptor, keys *signer.Keys, chain ChainView, pol func() *policy.Policy, db *store.DB, log *slog.Logger) (*Service, error) {
	slot := -1
	for i, k := range desc.Keys() {
		if k.Fingerprint == keys.MasterFingerprint() && slices.Equal(k.OriginPath, keys.AccountPath()) &&
			k.XPub.String() == keys.Public.AccountXPub {
			slot = i
		}
	}
	if slot < 0 {
		return nil, fmt.Errorf("psbtflow: the registered descriptor does not contain this co-signer's key %s", keys.Public.KeyOrigin())
	}
	if log == nil {
		log = slog.Default()
	}
	return &Service{desc: desc, slot: slot, keys: keys, chain: chain, policy: pol, db: db, log: log.With("component", "psbtflow")}, nil
}

// options are the sign_psbt options object (second param).
type options struct {
	Network string `json:"network"`
}

// SignPSBT answers sign_psbt [psbt, options?] (DESIGN.md "sign_psbt"). The result is the PSBT
// with this co-signer's partial signatures, in the request's encoding. Errors are
// *signer.MethodError: unauthorized, invalid_params, invalid_psbt, wrong_network,
// not_our_wallet, unsafe_psbt, policy_denied, or internal. The same (client, id) is answered
// again from the store, never evaluated twice.
func (s *Service) SignPSBT(ctx context.Context, req signer.Request) (string, error) {
	pol := s.policy()
	if d := policy.Authorize(pol, req.Client, req.Method); d.Outcome != policy.Allow {
		s.audit(ctx, req, "rejected", d.Rule, d.Reason, nil)
		return "", signer.Errorf(signer.CodeUnauthorized, "%s", d.Reason)
	}
	if len(req.Params) < 1 || len(req.Params) > 2 {
		return "", signer.Errorf(signer.CodeInvalidParams, "sign_psbt takes [psbt] or [psbt, options-json], got %d params", len(req.Params))
	}
	if !s.chain.Synced() {
		// Not recorded: the same request is decided normally once the view is complete.
		return "", signer.Errorf(signer.CodeInternal, "the co-signer has not finished syncing its wallet with the Electrum server; retry in a moment")
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	h := sha256.Sum256([]byte(strings.Join(req.Params, "\x00")))
	prev, existed, err := s.db.BeginSignRequest(ctx, store.SignRequest{Client: req.Client, RequestID: req.ID, Method: req.Method, PSBTSHA256: h[:]})
	if err != nil {
		return "", err
	}
	if existed {
		if string(prev.PSBTSHA256) != string(h[:]) {
			return "", signer.Errorf(signer.CodeInvalidRequest, "request id %q was already used for a different PSBT", req.ID)
		}
		switch prev.State {
		case store.RequestSigned:
			s.log.Info("answering a repeated request from the store", "client", req.Client, "id", req.ID)
			return prev.Result, nil
		case store.RequestDenied, store.RequestFailed:
			return "", parseMethodError(prev.Error)
		}
		// state received: an earlier attempt stopped before deciding; decide now.
	}
	result, rec, audit := s.decide(req, pol)
	rec.Client, rec.RequestID, rec.Method, rec.PSBTSHA256 = req.Client, req.ID, req.Method, h[:]
	audit.Client, audit.RequestID, audit.Method = req.Client, req.ID, req.Method
	if err := s.db.FinishSignRequest(ctx, rec, audit); err != nil {
		return "", err
	}
	s.log.Info("sign_psbt decided", "client", req.Client, "id", req.ID, "decision", audit.Decision, "rule", audit.Rule,
		"reason", audit.Reason, "unsigned_txid", audit.UnsignedTxID, "outflow_sat", audit.OutflowSat, "fee_sat", audit.FeeSat)
	if rec.State != store.RequestSigned {
		return "", parseMethodError(rec.Error)
	}
	return result, nil
}

// decide is the whole decision for one request, as values: the answer, the request row's final
// state, and the audit entry. Nothing is written here.
func (s *Service) decide(req signer.Request, pol *policy.Policy) (string, store.SignRequest, store.AuditEntry) {
	fail := func(decision string, me *signer.MethodError, rule string, a *Analysis) (string, store.SignRequest, store.AuditEntry) {
		state := store.RequestDenied
		if me.Code == signer.CodeInternal {
			state = store.RequestFailed
		}
		ae := store.AuditEntry{Decision: decision, Rule: rule, Reason: me.Error()}
		fillAudit(&ae, a)
		rec := store.SignRequest{State: state, Error: me.Error()}
		if a != nil {
			rec.UnsignedTxID = a.UnsignedTxID
		}
		return "", rec, ae
	}
	if len(req.Params) == 2 {
		var o options
		dec := json.NewDecoder(strings.NewReader(req.Params[1]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&o); err != nil {
			return fail("rejected", signer.Errorf(signer.CodeInvalidParams, "options must be a JSON object with only known keys (network): %v", err), "options", nil)
		}
		if o.Network != "" && !sameNetwork(o.Network, s.desc.Network()) {
			return fail("rejected", signer.Errorf(signer.CodeWrongNetwork, "request is for %q but this co-signer's wallet is on %s", o.Network, s.desc.Network().Name), "network", nil)
		}
	}
	p, enc, err := Decode(req.Params[0])
	if err != nil {
		return fail("rejected", signer.AsMethodError(err), "decode", nil)
	}
	a, err := Analyze(p, s.desc, s.chain)
	if err != nil {
		me := signer.AsMethodError(err)
		if me.Code == signer.CodeInternal {
			s.log.Error("analysis failed", "error", err)
		}
		return fail("rejected", me, "analysis", nil)
	}
	d := policy.Evaluate(pol, policy.Input{Client: req.Client, Method: req.Method, Outflow: a.Outflow, Fee: a.Fee})
	switch d.Outcome {
	case policy.Unauthorized:
		return fail("denied", signer.Errorf(signer.CodeUnauthorized, "%s", d.Reason), d.Rule, a)
	case policy.Deny:
		return fail("denied", signer.Errorf(signer.CodePolicyDenied, "%s: %s", d.Rule, d.Reason), d.Rule, a)
	}
	n, err := SignInputs(p, a, s.desc, s.slot, s.keys, s.chain)
	if err != nil {
		s.log.Error("signing failed", "error", err)
		return fail("error", signer.AsMethodError(err), "sign", a)
	}
	out, err := Encode(p, enc)
	if err != nil {
		return fail("error", signer.AsMethodError(err), "encode", a)
	}
	ae := store.AuditEntry{Decision: "signed", Rule: d.Rule, Reason: fmt.Sprintf("%s; %d partial signature(s) added", d.Reason, n)}
	fillAudit(&ae, a)
	return out, store.SignRequest{State: store.RequestSigned, Result: out, UnsignedTxID: a.UnsignedTxID}, ae
}

func fillAudit(ae *store.AuditEntry, a *Analysis) {
	if a == nil {
		return
	}
	ae.UnsignedTxID, ae.OutflowSat, ae.FeeSat = a.UnsignedTxID, int64(a.Outflow), int64(a.Fee)
	if b, err := json.Marshal(a); err == nil {
		ae.Analysis = string(b)
	}
}

func (s *Service) audit(ctx context.Context, req signer.Request, decision, rule, reason string, a *Analysis) {
	ae := store.AuditEntry{Client: req.Client, RequestID: req.ID, Method: req.Method, Decision: decision, Rule: rule, Reason: reason}
	fillAudit(&ae, a)
	if err := s.db.AppendAudit(ctx, ae); err != nil {
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
	default:
		return name == "testnet" || name == "testnet3" || name == p.Name
	}
}

func parseMethodError(s string) *signer.MethodError {
	code, msg, ok := strings.Cut(s, ": ")
	if !ok {
		return &signer.MethodError{Code: signer.CodeInternal, Message: s}
	}
	return &signer.MethodError{Code: code, Message: msg}
}
