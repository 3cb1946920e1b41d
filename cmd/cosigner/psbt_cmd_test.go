package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/txscript"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

// inspectWallet registers a 2-of-3 taproot wallet of fixed test keys in the environment and
// returns it.
func inspectWallet(t *testing.T) *descriptor.Descriptor {
	var keys []string
	for i := byte(1); i <= 3; i++ {
		m, _ := hdkeychain.NewMaster(bytes.Repeat([]byte{i}, 32), &chaincfg.RegressionNetParams)
		xk := m
		for _, s := range []uint32{48, 1, 0, 2} {
			xk, _ = xk.Derive(hdkeychain.HardenedKeyStart + s)
		}
		pub, _ := xk.Neuter()
		mp, _ := m.ECPubKey()
		fp := sha256.Sum256(mp.SerializeCompressed()) // any 4 bytes serve as a test fingerprint
		keys = append(keys, fmt.Sprintf("[%x/48h/1h/0h/2h]%s/<0;1>/*", fp[:4], pub))
	}
	body := "tr(" + descriptor.NUMSKey + ",multi_a(2," + strings.Join(keys, ",") + "))"
	sum, _ := descriptor.Checksum(body)
	d, err := descriptor.Parse(body+"#"+sum, &chaincfg.RegressionNetParams, descriptor.RequireChecksum())
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("COSIGNER_DESCRIPTOR", d.String())
	return d
}

