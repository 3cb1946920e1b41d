package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/outbound"
	"github.com/custodyagents/cosigner/store"
)

func TestProposalsCommands(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	db, err := store.Open(context.Background(), filepath.Join(dir, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	at := time.Date(2026, 11, 21, 10, 0, 0, 123456789, time.UTC)
	if out, err := cli(t, "proposals", "list"); err != nil || !strings.Contains(out, "no proposals") {
		t.Fatalf("empty list: %q %v", out, err)
	}
	p, _, err := db.CreateProposal(ctx, store.Proposal{ID: "aaaa1111", Automation: "sweep", TriggerKey: "funding_confirmed:ab:0", State: string(outbound.StateProposed), CreatedAt: at}, "deposit")
	if err != nil {
		t.Fatal(err)
	}
	p.State, p.PSBT, p.UnsignedTxID, p.FeeSat, p.FeeRate = string(outbound.StateAwaitingCosigners), []byte{1}, "utx", 438, 3
	if err := db.ChangeProposal(ctx, store.ProposalChange{From: string(outbound.StateProposed), Proposal: p,
		Cosigners: []store.ProposalCosigner{{Cosigner: strings.Repeat("b", 64), BunkerURI: "bunker://" + strings.Repeat("b", 64) + "?relay=ws://x&secret=TOPSECRET", RequestID: "r1", State: outbound.CosignerWaiting,
			Detail: "dial bunker://bb?relay=ws://x&secret=TOPSECRET: refused"}},
		Events: []store.ProposalEvent{{Event: "self_signed"}, {Event: "requested"}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := db.CreateProposal(ctx, store.Proposal{ID: "bbbb2222", Automation: "sweep", TriggerKey: "k2", State: string(outbound.StateBroadcast), TxID: "tx2", CreatedAt: at.Add(time.Second)}, ""); err != nil {
		t.Fatal(err)
	}

	out, err := cli(t, "proposals", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if list[0]["id"] != "aaaa1111" || list[0]["state"] != "awaiting_cosigners" || list[0]["trigger"] != "funding_confirmed:ab:0" ||
		list[0]["fee_sat"] != 438.0 || list[0]["feerate_sat_vb"] != 3.0 || list[0]["created_at"] != "2026-11-21T10:00:00.123456789Z" || list[0]["timeline"] != nil {
		t.Fatalf("list[0] = %v", list[0])
	}
	if strings.Contains(out, "TOPSECRET") {
		t.Fatal("a connect secret was printed")
	}

	out, err = cli(t, "proposals", "show", "aaaa", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var one struct {
		Cosigners []struct{ PubKey, State, Detail string }
		Timeline  []struct{ At, Event, Detail string }
	}
	if err := json.Unmarshal([]byte(out), &one); err != nil || len(one.Cosigners) != 1 || one.Cosigners[0].State != "waiting" || len(one.Timeline) != 3 ||
		one.Timeline[0].Event != "proposed" || one.Timeline[2].Event != "requested" {
		t.Fatalf("show --json: %v\n%s", err, out)
	}
	if strings.Contains(out, "TOPSECRET") || strings.Contains(out, "bunker_uri") {
		t.Fatal("show printed a bunker URI secret")
	}
	if out, err := cli(t, "proposals", "show", "aaaa1111"); err != nil || !strings.Contains(out, "timeline:") || !strings.Contains(out, "awaiting_cosigners") {
		t.Fatalf("show: %q %v", out, err)
	}
	if _, err := cli(t, "proposals", "show", "zz"); err == nil || !strings.Contains(err.Error(), "no such proposal") {
		t.Fatalf("unknown id: %v", err)
	}

	// cancel: refused once finalized or later, done before.
	if _, err := cli(t, "proposals", "cancel", "bbbb2222"); err == nil || !strings.Contains(err.Error(), "may already be on the network") {
		t.Fatalf("cancel broadcast: %v", err)
	}
	if out, err := cli(t, "proposals", "cancel", "aaaa"); err != nil || !strings.Contains(out, "abandoned (cancelled by operator)") {
		t.Fatalf("cancel: %q %v", out, err)
	}
	got, _ := db.GetProposal(ctx, "aaaa1111")
	if got.State != string(outbound.StateAbandoned) || got.Reason != "cancelled by operator" {
		t.Fatalf("after cancel: %+v", got)
	}
	if _, err := cli(t, "proposals", "frobnicate"); err == nil {
		t.Fatal("unknown subcommand accepted")
	}
}
