package store

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/nip46/session"
)

// retentionFixture writes one request of each kind Prune must tell apart, all "now", and
// returns the database.
func retentionFixture(t *testing.T) *DB {
	t.Helper()
	ctx := context.Background()
	db := openTest(t)
	begin := func(client, id string) SignRequest {
		r := SignRequest{Client: client, RequestID: id, Method: "sign_psbt", PSBTSHA256: []byte{1}}
		if _, _, err := db.BeginSignRequest(ctx, r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	audit := func(client, id, decision string) AuditEntry {
		return AuditEntry{Client: client, RequestID: id, Method: "sign_psbt", Decision: decision}
	}
	// Finished and unreferenced: prunable.
	for i := range 5 {
		r := begin("c", fmt.Sprint("denied-", i))
		r.State = RequestDenied
		if err := db.FinishSignRequest(ctx, r, audit("c", r.RequestID, "denied")); err != nil {
			t.Fatal(err)
		}
	}
	// Not finished: kept.
	begin("c", "received")
	// Signed, in the spend ledger: kept, with its audit entry.
	signed := begin("c", "signed")
	signed.State, signed.UnsignedTxID = RequestSigned, "aa"
	if err := db.FinishDecision(ctx, Decided{Request: signed, Audit: AuditEntry{Client: "c", RequestID: "signed", Method: "sign_psbt",
		Decision: "signed", UnsignedTxID: "aa"},
		Reserve: &Reservation{TxID: "aa", Client: "c", RequestID: "signed", OutflowSat: 1000, Inputs: []string{"bb:0"}}}); err != nil {
		t.Fatal(err)
	}
	// Held, hold waiting: kept.
	held := begin("c", "held")
	held.State = RequestHeld
	if err := db.FinishDecision(ctx, Decided{Request: held, Audit: audit("c", "held", "held"),
		NewHold: &Hold{Client: "c", RequestID: "held", Token: "tok", Rule: "r", HeldSince: time.Now(), URL: "u"}}); err != nil {
		t.Fatal(err)
	}
	// A live session's connect entry (kept) and a gone one's (prunable).
	if err := db.AddConnectSecret(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UseConnectSecret(ctx, "s", "live", "", session.ClientInfo{}, func(string, bool) (string, error) { return "ping", nil }); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"live", "gone"} {
		if err := db.AppendAudit(ctx, AuditEntry{Client: c, RequestID: "x", Method: "connect", Decision: "connected"}); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

func requestIDs(t *testing.T, db *DB) map[string]bool {
	t.Helper()
	rows, err := db.SQL.Query(`SELECT request_id FROM sign_requests`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var id string
		rows.Scan(&id)
		out[id] = true
	}
	return out
}

func auditKeys(t *testing.T, db *DB) map[string]bool {
	t.Helper()
	rows, err := db.SQL.Query(`SELECT client_pubkey || '/' || request_id FROM audit_log`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var k string
		rows.Scan(&k)
		out[k] = true
	}
	return out
}

// Past the retention age, finished requests and their audit entries go; what an audit of the
// co-signer's commitments needs stays: unfinished requests, waiting holds, ledger entries'
// requests and audit entries, and the entry that created each live session.
func TestPruneByAgeKeepsWhatAnAuditNeeds(t *testing.T) {
	db := retentionFixture(t)
	ctx := context.Background()
	r := Retention{MaxAge: 90 * 24 * time.Hour}
	if res, err := db.Prune(ctx, r, time.Now()); err != nil || res != (PruneResult{}) {
		t.Fatalf("young rows pruned: %+v %v", res, err)
	}
	res, err := db.Prune(ctx, r, time.Now().Add(91*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 5 || res.Audit != 6 {
		t.Fatalf("pruned %+v, want the 5 denied requests and their 5 audit entries plus the gone session's", res)
	}
	ids := requestIDs(t, db)
	for _, id := range []string{"received", "signed", "held"} {
		if !ids[id] {
			t.Errorf("request %s pruned", id)
		}
	}
	if len(ids) != 3 {
		t.Errorf("requests left: %v", ids)
	}
	audit := auditKeys(t, db)
	for _, k := range []string{"c/signed", "c/held", "live/x"} {
		if !audit[k] {
			t.Errorf("audit entry %s pruned", k)
		}
	}
	if len(audit) != 3 {
		t.Errorf("audit entries left: %v", audit)
	}
}

// The row counts prune the oldest prunable rows first.
func TestPruneByCount(t *testing.T) {
	db := retentionFixture(t)
	ctx := context.Background()
	// 8 requests (5 denied, then received, signed, held) and 9 audit entries.
	res, err := db.Prune(ctx, Retention{MaxAuditRows: 6, MaxRequestRows: 6}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 2 || res.Audit != 3 {
		t.Fatalf("pruned %+v", res)
	}
	ids := requestIDs(t, db)
	for _, id := range []string{"denied-0", "denied-1"} {
		if ids[id] {
			t.Errorf("older request %s kept while newer ones went", id)
		}
	}
	if !ids["denied-2"] || !ids["denied-3"] || !ids["denied-4"] {
		t.Errorf("requests left: %v", ids)
	}
	// Asked for fewer rows than are kept, it prunes every prunable row and keeps the rest.
	if _, err := db.Prune(ctx, Retention{MaxAuditRows: 1, MaxRequestRows: 1}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if ids := requestIDs(t, db); len(ids) != 3 {
		t.Errorf("requests left: %v", ids)
	}
}

// The replay set is pruned past its ttl and its count, oldest first, in batches.
func TestPruneSeenEvents(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	t0 := time.Unix(1_900_000_000, 0)
	for i := range 2500 {
		if _, err := db.SQL.Exec(`INSERT INTO nip46_seen_events(event_id, seen_at) VALUES (?, ?)`, fmt.Sprint("e", i), t0.Unix()+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	res, err := db.Prune(ctx, Retention{SeenTTL: 2000 * time.Second, MaxSeenEvents: 1200}, t0.Add(2499*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var n, oldest int64
	db.SQL.QueryRow(`SELECT count(*), min(seen_at) FROM nip46_seen_events`).Scan(&n, &oldest)
	if res.SeenEvents != 1300 || n != 1200 || oldest != t0.Unix()+1300 {
		t.Fatalf("pruned %d, left %d from %d", res.SeenEvents, n, oldest-t0.Unix())
	}
}
