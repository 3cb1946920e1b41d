package store

import (
	"context"
	"testing"
	"time"
)

// signed records a signed request with its reservation, as the signing flow does.
func signed(t *testing.T, db *DB, txid string, outflow int64, at time.Time, inputs ...string) {
	t.Helper()
	ctx := context.Background()
	if _, _, err := db.BeginSignRequest(ctx, SignRequest{Client: "c", RequestID: txid, Method: "sign_psbt", PSBTSHA256: []byte(txid)}); err != nil {
		t.Fatal(err)
	}
	err := db.FinishDecision(ctx, Decided{
		Request:    SignRequest{Client: "c", RequestID: txid, State: RequestSigned, Result: "psbt", UnsignedTxID: txid},
		Audit:      AuditEntry{Client: "c", RequestID: txid, Method: "sign_psbt", Decision: "signed", Rule: "r"},
		PolicyHash: "h1", Explanation: "[]",
		Reserve: &Reservation{TxID: txid, Client: "c", RequestID: txid, OutflowSat: outflow, Inputs: inputs, At: at, ReleaseAfter: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func states(t *testing.T, db *DB) map[string]string {
	t.Helper()
	rs, err := db.Reservations(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rs {
		out[r.TxID] = r.State + "/" + r.ReplacedBy
	}
	return out
}

func TestLedgerReplacementChain(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	t0 := time.Unix(1_800_000_000, 0)
	signed(t, db, "A", 100, t0, "x:0")
	signed(t, db, "B", 150, t0.Add(time.Minute), "x:0", "y:0") // replaces A
	if got := states(t, db); got["A"] != "replaced/B" || got["B"] != "reserved/" {
		t.Fatalf("after B: %v", got)
	}
	if n, _ := db.SpentSince(ctx, t0, nil); n != 150 {
		t.Fatalf("spent = %d, want 150 (A replaced by B)", n)
	}
	// C conflicts with B (y:0) but not with A: A can confirm alongside C again.
	plan, err := db.PlanReplacement(ctx, "C", []string{"y:0"})
	if err != nil || len(plan.Replaced) != 1 || plan.Replaced[0].TxID != "B" || len(plan.Reinstated) != 1 || plan.Reinstated[0].TxID != "A" {
		t.Fatalf("plan = %+v, %v", plan, err)
	}
	signed(t, db, "C", 150, t0.Add(2*time.Minute), "y:0")
	if got := states(t, db); got["A"] != "reserved/" || got["B"] != "replaced/C" || got["C"] != "reserved/" {
		t.Fatalf("after C: %v", got)
	}
	if n, _ := db.SpentSince(ctx, t0, nil); n != 250 {
		t.Fatalf("spent = %d, want 250 (A and C)", n)
	}
	// Releasing C (its input spent elsewhere) reinstates B, which C had replaced.
	if err := db.SetLedgerState(ctx, "C", LedgerReleased); err != nil {
		t.Fatal(err)
	}
	if got := states(t, db); got["B"] != "reserved/" || got["C"] != "released/" {
		t.Fatalf("after releasing C: %v", got)
	}
	// The audit row carries the policy hash.
	var hash string
	if err := db.SQL.QueryRow(`SELECT policy_hash FROM audit_log WHERE request_id = 'C'`).Scan(&hash); err != nil || hash != "h1" {
		t.Fatalf("audit policy_hash = %q, %v", hash, err)
	}
}

func TestPolicyVersionsOrder(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	t0 := time.Unix(1_800_000_000, 0)
	for i, h := range []string{"a", "b", "a"} { // a file reverted to an earlier content is the newest again
		if err := db.PutPolicyVersion(ctx, PolicyVersion{Hash: h, Name: "p.yaml", Body: []byte(h), SeenAt: t0.Add(time.Duration(i) * time.Hour), EffectiveAt: t0}); err != nil {
			t.Fatal(err)
		}
	}
	vs, err := db.PolicyVersions(ctx)
	if err != nil || len(vs) != 2 || vs[0].Hash != "b" || vs[1].Hash != "a" || !vs[1].SeenAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("versions = %+v, %v", vs, err)
	}
}

// TestAuditLogReadsPolicyHashAndExplanation: the audit reader returns the policy hash and the
// explanation written with a decision (FinishDecision, AppendDecisionAudit), and empty ones for
// entries written without them (AppendAudit).
func TestAuditLogReadsPolicyHashAndExplanation(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	signed(t, db, "tx1", 1000, time.Unix(1_700_000_000, 0), "a:0")
	if err := db.AppendDecisionAudit(ctx, AuditEntry{Client: "c", RequestID: "r2", Method: "sign_psbt", Decision: "denied", Rule: "max_per_tx"},
		"h2", `[{"rule":"max_per_tx","result":"fail","detail":"over"}]`); err != nil {
		t.Fatal(err)
	}
	if err := db.AppendAudit(ctx, AuditEntry{Client: "c", RequestID: "r3", Method: "connect", Decision: "rejected"}); err != nil {
		t.Fatal(err)
	}
	log, err := db.AuditLog(ctx, 10)
	if err != nil || len(log) != 3 {
		t.Fatalf("audit log: %d entries, %v", len(log), err)
	}
	want := [][2]string{{"", ""}, {"h2", `[{"rule":"max_per_tx","result":"fail","detail":"over"}]`}, {"h1", "[]"}}
	for i, a := range log {
		if a.PolicyHash != want[i][0] || a.Explanation != want[i][1] {
			t.Errorf("entry %d (%s): policy_hash %q explanation %q, want %q %q", i, a.RequestID, a.PolicyHash, a.Explanation, want[i][0], want[i][1])
		}
	}
}
