package electrum_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// A watcher's connection loop over several servers: every Client from Connect is a fresh
// Electrum session, so subscriptions are made again on each (that is how a switch of server
// reaches the watcher). Connect itself waits out each server's backoff.
func ExamplePool() {
	ctx := context.Background()
	pins, err := electrum.NewFilePinStore(filepath.Join("/data", "electrum-pins.json"))
	if err != nil {
		panic(err) // a pin file that does not parse: refuse to start
	}
	pool, err := electrum.NewPool([]string{"ssl://electrum.example:50002", "tcp://127.0.0.1:50001"}, electrum.PoolOptions{
		Options: electrum.Options{TLS: electrum.TLSOptions{Pins: pins}, Logger: slog.Default()},
	})
	if err != nil {
		panic(err)
	}
	for ctx.Err() == nil {
		c, err := pool.Connect(ctx)
		if err != nil {
			return // ctx ended; err names each server's last error
		}
		var tip struct {
			Height int32  `json:"height"`
			Hex    string `json:"hex"`
		}
		if err := c.Call(ctx, "blockchain.headers.subscribe", nil, &tip); err != nil {
			c.Close()
			continue
		}
		// … subscribe the wallet's scripthashes, then follow c.Notifications() until it closes.
		for range c.Notifications() {
		}
		if errors.Is(c.Err(), electrum.ErrUnresponsive) {
			slog.Warn("server stopped answering; failing over", "server", c.Server())
		}
		c.Close()
		// Per-server health for a status page; a server whose certificate no longer matches its
		// pin shows its *PinMismatchError as LastError and is not used.
		_ = pool.Health()
	}
}
