package chainwatch

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/store"
)

func TestNewValidates(t *testing.T) {
	db, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	good := Config{ServerURL: "tcp://127.0.0.1:50001", Scripts: fakeScripts{branches: 2}, DB: db, Params: &chaincfg.RegressionNetParams}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want error
	}{
		{"ok", func(*Config) {}, nil},
		{"unsupported scheme", func(c *Config) { c.ServerURL = "http://127.0.0.1:50002" }, electrum.ErrUnsupportedScheme},
		{"no port", func(c *Config) { c.ServerURL = "tcp://127.0.0.1" }, electrum.ErrBadURL},
		{"no scripts", func(c *Config) { c.Scripts = nil }, ErrConfig},
		{"no branches", func(c *Config) { c.Scripts = fakeScripts{} }, ErrConfig},
		{"no db", func(c *Config) { c.DB = nil }, ErrConfig},
		{"no params", func(c *Config) { c.Params = nil }, ErrConfig},
		{"negative lookahead", func(c *Config) { c.Lookahead = -1 }, ErrConfig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := good
			tc.mod(&cfg)
			w, err := New(cfg)
			if !errors.Is(err, tc.want) {
				t.Fatalf("New err = %v, want %v", err, tc.want)
			}
			if err == nil && w.Health().Connected {
				t.Fatal("connected before Run")
			}
		})
	}
}

func TestReadStatusAndBroadcastOffline(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	pk, _ := fakeScripts{}.PkScript(0, 0)
	s := ScriptState{Branch: 0, Index: 0, PkScript: pk, ScriptHash: ScriptHash(pk), Status: "x"}
	a, b := txid('a'), txid('b')
	u1 := UTXO{Value: 1000, PkScript: pk, Height: 7}
	u1.OutPoint.Hash = a
	u2 := UTXO{Value: 250, PkScript: pk, Height: 0}
	u2.OutPoint.Hash, u2.OutPoint.Index = b, 3
	tip := Tip{Height: 9, Hash: b}
	upd := store.ChainwatchUpdate{PutScripts: []store.ChainwatchScript{scriptToStore(s)}, PutUTXOs: []store.ChainwatchUTXO{utxoToStore(u2), utxoToStore(u1)}}
	st := store.ChainwatchTip{Height: tip.Height, Hash: tip.Hash.String()}
	upd.Tip = &st
	if _, err := db.ApplyChainwatchUpdate(ctx, upd); err != nil {
		t.Fatal(err)
	}
	got, err := ReadStatus(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if !got.HasTip || got.Tip != tip || got.Confirmed != 1000 || got.Unconfirmed != 250 || got.ScriptsTracked != 1 || got.ScriptsUsed != 1 {
		t.Fatalf("status = %+v", got)
	}
	if len(got.UTXOs) != 2 || got.UTXOs[0].OutPoint != u1.OutPoint || got.UTXOs[1].OutPoint != u2.OutPoint {
		t.Fatalf("UTXOs = %+v (want confirmed first)", got.UTXOs)
	}

	w, err := New(Config{ServerURL: "tcp://127.0.0.1:1", Scripts: fakeScripts{branches: 1}, DB: db, Params: &chaincfg.RegressionNetParams})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Broadcast(ctx, newTx()); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Broadcast err = %v, want ErrNotConnected", err)
	}
}

func TestRegisterWithoutNetwork(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "r.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	w, err := New(Config{ServerURL: "tcp://127.0.0.1:1", Scripts: fakeScripts{branches: 1}, DB: db, Params: &chaincfg.RegressionNetParams})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.RegisterConf(txid('a'), 0); !errors.Is(err, ErrConfig) {
		t.Fatalf("numConfs 0: %v", err)
	}
	if _, err := w.RegisterSpend(wire.OutPoint{Hash: txid('a')}); !errors.Is(err, ErrUnknownOutPoint) {
		t.Fatalf("spend of an unknown outpoint: %v", err)
	}
	c, err := w.RegisterConf(txid('a'), 3)
	if err != nil {
		t.Fatal(err)
	}
	c.Cancel()
	c.Cancel() // twice is fine
	select {
	case <-c.Done:
	default:
		t.Fatal("Cancel did not close Done")
	}
	if err := w.Ack(ctx, 1); !errors.Is(err, ErrUnknownEvent) {
		t.Fatalf("Ack of a never stored id: %v", err)
	}
	// Run ends (ctx cancelled): later registrations are done at once.
	rctx, cancel := context.WithCancel(ctx)
	c2, _ := w.RegisterConf(txid('b'), 1)
	cancel()
	if err := w.Run(rctx); err != nil {
		t.Fatal(err)
	}
	for _, done := range []chan struct{}{c2.Done} {
		select {
		case <-done:
		default:
			t.Fatal("registration still open after Run returned")
		}
	}
	c3, _ := w.RegisterConf(txid('c'), 1)
	select {
	case <-c3.Done:
	default:
		t.Fatal("registration after Run returned is open")
	}
}
