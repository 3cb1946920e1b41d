package psbtflow

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// Approve answers approve [token or unsigned txid, decision] (docs/nip46-clients.md, "Other extension
// methods"). The held request is named by the token of its auth_url or by its unsigned txid,
// never by its request id: clients choose request ids, so an id could name another client's
// payment (issue 11, finding 6); the requesting client may also name its own request by id to
// cancel it. decision is "approve" or "deny" from an approver named in every policy in force,
// or "cancel" from such an approver or from the client whose request is held. The approver's
// signed kind-24133 event (req.Event) is kept in the approvals table as the evidence. The result
// is a JSON ApproveResult, which echoes what was approved (unsigned txid, outflow,
// destinations); the held request is decided again at once. Errors: unauthorized (not an
// approver), invalid_params (bad decision, no such held request, several match),
// invalid_request (the hold already ended).
func (s *Service) Approve(ctx context.Context, req nip46.Call) (string, error) {
	if len(req.Params) != 2 {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "approve takes [token or unsigned txid, approve|deny|cancel], got %d params", len(req.Params))
	}
	id, decision := req.Params[0], strings.ToLower(req.Params[1])
	if decision != "approve" && decision != "deny" && decision != "cancel" {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "decision must be approve, deny or cancel, got %q", req.Params[1])
	}
	pol := s.policy()
	now := s.now()
	name, isApprover := policy.ApproverName(pol, req.Client, now)
	holds, err := s.db.HoldsForApproval(ctx, id)
	if err != nil {
		return "", err
	}
	if !isApprover {
		// A client may only cancel its own held request (by token, txid or its own request id).
		mine := holds[:0:0]
		for _, h := range holds {
			if h.Client == req.Client {
				mine = append(mine, h)
			}
		}
		if h, err := s.db.FindHold(ctx, req.Client, id); err == nil && !slices.ContainsFunc(mine, func(x store.Hold) bool { return x.RequestID == h.RequestID }) {
			mine = append(mine, h)
		}
		if decision != "cancel" || len(mine) == 0 {
			d := policy.Decision{Rule: "approvers", Reason: "only approvers named in every policy in force may approve or deny a held request", PolicyHash: pol.Hash}
			s.audit(ctx, req, "rejected", d, nil)
			return "", nip46.Errorf(nip46.CodeUnauthorized, "%s", d.Reason)
		}
		holds, name = mine, "the requesting client"
	}
	switch {
	case len(holds) == 0:
		return "", nip46.Errorf(nip46.CodeInvalidParams, "no held request with token or unsigned txid %q (request ids are not accepted: use the token from the auth_url or the unsigned txid)", id)
	case len(holds) > 1:
		return "", nip46.Errorf(nip46.CodeInvalidParams, "%d held requests match %q; use the token from the auth_url", len(holds), id)
	}
	h := holds[0]
	if h.State != store.HoldWaiting {
		return "", nip46.Errorf(nip46.CodeInvalidRequest, "request %q is no longer held (%s)", h.RequestID, h.State)
	}
	evidence := string(req.Event)
	res := s.approveResult(ctx, h, decision)
	if err := s.db.AddApproval(ctx, store.Approval{Client: h.Client, RequestID: h.RequestID, Approver: req.Client, Decision: decision, Event: evidence, At: now}); err != nil {
		return "", err
	}
	s.audit(ctx, nip46.Call{Client: h.Client, ID: h.RequestID, Method: "approve"}, "approval",
		policy.Decision{Rule: h.Rule, Reason: name + " (" + req.Client + "): " + decision, PolicyHash: pol.Hash}, nil)
	s.log.Info("approval recorded", "request", h.RequestID, "approver", name, "decision", decision, "unsigned_txid", res.UnsignedTxID)
	if err := s.processHolds(ctx, holdKey{h.Client, h.RequestID}); err != nil {
		s.log.Error("held requests", "error", err)
	}
	s.kick() // deliver the late answer
	st, err := s.status(ctx, h.Client, h.RequestID)
	if err != nil {
		return "", err
	}
	res.State = st.State
	b, _ := json.Marshal(res)
	return string(b), nil
}

// ApproveResult is the answer to approve: what the decision was recorded on, so that the
// approver sees the payment it approved.
type ApproveResult struct {
	RequestID    string `json:"request_id"`
	Decision     string `json:"decision"`
	State        string `json:"state"` // the request's state after the decision (held, signed, denied…)
	UnsignedTxID string `json:"unsigned_txid"`
	// OutflowSat and Destinations are from the held PSBT analysed now against the wallet view
	// (absent when it no longer analyses, e.g. a coin was spent meanwhile). Destinations are
	// the largest spend outputs (AuditSummary's bound); OtherDestinations counts the rest.
	OutflowSat        *int64             `json:"outflow_sat,omitempty"`
	Destinations      []AuditDestination `json:"destinations,omitempty"`
	OtherDestinations int                `json:"other_destinations,omitempty"`
}

// approveResult describes hold h for the approve answer.
func (s *Service) approveResult(ctx context.Context, h store.Hold, decision string) ApproveResult {
	res := ApproveResult{RequestID: h.RequestID, Decision: decision}
	if rec, ok, err := s.db.SignRequestRow(ctx, h.Client, h.RequestID); err == nil && ok {
		res.UnsignedTxID = rec.UnsignedTxID
	}
	if len(h.Params) == 0 {
		return res
	}
	p, _, err := psbt.Decode(h.Params[0])
	if err != nil {
		return res
	}
	a, err := psbt.AnalyzeWith(p, s.desc, s.chainFor(ctx, h.Client), psbt.AnalyzeOptions{AllowSighash: s.policy().AllowSighash(s.now())})
	if err != nil {
		return res
	}
	sum := Summarize(a, s.limits.AuditDestinations)
	out := int64(a.Outflow)
	res.UnsignedTxID, res.OutflowSat, res.Destinations, res.OtherDestinations = a.UnsignedTxID, &out, sum.Destinations, sum.OtherDestinations
	return res
}

