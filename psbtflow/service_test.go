package psbtflow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/testfakes"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type holdEnv struct {
	f       *fixture
	db      *store.DB
	svc     *Service
	ans     *testfakes.Answers
	now     time.Time
	client  string
	approve map[string]string // approver name → secret key
	pol     *policy.Policy
	doc     string // the policy's text
}

func newHoldEnv(t *testing.T, rules string) *holdEnv {
	t.Helper()
	e := &holdEnv{f: newFixture(t), ans: &testfakes.Answers{}, now: time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC), approve: map[string]string{}}
	var err error
	e.db, err = store.Open(context.Background(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.db.Close() })
	e.client, _ = nostr.GetPublicKey(nostr.GeneratePrivateKey())
	doc := "version: 1\nclients:\n  - {name: coordinator, pubkey: " + e.client + "}\napprovers:\n"
	for _, name := range []string{"alice", "bob", "carol"} {
		sk := nostr.GeneratePrivateKey()
		pk, _ := nostr.GetPublicKey(sk)
		e.approve[name] = sk
		doc += "  - {name: " + name + ", pubkey: " + pk + "}\n"
	}
	doc += "limits:\n  max_per_tx: 1 BTC\n" + rules
	e.doc = doc
	if e.pol, err = policy.Parse("p.yaml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	e.svc, err = NewService(e.f.desc, e.f.keys[1], e.f.chain, func() *policy.Policy { return e.pol }, e.db, quiet,
		WithClock(func() time.Time { return e.now }), WithHoldURL("http://127.0.0.1:8080/"), WithResponder(e.ans))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// approverRequest is an approve request as the remote signer hands it over: with the
// approver's signed kind-24133 event.
func (e *holdEnv) approverRequest(t *testing.T, name, id, decision string) nip46.Call {
	sk := e.approve[name]
	pk, _ := nostr.GetPublicKey(sk)
	ev := nostr.Event{Kind: 24133, CreatedAt: nostr.Timestamp(e.now.Unix()), Content: "nip44 ciphertext", Tags: nostr.Tags{{"p", strings.Repeat("ab", 32)}}}
	if err := ev.Sign(sk); err != nil {
		t.Fatal(err)
	}
	evidence, err := json.Marshal(&ev)
	if err != nil {
		t.Fatal(err)
	}
	return nip46.Call{Client: pk, ID: "a-" + name + "-" + decision, Method: "approve", Params: []string{id, decision}, EventID: ev.ID, Event: evidence}
}

