package store

import (
	"context"
	"strings"
	"testing"
)

// planCase is one statement of the request path (or the spend exposure's reconcile). want are
// index constraints its plan must show where a SEARCH on a shorter prefix would still read a
// number of rows that grows with the history (all of a client's requests, all settled entries).
type planCase struct {
	name, sql string
	want      []string
}

// requestPathStatements are the statements a request (sign_psbt, approve, psbt_status, a held
// request decided again) or the exposure's reconcile runs. Statements of store/signer.go on
// that path (BeginSignRequest, insertAudit) read sign_requests by its primary key and insert.
func requestPathStatements() []planCase {
	cases := []planCase{
		{"CountRequests (rate limit)", sqlCountRequests, []string{"created_at>?"}},
		{"FinishDecision: request state", sqlFinishRequest, nil},
		{"FinishDecision: new hold", sqlInsertHold, nil},
		{"FinishDecision: hold state", sqlHoldState, nil},
		{"FinishDecision: reserve", sqlReserve, nil},
		{"FinishDecision: reserve input", sqlReserveInput, nil},
		{"ConfirmEntry", moveSQL(setConfirmed), nil},
		{"InvalidateEntry", moveSQL(setInvalidated), nil},
		{"ReopenEntry", sqlReopen, nil},
		{"FindHold by token", sqlHoldByToken, nil},
		{"FindHold", sqlHold, nil},
		{"HoldsByRequestID (psbt_status)", sqlHoldsByRequestID, nil},
		{"CountWaitingHolds (hold caps)", sqlCountWaitingHolds, []string{"state=?"}},
		{"UnrespondedHolds (late answers)", sqlUnrespondedHolds, []string{"responded=?"}},
		{"Holds(waiting)", sqlHoldsByState + `) ORDER BY held_since, request_id`, []string{"state=?"}},
		{"MarkHoldResponded", sqlHoldResponded, nil},
		{"AddApproval", sqlAddApproval, nil},
		{"Approvals", sqlApprovals, nil},
		{"SignRequestRow", sqlSignRequest, nil},
		{"FindSignRequests (psbt_status)", sqlFindSignRequests, []string{"unsigned_txid=?"}},
		{"HoldsForApproval: by txid", sqlHoldsForApproval, []string{"unsigned_txid=?"}},
	}
	for _, w := range []struct {
		name, where string
		want        []string
	}{
		{"LedgerEntry", whereLedgerTxID, nil},
		{"LedgerSpending (replaceable coins)", whereSpending, []string{"outpoint=?"}},
		{"SettledAbove (reorg check)", whereSettled, []string{"conf_height>?", "invalid_height>?"}},
	} {
		entries, inputs := ledgerSelect(w.where)
		cases = append(cases, planCase{w.name + ": entries", entries, w.want}, planCase{w.name + ": inputs", inputs, w.want})
	}
	return cases
}

// growingTables are the tables whose size grows with the co-signer's history.
var growingTables = []string{"spend_ledger", "spend_ledger_inputs", "audit_log", "sign_requests", "holds", "approvals"}

// queryPlan returns the detail lines of EXPLAIN QUERY PLAN for query (its parameters bound to
// empty strings).
func queryPlan(t *testing.T, db *DB, query string) []string {
	t.Helper()
	args := make([]any, strings.Count(query, "?"))
	for i := range args {
		args[i] = ""
	}
	rows, err := db.SQL.QueryContext(context.Background(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("explain %q: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		if err := rows.Scan(&id, &parent, &notused, &detail); err != nil {
			t.Fatal(err)
		}
		out = append(out, detail)
	}
	return out
}

// planProblem says what is wrong with a plan, or "": a line that reads a whole growing table
// (SQLite's "SCAN <table>", possibly "USING [COVERING] INDEX", which still reads every entry;
// "SEARCH" lines use an index to reach only the rows asked for), or a wanted index constraint
// that no line shows.
func planProblem(plan []string, want []string) string {
	for _, line := range plan {
		for _, table := range growingTables {
			if line == "SCAN "+table || strings.HasPrefix(line, "SCAN "+table+" ") {
				return "reads a whole table: " + line
			}
		}
	}
	all := strings.Join(plan, "\n")
	for _, w := range want {
		if !strings.Contains(all, w) {
			return "no index serves " + w
		}
	}
	return ""
}

// TestRequestPathQueriesUseIndexes: every statement a request or the exposure's reconcile runs
// reaches its rows through an index — none reads the whole spend ledger, the audit log, the
// requests or the holds, so a decision's cost does not grow with the history (issue 15: p99
// of sign_psbt with 10k outstanding and 100k settled entries). Checked on the migrated schema.
func TestRequestPathQueriesUseIndexes(t *testing.T) {
	db := openTest(t)
	for _, c := range requestPathStatements() {
		plan := queryPlan(t, db, c.sql)
		if p := planProblem(plan, c.want); p != "" {
			t.Errorf("%s %s; plan: %q", c.name, p, plan)
		}
	}
}

// TestPlanCheckFails: the check above fails on the schema before migration 0018's indexes:
// the rate limit's count then reads every request of the client, and an approval by unsigned
// txid every request.
func TestPlanCheckFails(t *testing.T) {
	db := openTest(t)
	for _, idx := range []string{"sign_requests_client_at", "sign_requests_txid", "spend_ledger_conf_height", "spend_ledger_invalid_height"} {
		if _, err := db.SQL.Exec(`DROP INDEX ` + idx); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range requestPathStatements() {
		switch c.name {
		case "CountRequests (rate limit)", "HoldsForApproval: by txid", "SettledAbove (reorg check): entries":
			if p := planProblem(queryPlan(t, db, c.sql), c.want); p == "" {
				t.Errorf("%s: no problem found without the indexes", c.name)
			}
		}
	}
}
