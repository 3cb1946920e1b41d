package store

import (
	"context"
	"path/filepath"
	"testing"
)

// TestLedgerMigration0013Upgrade: a spend ledger written by the release-by-time model (0005) is
// upgraded by Open so that nothing it held counts less: reserved, spent, replaced and released
// entries all become outstanding (none of those states was a checked fact: a release could be
// by time or by an invented mempool spend), keep their outflow, signing time and inputs, and
// the first reconcile settles them from proven facts.
func TestLedgerMigration0013Upgrade(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	old := openBefore(ctx, t, path, 13)
	for _, q := range []string{
		`INSERT INTO spend_ledger VALUES ('r', 'c', '1', 100, 'reserved', 1000, 259200, '', 1000)`,
		`INSERT INTO spend_ledger VALUES ('s', 'c', '2', 200, 'spent', 1001, 259200, '', 1001)`,
		`INSERT INTO spend_ledger VALUES ('l', 'c', '3', 300, 'released', 1002, 259200, '', 1002)`,
		`INSERT INTO spend_ledger VALUES ('p', 'c', '4', 400, 'replaced', 1003, 259200, 'r', 1003)`,
		`INSERT INTO spend_ledger_inputs VALUES ('x:0', 'r')`,
		`INSERT INTO spend_ledger_inputs VALUES ('x:0', 'p')`,
		`INSERT INTO spend_ledger_inputs VALUES ('y:1', 'l')`,
	} {
		if _, err := old.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	defer db.Close()
	rs, err := db.Reservations(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"r": 100, "s": 200, "l": 300, "p": 400}
	if len(rs) != len(want) {
		t.Fatalf("entries after upgrade: %+v", rs)
	}
	for _, r := range rs {
		if r.State != LedgerOutstanding || r.OutflowSat != want[r.TxID] || r.ConfHeight != 0 || r.InvalidBy != "" {
			t.Errorf("%s after upgrade: %+v; want outstanding with its outflow", r.TxID, r)
		}
	}
	if r, _, _ := db.LedgerEntry(ctx, "l"); len(r.Inputs) != 1 || r.Inputs[0] != "y:1" || r.At.Unix() != 1002 {
		t.Errorf("released entry lost its inputs or time: %+v", r)
	}
}