func (e *holdEnv) psbt(t *testing.T, pay btcutil.Amount) string {
	op := e.f.addCoin(t, 0, 1, 100_000)
	s, err := psbt.Encode(e.f.buildPSBT(t, []wire.OutPoint{op}, pay, 100_000-pay-1_000, 2), psbt.Base64)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func heldURL(t *testing.T, err error) string {
	t.Helper()
	var he *nip46.HeldError
	if !errors.As(err, &he) || he.URL == "" || he.Reason == "" {
		t.Fatalf("want a HeldError, got %v", err)
	}
	return he.URL
}

func TestHoldCoolingOffThenRespond(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - name: wait\n    match: {min_outflow: 50000 sat}\n    action: hold\n    hold: {cooling_off: 1h}\n  - {name: small, action: allow}\n")
	ctx := context.Background()
	req := nip46.Call{Client: e.client, ID: "r1", Method: "sign_psbt", Params: []string{e.psbt(t, 60_000)}}
	_, err := e.svc.SignPSBT(ctx, req)
	url := heldURL(t, err)
	if !strings.HasPrefix(url, "http://127.0.0.1:8080/requests/") {
		t.Fatalf("auth_url = %s", url)
	}
	if _, err := e.svc.SignPSBT(ctx, req); heldURL(t, err) != url {
		t.Fatal("a repeated held request must get the same auth_url")
	}
	e.now = e.now.Add(59 * time.Minute)
	e.svc.Tick(ctx)
	if got := e.ans.List(); len(got) != 0 {
		t.Fatalf("answered during the cooling-off: %v", got)
	}
	e.now = e.now.Add(time.Minute)
	e.svc.Tick(ctx)
	got := e.ans.List()
	if len(got) != 1 || !strings.HasPrefix(got[0], "r1 cHNidP8") {
		t.Fatalf("late answers = %v, want the signed PSBT for r1", got)
	}
	signed := strings.TrimPrefix(got[0], "r1 ")
	if out, err := e.svc.SignPSBT(ctx, req); err != nil || out != signed {
		t.Fatalf("repeated request after release: %v", err)
	}
	e.svc.Tick(ctx)
	if len(e.ans.List()) != 1 {
		t.Fatal("a late answer was sent twice")
	}
	rs, err := e.db.Reservations(ctx, store.LedgerOutstanding)
	if err != nil || len(rs) != 1 || rs[0].OutflowSat != 61_000 {
		t.Fatalf("ledger = %+v, %v; want one reservation of 61000 sat", rs, err)
	}
	// The auth_url page shows the request's state.
	rec := httptest.NewRecorder()
	e.svc.HTTPHandler().ServeHTTP(rec, httptest.NewRequest("GET", strings.TrimPrefix(url, "http://127.0.0.1:8080"), nil))
	var st RequestStatus
	if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.State != store.RequestSigned || st.Hold == nil || st.Hold.State != store.HoldReleased {
		t.Fatalf("status page = %d %s", rec.Code, rec.Body.String())
	}
	// Audit: held, then signed, both with the policy hash.
	var n int
	if err := e.db.SQL.QueryRow(`SELECT count(*) FROM audit_log WHERE request_id = 'r1' AND policy_hash = ? AND decision IN ('held', 'signed')`, e.pol.Hash).Scan(&n); err != nil || n != 2 {
		t.Fatalf("audit rows with the policy hash = %d, %v", n, err)
	}
}

func TestHoldApprovalsMofN(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - name: two_of_three\n    action: hold\n    hold: {approvals: 2, approvers: [alice, bob, carol]}\n")
	ctx := context.Background()
	req := nip46.Call{Client: e.client, ID: "r2", Method: "sign_psbt", Params: []string{e.psbt(t, 40_000)}}
	_, err := e.svc.SignPSBT(ctx, req)
	tok := strings.TrimPrefix(heldURL(t, err), "http://127.0.0.1:8080/requests/")
	// A stranger (here: the client itself) may not approve.
	if _, err := e.svc.Approve(ctx, nip46.Call{Client: e.client, ID: "x", Method: "approve", Params: []string{"r2", "approve"}}); err == nil || !strings.HasPrefix(err.Error(), "unauthorized: ") {
		t.Fatalf("client approving its own request: %v", err)
	}
	out, err := e.svc.Approve(ctx, e.approverRequest(t, "alice", tok, "approve"))
	if err != nil || !strings.Contains(out, `"state":"held"`) {
		t.Fatalf("first approval: %s, %v", out, err)
	}
	if got := e.ans.List(); len(got) != 0 {
		t.Fatalf("released after one approval: %v", got)
	}
	// The same approver twice still counts once.
	if _, err := e.svc.Approve(ctx, e.approverRequest(t, "alice", tok, "approve")); err != nil {
		t.Fatal(err)
	}
	e.svc.Tick(ctx)
	if got := e.ans.List(); len(got) != 0 {
		t.Fatalf("released after one approver approved twice: %v", got)
	}
	out, err = e.svc.Approve(ctx, e.approverRequest(t, "carol", tok, "approve"))
	if err != nil || !strings.Contains(out, `"state":"signed"`) {
		t.Fatalf("second approval: %s, %v", out, err)
	}
	e.svc.Tick(ctx)
	if got := e.ans.List(); len(got) != 1 || !strings.HasPrefix(got[0], "r2 cHNidP8") {
		t.Fatalf("late answers = %v", got)
	}
	// The approvers' signed events are kept as evidence.
	as, err := e.db.Approvals(ctx, e.client, "r2")
	if err != nil || len(as) != 2 {
		t.Fatalf("approvals = %+v, %v", as, err)
	}
	for _, a := range as {
		var ev nostr.Event
		if err := json.Unmarshal([]byte(a.Event), &ev); err != nil {
			t.Fatal(err)
		}
		if ok, err := ev.CheckSignature(); !ok || err != nil || ev.PubKey != a.Approver {
			t.Fatalf("approval evidence does not verify: %v", err)
		}
	}
	if _, err := e.svc.Approve(ctx, e.approverRequest(t, "bob", tok, "approve")); err == nil || !strings.HasPrefix(err.Error(), "invalid_request: ") {
		t.Fatalf("approving an ended hold: %v", err)
	}
}

func TestHoldCancelAndDeny(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - name: wait\n    action: hold\n    hold: {cooling_off: 24h, approvals: 1, approvers: [alice]}\n")
	ctx := context.Background()
	r1 := nip46.Call{Client: e.client, ID: "c1", Method: "sign_psbt", Params: []string{e.psbt(t, 30_000)}}
	r2 := nip46.Call{Client: e.client, ID: "c2", Method: "sign_psbt", Params: []string{e.psbt(t, 31_000)}}
	for _, r := range []nip46.Call{r1, r2} {
		_, err := e.svc.SignPSBT(ctx, r)
		heldURL(t, err)
	}
	// The client cancels its own request (by id); an approver denies the other (by unsigned txid).
	if _, err := e.svc.Approve(ctx, nip46.Call{Client: e.client, ID: "x1", Method: "approve", Params: []string{"c1", "cancel"}}); err != nil {
		t.Fatal(err)
	}
	st, err := e.svc.status(ctx, e.client, "c2")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Approve(ctx, e.approverRequest(t, "alice", st.UnsignedTxID, "deny")); err != nil {
		t.Fatal(err)
	}
	e.svc.Tick(ctx)
	got := e.ans.List()
	slices.Sort(got)
	if len(got) != 2 || got[0] != "c1 policy_denied: wait: cancelled by the requesting client" || got[1] != "c2 policy_denied: wait: denied by alice" {
		t.Fatalf("late answers = %q", got)
	}
	if rs, _ := e.db.Reservations(ctx); len(rs) != 0 {
		t.Fatalf("a cancelled request reserved %+v", rs)
	}
	// psbt_status shows the outcome to the client.
	out, err := e.svc.PSBTStatus(ctx, nip46.Call{Client: e.client, ID: "s", Method: "psbt_status", Params: []string{"c1"}})
	if err != nil || !strings.Contains(out, `"state":"denied"`) || !strings.Contains(out, `"state":"cancelled"`) {
		t.Fatalf("psbt_status = %s, %v", out, err)
	}
}

// TestLedgerNeverExceedsWindows is the spend ledger's property test: random sequences of sign,
// confirm (proven), replace (RBF), let time pass and restart never let what can leave the wallet
// in any window exceed its limit. "What can leave" is counted from the test's own model of the
// chain: every transaction confirmed within the window (at its confirmation time), plus every
// signed transaction that may still confirm — whatever its age — where of the transactions that
// conflict (share an input) only the heaviest set that can confirm together counts.
func TestLedgerNeverExceedsWindows(t *testing.T) {
	seeds := 6
	steps := 90
	if testing.Short() {
		seeds, steps = 2, 40
	}
	var st ledgerStats
	for seed := range seeds {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { ledgerProperty(t, uint64(seed), steps, &st) })
	}
	// The model checks must have had something to check.
	if st.chains == 0 || st.mustSign == 0 {
		t.Fatalf("the sequences never built a replacement chain (%d) or a bump that must be signed (%d)", st.chains, st.mustSign)
	}
	t.Logf("checked %d replacement chains and %d fee bumps that had to be signed", st.chains, st.mustSign)
}

