package store

import (
	"context"
	"errors"
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
		Reserve: &Reservation{TxID: txid, Client: "c", RequestID: txid, OutflowSat: outflow, Inputs: inputs, At: at},
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
		out[r.TxID] = r.State
	}
	return out
}

// TestLedgerExposureStates: entries are outstanding from signing, move only through the guarded
// transitions (a second, stale change is refused and writes nothing), and Exposure returns the
// outstanding ones whatever their age plus the confirmed ones counting in the window.
func TestLedgerExposureStates(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	t0 := time.Unix(1_800_000_000, 0)
	signed(t, db, "A", 100, t0, "x:0")
	signed(t, db, "B", 150, t0.Add(time.Minute), "x:0", "y:0")
	signed(t, db, "C", 70, t0.Add(2*time.Minute), "z:0")
	if got := states(t, db); got["A"] != LedgerOutstanding || got["B"] != LedgerOutstanding || got["C"] != LedgerOutstanding {
		t.Fatalf("after signing: %v", got)
	}
	// Signing A again (another request id) keeps one entry, the larger outflow.
	signed(t, db, "A", 90, t0.Add(3*time.Minute), "x:0")
	if r, ok, err := db.LedgerEntry(ctx, "A"); err != nil || !ok || r.OutflowSat != 100 || !r.At.Equal(t0) || len(r.Inputs) != 1 {
		t.Fatalf("A = %+v, %v, %v", r, ok, err)
	}
	if err := db.ConfirmEntry(ctx, "B", 101, "bb", t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.InvalidateEntry(ctx, "A", "B", 101, "bb"); err != nil {
		t.Fatal(err)
	}
	if err := db.ConfirmEntry(ctx, "A", 101, "bb", t0); !errors.Is(err, ErrLedgerState) {
		t.Fatalf("confirming an invalidated entry: %v, want ErrLedgerState", err)
	}
	if got := states(t, db); got["A"] != LedgerInvalidated || got["B"] != LedgerConfirmed {
		t.Fatalf("after settling: %v", got)
	}
	// C is outstanding: it counts however old it is; B counts from its confirmation time.
	far := t0.Add(365 * 24 * time.Hour)
	ex, err := db.Exposure(ctx, far)
	if err != nil || len(ex) != 1 || ex[0].TxID != "C" {
		t.Fatalf("exposure a year later = %+v, %v; want only C", ex, err)
	}
	ex, err = db.Exposure(ctx, t0.Add(30*time.Minute))
	if err != nil || len(ex) != 2 || ex[0].TxID != "B" || ex[0].ConfHeight != 101 || ex[0].ConfHash != "bb" || !ex[0].ConfAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("exposure = %+v, %v; want B (confirmed at t0+1h) and C", ex, err)
	}
	if s, err := db.SettledAbove(ctx, 101); err != nil || len(s) != 2 {
		t.Fatalf("settled above 101 = %+v, %v", s, err)
	}
	if s, err := db.SettledAbove(ctx, 102); err != nil || len(s) != 0 {
		t.Fatalf("settled above 102 = %+v, %v", s, err)
	}
	// A reorg reopens both.
	for _, id := range []string{"A", "B"} {
		if err := db.ReopenEntry(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.ReopenEntry(ctx, "C"); !errors.Is(err, ErrLedgerState) {
		t.Fatalf("reopening an outstanding entry: %v", err)
	}
	if r, _, _ := db.LedgerEntry(ctx, "B"); r.State != LedgerOutstanding || r.ConfHeight != 0 || r.ConfHash != "" || !r.ConfAt.IsZero() {
		t.Fatalf("reopened B = %+v", r)
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
