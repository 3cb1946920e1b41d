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

// TestExposureInvalidateSpendableInputOnly: `exposure invalidate` proposes to spend an input the
// next block may spend — the engine builds invalidations only from such coins — so an outstanding
// transaction whose first input is an immature coinbase output is invalidated through its
// second input.
func TestExposureInvalidateSpendableInputOnly(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	t.Setenv("COSIGNER_NETWORK", "regtest")
	pol := filepath.Join(dir, "policy.yaml")
	t.Setenv("COSIGNER_POLICY", pol)
	if err := os.WriteFile(pol, []byte(`version: 1
clients: [{name: c, pubkey: `+strings.Repeat("ab", 32)+`}]
limits: {max_per_tx: 1 BTC}
automations:
  - name: sweep
    trigger: {schedule: 1d}
    action: {sweep: {to: bcrt1qqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcruj60yu}}
    cosigners: ["bunker://c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5?relay=wss://relay.example.com"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(dir, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	txid := strings.Repeat("7", 64)
	coinbase, plain := strings.Repeat("a", 64), strings.Repeat("b", 64)
	if _, _, err := db.BeginSignRequest(ctx, store.SignRequest{Client: "c", RequestID: "r1", Method: "sign_psbt", PSBTSHA256: []byte{1}}); err != nil {
		t.Fatal(err)
	}
	if err := db.FinishDecision(ctx, store.Decided{Request: store.SignRequest{Client: "c", RequestID: "r1", State: store.RequestSigned, UnsignedTxID: txid},
		Audit:   store.AuditEntry{Client: "c", RequestID: "r1", Method: "sign_psbt", Decision: "signed"},
		Reserve: &store.Reservation{TxID: txid, Client: "c", RequestID: "r1", OutflowSat: 80_000_000, Inputs: []string{coinbase + ":0", plain + ":1"}, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	// The wallet as the daemon stored it: both inputs unspent; the coinbase output mined at 10
	// has 99 confirmations at tip 108, so the next block may not spend it.
	utxo := func(txid string, vout uint32, height int32, cb bool) store.ChainwatchUTXO {
		return store.ChainwatchUTXO{ChainwatchOutPoint: store.ChainwatchOutPoint{TxID: txid, Vout: vout}, ValueSat: 50_000,
			PkScript: []byte{0x51}, Height: height, BlockHash: strings.Repeat("0", 63) + "8", Coinbase: cb}
	}
	if _, err := db.ApplyChainwatchUpdate(ctx, store.ChainwatchUpdate{
		PutScripts: []store.ChainwatchScript{{ScriptHash: strings.Repeat("5", 64), PkScript: []byte{0x51}, Status: "aa"}},
		PutUTXOs:   []store.ChainwatchUTXO{utxo(coinbase, 0, 10, true), utxo(plain, 1, 50, false)},
		Tip:        &store.ChainwatchTip{Height: 108, Hash: strings.Repeat("0", 63) + "9"}}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	out, err := cli(t, "exposure", "invalidate", txid)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(out, plain+":1") || strings.Contains(out, coinbase) {
		t.Fatalf("invalidate should spend %s:1, not the immature coinbase output:\n%s", plain, out)
	}
}