type ledgerStats struct{ chains, mustSign int }

type modelTx struct {
	txid    string
	outflow btcutil.Amount
	inputs  []wire.OutPoint
	at      time.Time
	conf    time.Time // when it confirmed (state confirmed)
	state   string    // pending | confirmed | dead
}

func ledgerProperty(t *testing.T, seed uint64, steps int, st *ledgerStats) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(seed, 42))
	f := newFixture(t)
	dbPath := filepath.Join(t.TempDir(), "c.db")
	client, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	windows := []policy.Window{{Window: time.Hour, Max: 150_000}, {Window: 24 * time.Hour, Max: 400_000}}
	pol, err := policy.Parse("p.yaml", []byte(fmt.Sprintf(`version: 1
clients: [{name: c, pubkey: %s}]
limits:
  max_per_tx: 120000 sat
  velocity: [{window: 1h, max: 150000 sat}, {window: 24h, max: 400000 sat}]
  release_after: 3h
`, client)))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	var db *store.DB
	var svc *Service
	facts := testfakes.NewFacts()
	open := func() {
		if db != nil {
			db.Close()
		}
		if db, err = store.Open(ctx, dbPath); err != nil {
			t.Fatal(err)
		}
		if svc, err = NewService(f.desc, f.keys[0], f.chain, func() *policy.Policy { return pol }, db, quiet, WithClock(func() time.Time { return now }), WithSpendFacts(facts)); err != nil {
			t.Fatal(err)
		}
	}
	open()
	defer func() { db.Close() }()
	for i := range 8 {
		f.addCoin(t, 0, uint32(i), btcutil.Amount(30_000+rng.IntN(90_000)))
	}
	var txs []*modelTx
	nextID := 0
	// sign asks to sign a transaction over ins paying pay (random when < 0) and reports whether
	// it was signed.
	var lastErr error
	sign := func(ins []wire.OutPoint, pay btcutil.Amount) bool {
		var total btcutil.Amount
		for _, op := range ins {
			total += f.chain.Coins[op].Value
		}
		fee := btcutil.Amount(500 + rng.IntN(3000))
		if pay < 0 || pay > total-fee {
			pay = btcutil.Amount(rng.Int64N(int64(total - fee)))
		}
		p := f.buildPSBT(t, ins, pay, total-pay-fee, uint32(rng.IntN(20)))
		s, _ := psbt.Encode(p, psbt.Base64)
		nextID++
		_, err := svc.SignPSBT(ctx, nip46.Call{Client: client, ID: fmt.Sprint(nextID), Method: "sign_psbt", Params: []string{s}})
		if err == nil {
			txs = append(txs, &modelTx{txid: p.UnsignedTx.TxHash().String(), outflow: pay + fee, inputs: ins, at: now, state: "pending"})
			return true
		}
		if !strings.HasPrefix(err.Error(), "policy_denied: ") {
			t.Fatalf("sign: %v", err)
		}
		lastErr = err
		return false
	}
	unspent := func(m *modelTx) bool {
		for _, op := range m.inputs {
			if _, ok := f.chain.Coins[op]; !ok {
				return false
			}
		}
		return true
	}
	// pickPending returns a random pending transaction whose inputs are all unspent, or nil.
	pickPending := func() *modelTx {
		var pend []*modelTx
		for _, m := range txs {
			if m.state == "pending" && unspent(m) {
				pend = append(pend, m)
			}
		}
		if len(pend) == 0 {
			return nil
		}
		return pend[rng.IntN(len(pend))]
	}
	for step := range steps {
		switch op := rng.IntN(10); {
		case op < 4: // sign a new transaction over 1–2 coins
			var coins []wire.OutPoint
			for o := range f.chain.Coins {
				coins = append(coins, o)
			}
			slices.SortFunc(coins, func(a, b wire.OutPoint) int { return strings.Compare(a.String(), b.String()) })
			if len(coins) == 0 {
				continue
			}
			rng.Shuffle(len(coins), func(i, j int) { coins[i], coins[j] = coins[j], coins[i] })
			sign(coins[:min(len(coins), 1+rng.IntN(2))], -1)
		case op < 6: // replace a pending transaction (RBF: same inputs, another amount)
			m := pickPending()
			if m == nil {
				continue
			}
			// A fee bump over exactly the inputs of the outstanding transactions it conflicts
			// with (a clean replacement chain: all of them spend exactly these inputs), that
			// leaves no more than the largest of them already counts, adds nothing to the
			// exposure and must be signed: the bump is counted once (not on top of what it
			// replaces).
			head, ok := soleReservedConflict(t, db, m.inputs)
			pay := btcutil.Amount(rng.Int64N(120_000))
			mustSign := ok && pay+3_500 <= min(btcutil.Amount(head.OutflowSat), 120_000)
			if mustSign {
				st.mustSign++
			}
			if signed := sign(m.inputs, pay); mustSign && !signed {
				t.Fatalf("step %d: a fee bump paying %s over the inputs of %s (counted %d sat at %s) was refused: %v", step, pay, head.TxID, head.OutflowSat, head.At, lastErr)
			}
		case op < 8: // confirm a pending transaction (proven): its inputs are spent, its change comes back
			m := pickPending()
			if m == nil {
				continue
			}
			m.state, m.conf = "confirmed", now
			for _, in := range m.inputs {
				delete(f.chain.Coins, in)
			}
			facts.Mine(now, m.txid, m.inputs...)
			if err := svc.ReconcileExposure(ctx); err != nil {
				t.Fatal(err)
			}
			for _, o := range txs { // conflicting transactions can no longer confirm
				if o.state == "pending" && !unspent(o) {
					o.state = "dead"
				}
			}
			f.addCoin(t, 1, uint32(100+step), btcutil.Amount(20_000+rng.IntN(60_000)))
		case op < 9: // time passes: nothing is released by time (release_after is ignored)
			now = now.Add(time.Duration(10+rng.IntN(170)) * time.Minute)
			svc.Tick(ctx)
		default: // restart
			open()
		}
		checkWindows(t, step, txs, windows, now)
		st.chains += checkChains(t, step, db, txs)
	}
}

