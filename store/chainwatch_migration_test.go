package store

import (
	"context"
	"path/filepath"
	"testing"
)

// TestChainwatchMigration0003Upgrade: a database written before migration 0003 (schema 0001 +
// 0002: scripts with verified statuses, UTXOs taken without SPV proofs, a tip) is upgraded by
// Open: the scripts are kept (so the lookahead windows stay) but their statuses are cleared, the
// unproven coins and the tip are forgotten (the first run refetches and proves everything), the
// new tables and columns exist, and the upgraded database takes and returns a full update.
func TestChainwatchMigration0003Upgrade(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "old.db")
	old := openBefore(ctx, t, path, 3)
	for _, q := range []string{
		`INSERT INTO chainwatch_scripts VALUES (0, 0, 'sh00', x'0014aa', 'status00')`,
		`INSERT INTO chainwatch_scripts VALUES (0, 1, 'sh01', x'0014bb', NULL)`,
		`INSERT INTO chainwatch_scripts VALUES (1, 0, 'sh10', x'0014cc', 'status10')`,
		`INSERT INTO chainwatch_utxos VALUES ('t1', 0, 5000, x'0014aa', 0, 0, 120)`,
		`INSERT INTO chainwatch_utxos VALUES ('t2', 1, 7000, x'0014cc', 1, 0, 0)`,
		`INSERT INTO chainwatch_tip VALUES (1, 130, 'beef')`,
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
	var applied int
	if err := db.SQL.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version >= 3`).Scan(&applied); err != nil || applied == 0 {
		t.Fatalf("migrations from 0003 applied: %d, %v", applied, err)
	}
	st, err := db.LoadChainwatch(ctx)
	if err != nil {
		t.Fatalf("load after upgrade: %v", err)
	}
	if len(st.Scripts) != 3 {
		t.Fatalf("scripts after upgrade: %+v", st.Scripts)
	}
	for _, s := range st.Scripts {
		if s.Status != "" {
			t.Fatalf("script %d/%d keeps status %q that vouched for unproven coins", s.Branch, s.Index, s.Status)
		}
	}
	if len(st.UTXOs) != 0 || st.HasTip || len(st.Txs) != 0 || len(st.Headers) != 0 || len(st.Unacked) != 0 {
		t.Fatalf("state after upgrade: utxos %d, tip %v, txs %d, headers %d, events %d", len(st.UTXOs), st.HasTip, len(st.Txs), len(st.Headers), len(st.Unacked))
	}

	// The upgraded schema takes what the watcher writes now.
	tip := ChainwatchTip{Height: 131, Hash: "cafe"}
	u := ChainwatchUTXO{ChainwatchOutPoint{"t3", 0}, 9000, []byte{0, 20, 0xaa}, 0, 0, 131, "cafe", true}
	if _, err := db.ApplyChainwatchUpdate(ctx, ChainwatchUpdate{
		PutScripts: []ChainwatchScript{{Branch: 0, Index: 0, ScriptHash: "sh00", PkScript: []byte{0, 20, 0xaa}, Status: "status00b"}},
		PutTxs:     []ChainwatchTx{{TxID: "t3", Height: 131, Verified: true, BlockHash: "cafe", Coinbase: true}},
		PutUTXOs:   []ChainwatchUTXO{u},
		Tip:        &tip,
	}); err != nil {
		t.Fatalf("update after upgrade: %v", err)
	}
	st, err = db.LoadChainwatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.UTXOs) != 1 || st.UTXOs[0].BlockHash != "cafe" || !st.UTXOs[0].Coinbase || !st.HasTip || st.Tip != tip || len(st.Txs) != 1 || !st.Txs[0].Verified {
		t.Fatalf("state after an update on the upgraded database: %+v", st)
	}
}
