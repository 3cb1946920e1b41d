package bench

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/internal/devnet"
)

// BenchmarkElectrumClient measures the project's Electrum client against ElectrumX on the local
// test network: the round trip of server.ping over plain TCP (the baseline) and over TLS, and
// fetching the histories of 1,000 scripthashes one call at a time (the baseline) and in JSON-RPC
// batches of 100.
func BenchmarkElectrumClient(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n, err := devnet.Start(ctx, devnet.Config{Dir: b.TempDir(), RelayPorts: []int{}})
	if err != nil {
		b.Fatalf("devnet.Start: %v", err)
	}
	defer n.Close()
	dial := func(b *testing.B, url string) *electrum.Client {
		b.Helper()
		c, err := electrum.Dial(ctx, url, electrum.Options{
			ClientName: "cosigner-bench", PingInterval: -1,
			TLS: electrum.TLSOptions{Pins: &electrum.MemoryPinStore{}},
		})
		if err != nil {
			b.Fatal(err)
		}
		return c
	}

	const pings = 500
	for _, tc := range []struct{ name, url string }{{"ping/tcp", n.ElectrumURL()}, {"ping/tls", n.ElectrumTLSURL()}} {
		b.Run(tc.name, func(b *testing.B) {
			c := dial(b, tc.url)
			defer c.Close()
			for b.Loop() {
				lat := make([]time.Duration, 0, pings)
				for range pings {
					began := time.Now()
					if err := c.Call(ctx, "server.ping", nil, nil); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, time.Since(began))
				}
				slices.Sort(lat)
				b.ReportMetric(ms(lat[len(lat)/2]), "p50_ms")
				b.ReportMetric(ms(lat[len(lat)*99/100]), "p99_ms")
			}
		})
	}

	const scripts, batch = 1000, 100
	hashes := make([]string, scripts)
	for i := range hashes {
		h := sha256.Sum256(fmt.Appendf(nil, "bench script %d", i))
		hashes[i] = hex.EncodeToString(h[:])
	}
	var hist []struct {
		TxHash string `json:"tx_hash"`
		Height int32  `json:"height"`
	}
	b.Run("get_history/one_by_one", func(b *testing.B) {
		c := dial(b, n.ElectrumURL())
		defer c.Close()
		for b.Loop() {
			began := time.Now()
			for _, sh := range hashes {
				if err := c.Call(ctx, "blockchain.scripthash.get_history", []any{sh}, &hist); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(scripts)/time.Since(began).Seconds(), "scripts/s")
		}
	})
	b.Run(fmt.Sprintf("get_history/batch_%d", batch), func(b *testing.B) {
		c := dial(b, n.ElectrumURL())
		defer c.Close()
		for b.Loop() {
			began := time.Now()
			for i := 0; i < scripts; i += batch {
				calls := make([]*electrum.Call, batch)
				for k := range calls {
					calls[k] = &electrum.Call{Method: "blockchain.scripthash.get_history", Params: []any{hashes[i+k]}}
				}
				if err := c.Batch(ctx, calls); err != nil {
					b.Fatal(err)
				}
				for _, call := range calls {
					if call.Err != nil {
						b.Fatal(call.Err)
					}
				}
			}
			b.ReportMetric(float64(scripts)/time.Since(began).Seconds(), "scripts/s")
		}
	})
}
