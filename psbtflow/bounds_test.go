package psbtflow

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// countingChain counts the wallet view's coin look-ups: each analysis of a PSBT makes some.
type countingChain struct {
	psbt.ChainView
	n atomic.Int64
}

func (c *countingChain) Coin(op wire.OutPoint) (psbt.Coin, bool) {
	c.n.Add(1)
	return c.ChainView.Coin(op)
}

// rebuild replaces e's Service by one over chain (nil: the fixture's) with opts.
func (e *holdEnv) rebuild(t *testing.T, chain psbt.ChainView, opts ...Option) {
	t.Helper()
	if chain == nil {
		chain = e.f.chain
	}
	opts = append([]Option{WithClock(func() time.Time { return e.now }), WithHoldURL("http://127.0.0.1:8080/"), WithResponder(e.ans)}, opts...)
	var err error
	if e.svc, err = NewService(e.f.desc, e.f.keys[1], chain, func() *policy.Policy { return e.pol }, e.db, quiet, opts...); err != nil {
		t.Fatal(err)
	}
}

// addClient makes name (a new key) a client of e's policy and returns its pubkey.
func (e *holdEnv) addClient(t *testing.T, name string) string {
	t.Helper()
	pk, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	e.doc = strings.Replace(e.doc, "clients:\n", "clients:\n  - {name: "+name+", pubkey: "+pk+"}\n", 1)
	p, err := policy.Parse("p.yaml", []byte(e.doc))
	if err != nil {
		t.Fatal(err)
	}
	e.pol = p
	return pk
}

func methodCode(err error) string {
	var me *nip46.MethodError
	if errors.As(err, &me) {
		return me.Code
	}
	return ""
}

func tokenOf(t *testing.T, err error) string {
	t.Helper()
	return strings.TrimPrefix(heldURL(t, err), "http://127.0.0.1:8080/requests/")
}

// TestManyOutputsRefusedBeforeAnalysis (issue 11, finding 4): one wallet coin and 4,000
// zero-value outputs are refused (unsafe_psbt) before the analysis and before anything is
// recorded (no request row, no audit entry): a client flooding such PSBTs costs no durable
// write and holds no other client's request up behind the service's lock.
func TestManyOutputsRefusedBeforeAnalysis(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - {name: no, action: deny}\n")
	chain := &countingChain{ChainView: e.f.chain}
	e.rebuild(t, chain)
	ctx := context.Background()
	s := manyOutputsPSBT(t, e.f, 4000)
	_, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "big", Method: "sign_psbt", Params: []string{s}})
	if methodCode(err) != nip46.CodeUnsafePSBT || !strings.Contains(err.Error(), "4000 outputs") || !strings.Contains(err.Error(), "at most 500") {
		t.Fatalf("err = %v, want unsafe_psbt naming 4000 outputs and the limit 500", err)
	}
	if n := chain.n.Load(); n != 0 {
		t.Fatalf("the PSBT was analysed (%d coin look-ups) before being refused", n)
	}
	if _, ok, err := e.db.SignRequestRow(ctx, e.client, "big"); ok || err != nil {
		t.Fatalf("a request over the output limit was recorded (%v)", err)
	}
	var rows int
	if err := e.db.SQL.QueryRow(`SELECT count(*) FROM audit_log WHERE request_id = 'big'`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("a request over the output limit has %d audit entries (%v)", rows, err)
	}
	// Inputs too.
	e.rebuild(t, chain, WithLimits(Limits{MaxInputs: 1}))
	op1, op2 := e.f.addCoin(t, 0, 4, 70_000), e.f.addCoin(t, 0, 5, 70_000)
	two, _ := psbt.Encode(e.f.buildPSBT(t, []wire.OutPoint{op1, op2}, 100_000, 39_000, 2), psbt.Base64)
	if _, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "two", Method: "sign_psbt", Params: []string{two}}); methodCode(err) != nip46.CodeUnsafePSBT || !strings.Contains(err.Error(), "2 inputs") {
		t.Fatalf("err = %v, want unsafe_psbt naming 2 inputs", err)
	}
}

// TestPSBTSizeLimit: a PSBT over the configured size is refused (invalid_psbt) before it is
// decoded or recorded.
func TestPSBTSizeLimit(t *testing.T) {
	e := newHoldEnv(t, "")
	e.rebuild(t, nil, WithLimits(Limits{MaxPSBTBytes: 200}))
	ctx := context.Background()
	s := manyOutputsPSBT(t, e.f, 50)
	if _, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "s", Method: "sign_psbt", Params: []string{s}}); methodCode(err) != nip46.CodeInvalidPSBT || !strings.Contains(err.Error(), "larger than 200 bytes") {
		t.Fatalf("err = %v", err)
	}
	if _, ok, err := e.db.SignRequestRow(ctx, e.client, "s"); ok || err != nil {
		t.Fatalf("an oversized request was recorded (%v)", err)
	}
}

