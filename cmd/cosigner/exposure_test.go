package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/store"
)

// TestExposureCommands: list shows outstanding entries (whatever their age) with the window
// totals; invalidate refuses what it cannot do with a specific error and writes nothing.
func TestExposureCommands(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	pol := filepath.Join(dir, "policy.yaml")
	t.Setenv("COSIGNER_POLICY", pol)
	if err := os.WriteFile(pol, []byte("version: 1\nclients: [{name: c, pubkey: "+strings.Repeat("ab", 32)+"}]\nlimits:\n  max_per_tx: 1 BTC\n  velocity: [{window: 30d, max: 1 BTC}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(dir, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	txid := strings.Repeat("7", 64)
	old := time.Now().Add(-90 * 24 * time.Hour)
	if _, _, err := db.BeginSignRequest(ctx, store.SignRequest{Client: "c", RequestID: "r1", Method: "sign_psbt", PSBTSHA256: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishDecision(ctx, store.Decided{Request: store.SignRequest{Client: "c", RequestID: "r1", State: store.RequestSigned, UnsignedTxID: txid},
		Audit:   store.AuditEntry{Client: "c", RequestID: "r1", Method: "sign_psbt", Decision: "signed"},
		Reserve: &store.Reservation{TxID: txid, Client: "c", RequestID: "r1", OutflowSat: 80_000_000, Inputs: []string{strings.Repeat("a", 64) + ":0"}, At: old}}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	out, err := cli(t, "exposure", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var x struct {
		Windows []struct {
			Window      string `json:"window"`
			ExposureSat int64  `json:"exposure_sat"`
			MaxSat      int64  `json:"max_sat"`
		} `json:"windows"`
		Entries []struct {
			TxID, State string
			OutflowSat  int64 `json:"outflow_sat"`
			Inputs      []string
		} `json:"entries"`
	}
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(x.Windows) != 1 || x.Windows[0].ExposureSat != 80_000_000 || x.Windows[0].MaxSat != 100_000_000 ||
		len(x.Entries) != 1 || x.Entries[0].TxID != txid || x.Entries[0].State != "outstanding" || len(x.Entries[0].Inputs) != 1 {
		t.Fatalf("list --json = %s", out)
	}
	if out, err := cli(t, "exposure", "list"); err != nil || !strings.Contains(out, "window 30d: 0.80000000 BTC of 1 BTC") || !strings.Contains(out, " 90d ") || !strings.Contains(out, "every window") {
		t.Fatalf("list = %q, %v", out, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"exposure", "invalidate", "xyz"}, "not a txid"},
		{[]string{"exposure", "invalidate", txid}, "no automation in force"},
		{[]string{"exposure", "invalidate", txid, "--via", "nope"}, `no automation "nope" in force`},
		{[]string{"exposure", "frobnicate"}, "usage"},
		{[]string{"exposure", "list", "--bogus"}, "unknown flag"},
	} {
		if _, err := cli(t, c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v; want %q", c.args, err, c.want)
		}
	}
	db, err = store.Open(ctx, filepath.Join(dir, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if ps, err := db.Proposals(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("refused invalidations wrote proposals: %+v %v", ps, err)
	}
}