// soleReservedConflict returns the largest of the ledger's outstanding transactions spending any
// of ins, when every one of them spends exactly ins (a clean replacement chain).
func soleReservedConflict(t *testing.T, db *store.DB, ins []wire.OutPoint) (store.Reservation, bool) {
	t.Helper()
	rs, err := db.Reservations(context.Background(), store.LedgerOutstanding)
	if err != nil {
		t.Fatal(err)
	}
	var found []store.Reservation
	for _, r := range rs {
		if slices.ContainsFunc(ins, func(op wire.OutPoint) bool { return slices.Contains(r.Inputs, op.String()) }) {
			found = append(found, r)
		}
	}
	if len(found) == 0 {
		return store.Reservation{}, false
	}
	largest := found[0]
	for _, r := range found {
		if !sameOutPoints(r.Inputs, ins) {
			return store.Reservation{}, false
		}
		if r.OutflowSat > largest.OutflowSat {
			largest = r
		}
	}
	return largest, true
}

func sameOutPoints(ledger []string, ins []wire.OutPoint) bool {
	var s []string
	for _, op := range ins {
		s = append(s, op.String())
	}
	slices.Sort(s)
	return slices.Equal(slices.Sorted(slices.Values(ledger)), s)
}

// checkChains is the model of "an RBF fee bump counts once, at the larger outflow": for every
// chain of replacements (transactions spending exactly the same inputs, none confirmed or
// invalidated yet, and nothing else spending any of them), the exposure of their ledger entries
// is exactly the largest outflow of the chain: not less (the largest may still confirm), not
// more (only one can).
func checkChains(t *testing.T, step int, db *store.DB, txs []*modelTx) (checked int) {
	t.Helper()
	rs, err := db.Reservations(context.Background(), store.LedgerOutstanding)
	if err != nil {
		t.Fatal(err)
	}
	entry := map[string]store.Reservation{}
	for _, r := range rs {
		entry[r.TxID] = r
	}
	shares := func(a, b *modelTx) bool {
		return slices.ContainsFunc(a.inputs, func(op wire.OutPoint) bool { return slices.Contains(b.inputs, op) })
	}
	sameInputs := func(a, b *modelTx) bool {
		x, y := slices.Clone(a.inputs), slices.Clone(b.inputs)
		cmp := func(p, q wire.OutPoint) int { return strings.Compare(p.String(), q.String()) }
		slices.SortFunc(x, cmp)
		slices.SortFunc(y, cmp)
		return slices.Equal(x, y)
	}
	done := map[*modelTx]bool{}
	for _, m := range txs {
		if done[m] {
			continue
		}
		var chain []*modelTx
		clean := true
		for _, o := range txs {
			if shares(m, o) {
				done[o] = true
				chain = append(chain, o)
				clean = clean && o.state == "pending" && sameInputs(m, o)
			}
		}
		if !clean || len(chain) < 2 {
			continue
		}
		var want btcutil.Amount
		var entries []store.Reservation
		for _, o := range chain {
			want = max(want, o.outflow)
			if r, ok := entry[o.txid]; ok {
				entries = append(entries, r)
			}
		}
		if got := OutstandingExposure(entries); got != want {
			t.Fatalf("step %d: a chain of %d replacements counts %d sat in the ledger, want its largest outflow %d", step, len(chain), got, int64(want))
		}
		checked++
	}
	return checked
}