// TestAuditEntryIsBounded (issue 11, finding 4): with the output cap raised, a denied request
// of 3,000 outputs still writes a bounded audit entry: counts, totals, the largest
// destinations.
func TestAuditEntryIsBounded(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - {name: no, action: deny}\n")
	e.rebuild(t, nil, WithLimits(Limits{MaxOutputs: 5000}))
	ctx := context.Background()
	s := manyOutputsPSBT(t, e.f, 3000)
	if _, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "big", Method: "sign_psbt", Params: []string{s}}); methodCode(err) != nip46.CodePolicyDenied {
		t.Fatalf("err = %v, want policy_denied", err)
	}
	var analysis string
	var size int
	if err := e.db.SQL.QueryRow(`SELECT analysis, length(analysis) + length(explanation) + length(reason) FROM audit_log WHERE request_id = 'big'`).Scan(&analysis, &size); err != nil {
		t.Fatal(err)
	}
	if size > 4000 {
		t.Fatalf("audit entry of %d bytes for a 3,000-output request", size)
	}
	var sum AuditSummary
	if err := json.Unmarshal([]byte(analysis), &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Outputs != 3000 || sum.Inputs != 1 || sum.Outflow != 100_000 {
		t.Fatalf("summary = %+v", sum)
	}
}

// TestHoldCaps (issue 11, finding 4): past the per-client cap, or the cap in all, a request
// the policy would hold is refused with rate_limited and no hold is added.
func TestHoldCaps(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - {name: wait, action: hold, hold: {cooling_off: 24h}}\n")
	other := e.addClient(t, "other")
	e.rebuild(t, nil, WithLimits(Limits{MaxHoldsPerClient: 2, MaxHolds: 3}))
	ctx := context.Background()
	ask := func(client, id string, pay int) error {
		_, err := e.svc.SignPSBT(ctx, nip46.Call{Client: client, ID: id, Method: "sign_psbt", Params: []string{e.psbt(t, btcutil.Amount(pay))}})
		return err
	}
	for i, id := range []string{"a1", "a2"} {
		heldURL(t, ask(e.client, id, 10_000+i))
	}
	if err := ask(e.client, "a3", 10_100); methodCode(err) != nip46.CodeRateLimited || !strings.Contains(err.Error(), "already has 2 held requests") {
		t.Fatalf("third hold of one client: %v", err)
	}
	heldURL(t, ask(other, "b1", 10_200))
	if err := ask(other, "b2", 10_300); methodCode(err) != nip46.CodeRateLimited || !strings.Contains(err.Error(), "3 held requests are waiting") {
		t.Fatalf("hold past the cap in all: %v", err)
	}
	if _, all, err := e.db.CountWaitingHolds(ctx, e.client); err != nil || all != 3 {
		t.Fatalf("waiting holds = %d, %v", all, err)
	}
	// Once one ends, a new one is taken again.
	if _, err := e.svc.Approve(ctx, nip46.Call{Client: e.client, ID: "x", Method: "approve", Params: []string{"a1", "cancel"}}); err != nil {
		t.Fatal(err)
	}
	heldURL(t, ask(e.client, "a4", 10_400))
}

// TestHoldsDecidedOnlyWhenDue (issue 11, finding 4): a tick with waiting holds decides none of
// them again until a time point passes or an approval arrives.
func TestHoldsDecidedOnlyWhenDue(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - {name: wait, match: {min_outflow: 50000 sat}, action: hold, hold: {cooling_off: 1h}}\n  - name: ok\n    action: hold\n    hold: {approvals: 1, approvers: [alice]}\n")
	chain := &countingChain{ChainView: e.f.chain}
	e.rebuild(t, chain)
	ctx := context.Background()
	_, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "cool", Method: "sign_psbt", Params: []string{e.psbt(t, 60_000)}})
	heldURL(t, err)
	_, err = e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "appr", Method: "sign_psbt", Params: []string{e.psbt(t, 20_000)}})
	tok := tokenOf(t, err)
	e.svc.Tick(ctx) // the first tick after a start decides every waiting hold once
	chain.n.Store(0)
	for range 5 {
		e.now = e.now.Add(10 * time.Minute)
		e.svc.Tick(ctx)
	}
	if n := chain.n.Load(); n != 0 {
		t.Fatalf("ticks before any time point analysed held PSBTs again (%d coin look-ups)", n)
	}
	e.now = e.now.Add(11 * time.Minute) // the cooling-off is over
	e.svc.Tick(ctx)
	if got := e.ans.List(); len(got) != 1 || !strings.HasPrefix(got[0], "cool cHNidP8") {
		t.Fatalf("late answers = %v", got)
	}
	if _, err := e.svc.Approve(ctx, e.approverRequest(t, "alice", tok, "approve")); err != nil {
		t.Fatal(err)
	}
	e.svc.Tick(ctx)
	if got := e.ans.List(); len(got) != 2 || !strings.HasPrefix(got[1], "appr cHNidP8") {
		t.Fatalf("late answers = %v", got)
	}
}