// RequestStatus is what psbt_status and the auth_url page show about a request.
type RequestStatus struct {
	RequestID    string           `json:"request_id"`
	State        string           `json:"state"` // received | held | signed | denied | failed
	UnsignedTxID string           `json:"unsigned_txid,omitempty"`
	Error        string           `json:"error,omitempty"`
	Hold         *HoldStatus      `json:"hold,omitempty"`
	Approvals    []ApprovalStatus `json:"approvals,omitempty"`
}

// HoldStatus is a held request's hold.
type HoldStatus struct {
	Rule      string    `json:"rule"`
	State     string    `json:"state"` // waiting | released | denied | cancelled
	HeldSince time.Time `json:"held_since"`
	Reason    string    `json:"reason"`
	URL       string    `json:"url"`
}

// ApprovalStatus is one approver's decision (the evidence event is in the store, not shown).
type ApprovalStatus struct {
	Approver string    `json:"approver"`
	Decision string    `json:"decision"`
	At       time.Time `json:"at"`
}

func (s *Service) status(ctx context.Context, client, id string) (RequestStatus, error) {
	rec, ok, err := s.db.SignRequestRow(ctx, client, id)
	if err != nil {
		return RequestStatus{}, err
	}
	if !ok {
		return RequestStatus{}, nip46.Errorf(nip46.CodeInvalidParams, "no request %q", id)
	}
	st := RequestStatus{RequestID: id, State: rec.State, UnsignedTxID: rec.UnsignedTxID, Error: rec.Error}
	h, err := s.db.FindHold(ctx, client, id)
	switch {
	case errors.Is(err, store.ErrNoSuchHold):
		return st, nil
	case err != nil:
		return st, err
	}
	st.Hold = &HoldStatus{Rule: h.Rule, State: h.State, HeldSince: h.HeldSince.UTC(), Reason: h.Reason, URL: h.URL}
	as, err := s.db.Approvals(ctx, client, id)
	if err != nil {
		return st, err
	}
	for _, a := range as {
		name := a.Approver
		if n, ok := policy.ApproverName(s.policy(), a.Approver, s.now()); ok {
			name = n
		}
		st.Approvals = append(st.Approvals, ApprovalStatus{Approver: name, Decision: a.Decision, At: a.At.UTC()})
	}
	return st, nil
}

// PSBTStatus answers psbt_status [request id or unsigned txid]: the JSON RequestStatus of the
// calling client's request(s) — an array when several match. Approvers may ask about any held
// request. Errors: unauthorized, invalid_params (no such request).
func (s *Service) PSBTStatus(ctx context.Context, req nip46.Call) (string, error) {
	if len(req.Params) != 1 {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "psbt_status takes [request id or unsigned txid], got %d params", len(req.Params))
	}
	pol := s.policy()
	now := s.now()
	_, isApprover := policy.ApproverName(pol, req.Client, now)
	if d := policy.Authorize(pol, req.Client, req.Method, now); d.Outcome != policy.Allow && !isApprover {
		return "", nip46.Errorf(nip46.CodeUnauthorized, "%s", d.Reason)
	}
	type key struct{ client, id string }
	var keys []key
	recs, err := s.db.FindSignRequests(ctx, req.Client, req.Params[0])
	if err != nil {
		return "", err
	}
	for _, r := range recs {
		keys = append(keys, key{req.Client, r.RequestID})
	}
	if isApprover {
		hs, err := s.db.HoldsByRequestID(ctx, req.Params[0])
		if err != nil {
			return "", err
		}
		for _, h := range hs {
			if h.Client != req.Client {
				keys = append(keys, key{h.Client, h.RequestID})
			}
		}
	}
	if len(keys) == 0 {
		return "", nip46.Errorf(nip46.CodeInvalidParams, "no request with id or unsigned txid %q", req.Params[0])
	}
	var out []RequestStatus
	for _, k := range keys {
		st, err := s.status(ctx, k.client, k.id)
		if err != nil {
			return "", err
		}
		out = append(out, st)
	}
	var b []byte
	if len(out) == 1 {
		b, _ = json.Marshal(out[0])
	} else {
		b, _ = json.Marshal(out)
	}
	return string(b), nil
}

// HTTPHandler serves GET /requests/{token}: the RequestStatus of the held request whose auth_url
// carries token, as JSON (404 when unknown). Mount it on the daemon's health address.
func (s *Service) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /requests/{token}", func(rw http.ResponseWriter, r *http.Request) {
		h, err := s.db.FindHold(r.Context(), "", r.PathValue("token"))
		if errors.Is(err, store.ErrNoSuchHold) {
			http.Error(rw, "no such held request", http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(rw, "status unavailable", http.StatusInternalServerError)
			return
		}
		st, err := s.status(r.Context(), h.Client, h.RequestID)
		if err != nil {
			http.Error(rw, "status unavailable", http.StatusInternalServerError)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		json.NewEncoder(rw).Encode(st)
	})
	return mux
}