// checkWindows asserts, for every window, that the worst case of what can leave the wallet in
// the window ending at any time from now on is within the window's limit: what confirmed in the
// window ending now (at its confirmation time), plus the heaviest set of pending transactions
// that can still all confirm (any of them may confirm at any moment, whatever its age). Later
// windows only lose confirmed transactions and gain pending ones, so now is the worst end.
func checkWindows(t *testing.T, step int, txs []*modelTx, windows []policy.Window, now time.Time) {
	t.Helper()
	conflict := func(a, b *modelTx) bool {
		for _, x := range a.inputs {
			if slices.Contains(b.inputs, x) {
				return true
			}
		}
		return false
	}
	for _, w := range windows {
		{
			var in []*modelTx
			var best btcutil.Amount
			for _, m := range txs {
				switch {
				case m.state == "pending":
					in = append(in, m)
				case m.state == "confirmed" && !m.conf.Before(now.Add(-w.Window)):
					best += m.outflow
				}
			}
			// Worst case: the heaviest set of pairwise non-conflicting transactions, computed per
			// group of transactions linked by conflicts (small: exhaustive search).
			seen := make([]bool, len(in))
			for i := range in {
				if seen[i] {
					continue
				}
				group := []*modelTx{in[i]}
				seen[i] = true
				for g := 0; g < len(group); g++ {
					for j := range in {
						if !seen[j] && conflict(group[g], in[j]) {
							seen[j] = true
							group = append(group, in[j])
						}
					}
				}
				if len(group) > 16 {
					t.Fatalf("step %d: a conflict group of %d transactions is too large for the exhaustive check", step, len(group))
				}
				var heaviest btcutil.Amount
				for mask := 1; mask < 1<<len(group); mask++ {
					var sum btcutil.Amount
					ok := true
					for a := 0; a < len(group) && ok; a++ {
						if mask&(1<<a) == 0 {
							continue
						}
						for b := a + 1; b < len(group); b++ {
							if mask&(1<<b) != 0 && conflict(group[a], group[b]) {
								ok = false
								break
							}
						}
						sum += group[a].outflow
					}
					if ok {
						heaviest = max(heaviest, sum)
					}
				}
				best += heaviest
			}
			if best > w.Max {
				t.Fatalf("step %d: %s could leave in the %s window ending %s, over its limit %s", step, best, w.Window, now.Format(time.RFC3339), w.Max)
			}
		}
	}
}

