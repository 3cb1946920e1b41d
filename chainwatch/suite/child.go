package suite

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/store"
)

// ChildEnv is the environment variable that turns a test binary into a watcher process for the
// "watcher killed (SIGKILL)" case: its value is the JSON childConfig.
const ChildEnv = "CHAINWATCH_SUITE_CHILD"

// childPrefix starts every line the child writes on stdout for the parent.
const childPrefix = "SUITE-CHILD "

type childConfig struct {
	ServerURL string `json:"server_url"`
	DBPath    string `json:"db_path"`
	Seed      uint32 `json:"seed"`
	Network   string `json:"network"`
	// Fingerprints pins TLS servers (electrum.TLSOptions.Fingerprints).
	Fingerprints map[string]string `json:"fingerprints,omitempty"`
}

// ChildMain runs a Watcher for the parent test when ChildEnv is set and never returns (the
// parent kills the process with SIGKILL); it returns false at once when ChildEnv is not set. A
// test binary that runs the suite's cases calls it from a test function (see
// TestWatcherChildProcess), so that the case can re-execute that binary.
//
// The child writes "SUITE-CHILD ready" once the watcher is Ready and
// "SUITE-CHILD <EventType> <outpoint or height>" for every event, on stdout.
func ChildMain() bool {
	raw := os.Getenv(ChildEnv)
	if raw == "" {
		return false
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "suite child:", err)
		os.Exit(3)
	}
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fail(err)
	}
	params, ok := map[string]*chaincfg.Params{"regtest": &chaincfg.RegressionNetParams, "testnet3": &chaincfg.TestNet3Params, "signet": &chaincfg.SigNetParams}[cfg.Network]
	if !ok {
		fail(fmt.Errorf("unknown network %q", cfg.Network))
	}
	wallet, err := NewWallet(params, cfg.Seed)
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, cfg.DBPath)
	if err != nil {
		fail(err)
	}
	w, err := chainwatch.New(chainwatch.Config{
		ServerURL: cfg.ServerURL, Scripts: wallet, DB: db, Params: params,
		Logger:       slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		ClientName:   "cosigner-suite-child",
		ReconnectMin: 100 * time.Millisecond,
		Electrum:     electrum.Options{RequestTimeout: 60 * time.Second, TLS: electrum.TLSOptions{Fingerprints: cfg.Fingerprints}},
	})
	if err != nil {
		fail(err)
	}
	go func() {
		<-w.Ready()
		fmt.Println(childPrefix + "ready")
	}()
	go func() {
		for ev := range w.Events() {
			switch e := ev.(type) {
			case chainwatch.FundingSeen:
				fmt.Println(childPrefix+"FundingSeen", e.UTXO.OutPoint)
			case chainwatch.FundingConfirmed:
				fmt.Println(childPrefix+"FundingConfirmed", e.UTXO.OutPoint)
			case chainwatch.Spent:
				fmt.Println(childPrefix+"Spent", e.OutPoint)
			case chainwatch.NewTip:
				fmt.Println(childPrefix+"NewTip", e.Tip.Height)
			default:
				fmt.Printf("%s%T\n", childPrefix, ev)
			}
		}
	}()
	if err := w.Run(ctx); err != nil {
		fail(err)
	}
	select {}
}
