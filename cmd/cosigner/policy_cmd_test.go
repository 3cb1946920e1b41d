package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/store"
)

func TestPolicySchemaCommand(t *testing.T) {
	var out bytes.Buffer
	if err := runCommand(context.Background(), []string{"policy", "schema"}, &out); err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(out.Bytes(), &s); err != nil || s["$id"] != policy.SchemaID {
		t.Fatalf("schema: %v", err)
	}
}

// TestPolicyCheckListsAutomations: `policy check` lists each automation in one line, with its
// co-signers by pubkey and never their bunker URIs (which carry connect secrets).
func TestPolicyCheckListsAutomations(t *testing.T) {
	var out bytes.Buffer
	if err := runCommand(context.Background(), []string{"policy", "check", "../../examples/sweep-to-vault.yaml"}, &out); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, want := range []string{": OK (", "1 automation(s):\n", "  sweep_deposits: on funding with 1 confirmation(s) → sweep to descriptor:cold_vault keeping 0.00100000 BTC;",
		"fee: target 6 blocks, fallback 5 sat/vB, max 50 sat/vB", "signatures: 2, asking c6047f9441ed7d6d…", "fee bump after 6 block(s)"} {
		if !strings.Contains(got, want) {
			t.Errorf("policy check output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "secret") || strings.Contains(got, "bunker://") {
		t.Errorf("policy check shows a bunker URI:\n%s", got)
	}
	out.Reset()
	if err := runCommand(context.Background(), []string{"policy", "check", "../../examples/minimal.yaml"}, &out); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "automation") {
		t.Errorf("a policy without automations lists some:\n%s", out.String())
	}
}

// TestPolicyTestCommand: a dry run against the wallet view and spend ledger stored in the data
// dir, with the rule-by-rule explanation.
func TestPolicyTestCommand(t *testing.T) {
	ctx := context.Background()
	net := &chaincfg.RegressionNetParams
	dir := t.TempDir()
	var parts []string
	for i := byte(1); i <= 3; i++ {
		k, err := keystore.NewKeys(bytes.Repeat([]byte{i}, 32), fmt.Sprintf("%064x", i), net)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, k.Public.KeyOrigin()+"/<0;1>/*")
	}
	body := "wsh(sortedmulti(2," + strings.Join(parts, ",") + "))"
	sum, _ := descriptor.Checksum(body)
	desc, err := descriptor.Parse(body+"#"+sum, net, descriptor.RequireChecksum())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("COSIGNER_DATA_DIR", dir)
	t.Setenv("COSIGNER_NETWORK", "regtest")
	t.Setenv("COSIGNER_DESCRIPTOR", body+"#"+sum)

	// The wallet view as the daemon leaves it: one coin of 100000 sat at 0/0, confirmed.
	db, err := store.Open(ctx, filepath.Join(dir, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	in0, _ := desc.PkScript(0, 0)
	change, _ := desc.PkScript(1, 0)
	sh := func(s []byte) string { h := sha256.Sum256(s); return fmt.Sprintf("%x", h) }
	fund := chainhash.Hash(sha256.Sum256([]byte("funding")))
	_, err = db.ApplyChainwatchUpdate(ctx, store.ChainwatchUpdate{
		PutScripts: []store.ChainwatchScript{{Branch: 0, Index: 0, ScriptHash: sh(in0), PkScript: in0, Status: "aa"}, {Branch: 1, Index: 0, ScriptHash: sh(change), PkScript: change}},
		PutUTXOs:   []store.ChainwatchUTXO{{ChainwatchOutPoint: store.ChainwatchOutPoint{TxID: fund.String(), Vout: 0}, ValueSat: 100_000, PkScript: in0, Branch: 0, Index: 0, Height: 100}},
		Tip:        &store.ChainwatchTip{Height: 105, Hash: strings.Repeat("00", 32)},
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	// A PSBT paying 70000 sat out and 29000 back as change.
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Hash: fund}, Sequence: wire.MaxTxInSequenceNum - 2})
	tx.AddTxOut(wire.NewTxOut(70_000, bytes.Repeat([]byte{0x51}, 1)))
	tx.AddTxOut(wire.NewTxOut(29_000, change))
	p, _ := psbt.NewFromUnsignedTx(tx)
	u, _ := psbt.NewUpdater(p)
	u.AddInWitnessUtxo(wire.NewTxOut(100_000, in0), 0)
	d, _ := desc.Derive(1, 0)
	for _, k := range d.Keys {
		u.AddOutBip32Derivation(binary.LittleEndian.Uint32(k.Fingerprint[:]), k.Path, k.PubKey.SerializeCompressed(), 1)
	}
	var b bytes.Buffer
	p.Serialize(&b)
	psbtFile := filepath.Join(dir, "tx.psbt")
	os.WriteFile(psbtFile, []byte(fmt.Sprintf("%x\n", b.Bytes())), 0o600)

	pol := filepath.Join(dir, "p.yaml")
	os.WriteFile(pol, []byte(`version: 1
clients: [{name: coordinator, pubkey: 79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798}]
limits: {max_per_tx: 1 BTC, min_confirmations: 3}
rules:
  - {name: small, match: {max_outflow: 50000 sat}, action: allow}
  - {name: big, match: {min_outflow: 50000 sat}, action: deny}
`), 0o600)
	var out bytes.Buffer
	if err := runCommand(ctx, []string{"policy", "test", pol, "--psbt", psbtFile}, &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"outflow 0.00071000 BTC", "decision: DENY by big", "not matched  small", "max_outflow: outflow 0.00071000 BTC (fee included) is over 0.00050000 BTC", "pass         min_confirmations"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("policy test output lacks %q:\n%s", want, out.String())
		}
	}
	if err := runCommand(ctx, []string{"policy", "test", pol}, &out); err == nil {
		t.Fatal("policy test without --psbt should be a usage error")
	}

	// The PSBT as an automation's: --client automation:NAME, matched by the rule naming it.
	os.WriteFile(pol, []byte(`version: 1
clients: [{name: coordinator, pubkey: 79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798}]
limits: {max_per_tx: 1 BTC}
automations:
  - name: sweep
    trigger: {funding_confirmed: 1}
    action: {sweep: {to: bcrt1qqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcruj60yu}}
    cosigners: ["bunker://c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5?relay=wss://relay.example.com"]
rules:
  - {name: automated, match: {clients: [automation:sweep]}, action: allow}
`), 0o600)
	for _, c := range []struct{ client, want string }{
		{"automation:sweep", "decision: ALLOW by automated"},
		{"coordinator", "decision: DENY by no_rule_matched"},
		{"automation:other", "decision: UNAUTHORIZED by clients: no automation named \"other\""},
	} {
		out.Reset()
		if err := runCommand(ctx, []string{"policy", "test", pol, "--psbt", psbtFile, "--client", c.client}, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out.String(), c.want) {
			t.Errorf("policy test --client %s lacks %q:\n%s", c.client, c.want, out.String())
		}
	}
}