// writePSBT writes a PSBT spending the wallet's receive/0 coin at op (claiming claimed sat) to
// an external script and change/1, and returns the file name.
func writePSBT(t *testing.T, d *descriptor.Descriptor, op wire.OutPoint, claimed int64) string {
	in, _ := d.Derive(0, 0)
	change, _ := d.Derive(1, 1)
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(&wire.TxIn{PreviousOutPoint: op, Sequence: wire.MaxTxInSequenceNum - 2})
	tx.AddTxOut(wire.NewTxOut(30_000, append([]byte{txscript.OP_0, 0x14}, make([]byte, 20)...)))
	tx.AddTxOut(wire.NewTxOut(69_000, change.PkScript))
	data, _ := txscript.NullDataScript([]byte("memo"))
	tx.AddTxOut(wire.NewTxOut(0, data))
	p, _ := btcpsbt.NewFromUnsignedTx(tx)
	p.Inputs[0].WitnessUtxo = wire.NewTxOut(claimed, in.PkScript)
	for _, k := range change.Keys {
		p.Outputs[1].TaprootBip32Derivation = append(p.Outputs[1].TaprootBip32Derivation, &btcpsbt.TaprootBip32Derivation{
			XOnlyPubKey: k.PubKey.SerializeCompressed()[1:], MasterKeyFingerprint: binary.LittleEndian.Uint32(k.Fingerprint[:]), Bip32Path: k.Path})
	}
	s, err := psbt.Encode(p, psbt.Base64)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "tx.psbt")
	if err := os.WriteFile(f, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestPSBTInspectWithoutWalletView(t *testing.T) {
	d := inspectWallet(t)
	t.Setenv("COSIGNER_DATA_DIR", t.TempDir())
	file := writePSBT(t, d, wire.OutPoint{Hash: chainhash.Hash{1}, Index: 0}, 100_000)
	var out bytes.Buffer
	if err := runCommand(context.Background(), []string{"psbt", "inspect", file}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	got := out.String()
	for _, want := range []string{"wallet view: none", "NOT checked against the chain", "change/1", "op_return", "outflow (inputs − change)",
		"0.00031000 BTC", "feerate", "op_return_output: output 2", "script path"} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
}

func TestPSBTInspectWithWalletView(t *testing.T) {
	d := inspectWallet(t)
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(dir, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	op := wire.OutPoint{Hash: chainhash.Hash{2}, Index: 1}
	in, _ := d.Derive(0, 0)
	var scripts []store.ChainwatchScript
	for b := uint32(0); b < 2; b++ {
		for i := uint32(0); i < 5; i++ {
			s, _ := d.PkScript(b, i)
			scripts = append(scripts, store.ChainwatchScript{Branch: b, Index: i, ScriptHash: fmt.Sprintf("%d-%d", b, i), PkScript: s})
		}
	}
	_, err = db.ApplyChainwatchUpdate(ctx, store.ChainwatchUpdate{PutScripts: scripts,
		PutUTXOs: []store.ChainwatchUTXO{{ChainwatchOutPoint: store.ChainwatchOutPoint{TxID: op.Hash.String(), Vout: 1}, ValueSat: 100_000, PkScript: in.PkScript, Height: 95}},
		Tip:      &store.ChainwatchTip{Height: 100, Hash: chainhash.Hash{9}.String()}})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := runCommand(ctx, []string{"psbt", "inspect", writePSBT(t, d, op, 100_000)}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "tip 100, 1 UTXOs") || !strings.Contains(out.String(), "receive/0") {
		t.Fatalf("output:\n%s", out.String())
	}
	// The same PSBT lying about the amount: refused, as sign_psbt would.
	out.Reset()
	err = runCommand(ctx, []string{"psbt", "inspect", writePSBT(t, d, op, 60_000)}, &out)
	if err == nil || !strings.Contains(out.String(), "REFUSED") || !strings.Contains(out.String(), "unsafe_psbt: input_amount") {
		t.Fatalf("err %v, output:\n%s", err, out.String())
	}
	out.Reset()
	if err := runCommand(ctx, []string{"psbt", "inspect", "--json", writePSBT(t, d, op, 100_000)}, &out); err != nil ||
		!strings.Contains(out.String(), `"script_type": "p2tr"`) || !strings.Contains(out.String(), `"outflow_sat": 31000`) {
		t.Fatalf("--json: %v\n%s", err, out.String())
	}
	if err := runCommand(ctx, []string{"psbt", "look"}, &out); err == nil {
		t.Fatal("bad usage accepted")
	}
}

// TestOfflineViewsCoinbaseMaturity: `psbt inspect` and `policy test` read the stored wallet with
// the running daemon's rule for coinbase outputs (chainwatch's SpendableCoin): a coinbase coin
// that a transaction in the next block may not spend yet (99 confirmations at the stored tip) is
// refused as sign_psbt refuses it (input_unspent), and one with 100 confirmations is analysed.
func TestOfflineViewsCoinbaseMaturity(t *testing.T) {
	d := inspectWallet(t)
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	ctx := context.Background()
	op := wire.OutPoint{Hash: chainhash.Hash{3}, Index: 0}
	in, _ := d.Derive(0, 0)
	var scripts []store.ChainwatchScript
	for b := uint32(0); b < 2; b++ {
		for i := uint32(0); i < 5; i++ {
			s, _ := d.PkScript(b, i)
			scripts = append(scripts, store.ChainwatchScript{Branch: b, Index: i, ScriptHash: fmt.Sprintf("%d-%d", b, i), PkScript: s})
		}
	}
	const minedAt = 10
	storeTip := func(tip int32) {
		db, err := store.Open(ctx, filepath.Join(dir, "cosigner.db"))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if _, err := db.ApplyChainwatchUpdate(ctx, store.ChainwatchUpdate{PutScripts: scripts,
			PutUTXOs: []store.ChainwatchUTXO{{ChainwatchOutPoint: store.ChainwatchOutPoint{TxID: op.Hash.String(), Vout: op.Index},
				ValueSat: 100_000, PkScript: in.PkScript, Height: minedAt, BlockHash: chainhash.Hash{8}.String(), Coinbase: true}},
			Tip: &store.ChainwatchTip{Height: tip, Hash: chainhash.Hash{9}.String()}}); err != nil {
			t.Fatal(err)
		}
	}
	pol := filepath.Join(dir, "p.yaml")
	if err := os.WriteFile(pol, []byte(`version: 1
clients: [{name: coordinator, pubkey: 79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798}]
limits: {max_per_tx: 1 BTC}
rules:
  - {name: small, match: {max_outflow: 1 BTC}, action: allow}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	file := writePSBT(t, d, op, 100_000)
	inspect := func() (string, error) {
		var out bytes.Buffer
		err := runCommand(ctx, []string{"psbt", "inspect", file}, &out)
		return out.String(), err
	}
	policyTest := func() (string, error) {
		var out bytes.Buffer
		err := runCommand(ctx, []string{"policy", "test", pol, "--psbt", file}, &out)
		return out.String(), err
	}

	// 99 confirmations: the next block may not spend it yet.
	storeTip(minedAt + chainwatch.CoinbaseMaturity - 2)
	if out, err := inspect(); err == nil || !strings.Contains(out, "unsafe_psbt: input_unspent") {
		t.Fatalf("psbt inspect of an immature coinbase coin: err %v, output:\n%s", err, out)
	}
	if out, err := policyTest(); err == nil || !strings.Contains(err.Error(), "refused before the policy is asked") || !strings.Contains(err.Error(), "input_unspent") {
		t.Fatalf("policy test of an immature coinbase coin: err %v, output:\n%s", err, out)
	}
	// 100 confirmations: spendable in the next block.
	storeTip(minedAt + chainwatch.CoinbaseMaturity - 1)
	if out, err := inspect(); err != nil || !strings.Contains(out, "receive/0") {
		t.Fatalf("psbt inspect of a mature coinbase coin: err %v, output:\n%s", err, out)
	}
	if out, err := policyTest(); err != nil || !strings.Contains(out, "decision: ALLOW by small") {
		t.Fatalf("policy test of a mature coinbase coin: err %v, output:\n%s", err, out)
	}
}
