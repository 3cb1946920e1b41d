// Command devnet runs the local test network by hand: btcd (regtest),
// ElectrumX behind the RPC compatibility proxy, and the Nostr relays, on
// 127.0.0.1, until Ctrl-C or SIGTERM.
//
//	go run ./internal/devnet/cmd/devnet [-dir .devnet] [-relays 3] [-electrum-port 0] [-blocks 450] [-no-cost-limits]
//
// It prints the URLs and the btcd RPC address, then waits. Tools come from
// scripts/install-tools.sh.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/custodyagents/cosigner/internal/devnet"
)

func main() {
	dir := flag.String("dir", ".devnet", "folder for data and logs (emptied first unless -keep)")
	keep := flag.Bool("keep", false, "keep the data in -dir from an earlier run instead of starting afresh")
	relays := flag.Int("relays", 3, "number of Nostr relays")
	electrumPort := flag.Int("electrum-port", 0, "ElectrumX TCP port (0 = any free port)")
	rpcPort := flag.Int("rpc-port", 0, "btcd RPC port (0 = any free port)")
	blocks := flag.Int("blocks", 450, "blocks to mine at start")
	verbose := flag.Bool("v", false, "debug logging")
	noCostLimits := flag.Bool("no-cost-limits", false, "lift ElectrumX's cost limits (COST_SOFT_LIMIT=0 COST_HARD_LIMIT=0) for very big wallets")
	flag.Parse()

	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := run(log, *dir, *keep, *relays, *electrumPort, *rpcPort, *blocks, *noCostLimits); err != nil {
		fmt.Fprintln(os.Stderr, "devnet:", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger, dir string, keep bool, relays, electrumPort, rpcPort, blocks int, noCostLimits bool) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if !keep {
		if err := os.RemoveAll(abs); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if blocks == 0 {
		blocks = -1 // Config: 0 means the default
	}
	n, err := devnet.Start(startCtx, devnet.Config{
		Dir:           abs,
		RelayPorts:    make([]int, relays),
		ElectrumPort:  electrumPort,
		BtcdRPCPort:   rpcPort,
		InitialBlocks: blocks,
		Logger:        log,

		ElectrumNoCostLimits: noCostLimits,
	})
	if err != nil {
		return err
	}
	defer n.Close()

	fmt.Printf("electrum  %s\n", n.ElectrumURL())
	for i, u := range n.RelayURLs() {
		fmt.Printf("relay %d   %s (%s)\n", i, u, n.RelaySoftware(i))
	}
	fmt.Printf("btcd rpc  http://devnet:devnet@%s/ (btcctl -C /dev/null --regtest --notls -u devnet -P devnet -s %s getblockcount)\n", n.BtcdRPCAddr(), n.BtcdRPCAddr())
	fmt.Printf("logs      %s\n", n.Dir())
	fmt.Println("Ctrl-C to stop")
	<-ctx.Done()
	fmt.Println("stopping")
	return n.Close()
}