// TestApproveIgnoresClientChosenIDs (issue 11, finding 6): approvers were told to approve
// unsigned txid T; another client sends its own PSBT under request id T. Approving T must not
// approve that one, and it must approve the payment whose txid is T.
func TestApproveIgnoresClientChosenIDs(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - name: wait\n    action: hold\n    hold: {approvals: 1, approvers: [alice]}\n")
	mallory := e.addClient(t, "mallory")
	e.rebuild(t, nil)
	ctx := context.Background()
	victim := e.psbt(t, 30_000)
	p, _, err := psbt.Decode(victim)
	if err != nil {
		t.Fatal(err)
	}
	txid := p.UnsignedTx.TxHash().String()
	_, err = e.svc.SignPSBT(ctx, nip46.Call{Client: mallory, ID: txid, Method: "sign_psbt", Params: []string{e.psbt(t, 90_000)}})
	heldURL(t, err)
	// Before the real payment is asked for, "approve T" names nothing.
	if _, err := e.svc.Approve(ctx, e.approverRequest(t, "alice", txid, "approve")); methodCode(err) != nip46.CodeInvalidParams {
		t.Fatalf("approving T with only mallory's request id T held: %v", err)
	}
	if as, _ := e.db.Approvals(ctx, mallory, txid); len(as) != 0 {
		t.Fatalf("mallory's request was approved: %+v", as)
	}
	_, err = e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "pay-1", Method: "sign_psbt", Params: []string{victim}})
	heldURL(t, err)
	out, err := e.svc.Approve(ctx, e.approverRequest(t, "alice", txid, "approve"))
	if err != nil {
		t.Fatal(err)
	}
	var res ApproveResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.RequestID != "pay-1" || res.UnsignedTxID != txid || res.State != store.RequestSigned || res.OutflowSat == nil || *res.OutflowSat != 31_000 ||
		len(res.Destinations) != 1 || res.Destinations[0].Value != 30_000 || res.Destinations[0].Address != externalAddr.EncodeAddress() {
		t.Fatalf("approve answer = %s", out)
	}
	if h, err := e.db.FindHold(ctx, mallory, txid); err != nil || h.State != store.HoldWaiting {
		t.Fatalf("mallory's hold = %+v, %v", h, err)
	}
	// A request id is not accepted from approvers at all.
	if _, err := e.svc.Approve(ctx, e.approverRequest(t, "alice", txid, "deny")); methodCode(err) != nip46.CodeInvalidRequest {
		t.Fatalf("deny by txid after the hold ended: %v", err)
	}
}

// TestHoldTokenIsRandom (issue 11, finding 8): the auth_url token is 128 random bits, not
// sha256(client‖id)[:16].
func TestHoldTokenIsRandom(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - {name: wait, action: hold, hold: {cooling_off: 1h}}\n")
	_, err := e.svc.SignPSBT(context.Background(), nip46.Call{Client: e.client, ID: "r", Method: "sign_psbt", Params: []string{e.psbt(t, 10_000)}})
	tok := tokenOf(t, err)
	h := sha256.Sum256([]byte(e.client + "\x00" + "r"))
	if len(tok) != 32 || tok == hex.EncodeToString(h[:16]) {
		t.Fatalf("token %q is derivable from the request", tok)
	}
	if _, err := hex.DecodeString(tok); err != nil {
		t.Fatal(err)
	}
}

// TestPendingApproverCannotDeny (issue 11, finding 8): an approver added by a loosened policy
// that does not apply alone yet cannot deny or cancel a held request.
func TestPendingApproverCannotDeny(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - name: wait\n    action: hold\n    hold: {approvals: 1, approvers: [alice]}\n")
	ctx := context.Background()
	_, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "r", Method: "sign_psbt", Params: []string{e.psbt(t, 10_000)}})
	tok := tokenOf(t, err)
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	e.approve["dave"] = sk
	old := e.pol
	next, err := policy.Parse("p.yaml", []byte(strings.Replace(e.doc, "approvers:\n", "approvers:\n  - {name: dave, pubkey: "+pk+"}\n", 1)))
	if err != nil {
		t.Fatal(err)
	}
	e.pol = next.WithPrior(old, e.now.Add(7*24*time.Hour))
	for _, d := range []string{"deny", "cancel", "approve"} {
		if _, err := e.svc.Approve(ctx, e.approverRequest(t, "dave", tok, d)); methodCode(err) != nip46.CodeUnauthorized {
			t.Fatalf("%s by a pending approver: %v", d, err)
		}
	}
	e.svc.Tick(ctx)
	if h, err := e.db.FindHold(ctx, e.client, "r"); err != nil || h.State != store.HoldWaiting {
		t.Fatalf("hold = %+v, %v", h, err)
	}
}