// TestApproveAndStatusRefuseBadInput: hostile or mistaken approve/psbt_status requests get a
// clear error and change nothing; a client cannot see another client's request.
func TestApproveAndStatusRefuseBadInput(t *testing.T) {
	e := newHoldEnv(t, "rules:\n  - name: wait\n    action: hold\n    hold: {approvals: 1, approvers: [alice]}\n")
	ctx := context.Background()
	_, err := e.svc.SignPSBT(ctx, nip46.Call{Client: e.client, ID: "h1", Method: "sign_psbt", Params: []string{e.psbt(t, 20_000)}})
	heldURL(t, err)
	other, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	alice := e.approverRequest(t, "alice", "h1", "approve")
	cases := []struct {
		name string
		call func() (string, error)
		code string
	}{
		{"approve: one param", func() (string, error) { r := alice; r.Params = []string{"h1"}; return e.svc.Approve(ctx, r) }, nip46.CodeInvalidParams},
		{"approve: bad decision", func() (string, error) {
			r := alice
			r.Params = []string{"h1", "yes please"}
			return e.svc.Approve(ctx, r)
		}, nip46.CodeInvalidParams},
		{"approve: unknown id", func() (string, error) {
			r := alice
			r.Params = []string{"nope", "approve"}
			return e.svc.Approve(ctx, r)
		}, nip46.CodeInvalidParams},
		{"approve: stranger cancels", func() (string, error) {
			return e.svc.Approve(ctx, nip46.Call{Client: other, ID: "x", Method: "approve", Params: []string{"h1", "cancel"}})
		}, nip46.CodeUnauthorized},
		{"psbt_status: stranger", func() (string, error) {
			return e.svc.PSBTStatus(ctx, nip46.Call{Client: other, ID: "x", Method: "psbt_status", Params: []string{"h1"}})
		}, nip46.CodeUnauthorized},
		{"psbt_status: no params", func() (string, error) {
			return e.svc.PSBTStatus(ctx, nip46.Call{Client: e.client, ID: "x", Method: "psbt_status"})
		}, nip46.CodeInvalidParams},
		{"psbt_status: unknown id", func() (string, error) {
			return e.svc.PSBTStatus(ctx, nip46.Call{Client: e.client, ID: "x", Method: "psbt_status", Params: []string{"nope"}})
		}, nip46.CodeInvalidParams},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.call()
			var me *nip46.MethodError
			if !errors.As(err, &me) || me.Code != c.code {
				t.Fatalf("err = %v, want %s", err, c.code)
			}
		})
	}
	if as, err := e.db.Approvals(ctx, e.client, "h1"); err != nil || len(as) != 0 {
		t.Fatalf("bad requests recorded approvals: %+v, %v", as, err)
	}
	if h, err := e.db.FindHold(ctx, e.client, "h1"); err != nil || h.State != store.HoldWaiting {
		t.Fatalf("hold after bad requests: %+v, %v", h, err)
	}
}
