package bench

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/internal/scenario"
)

// BenchmarkNIP46PingProfile is a tool, not a figure: it runs the daemon with its profiling
// listener (COSIGNER_PPROF_ADDR) over one nostr-rs-relay, sends sequential pings from one
// client, and writes a 20-second CPU profile of the daemon taken during them to the file named
// by BENCH_PPROF_OUT (skipped when it is unset). Read it with `go tool pprof -top FILE`.
func BenchmarkNIP46PingProfile(b *testing.B) {
	out := os.Getenv("BENCH_PPROF_OUT")
	if out == "" || testing.Short() {
		b.Skip("set BENCH_PPROF_OUT to a file to profile the daemon during pings")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env, err := scenario.Setup(ctx, scenario.Options{Dir: b.TempDir(), MaxPerTx: "3 BTC", RelayPorts: []int{0},
		ExtraEnv: []string{"COSIGNER_CLIENT_RATE=0", "COSIGNER_LOG_LEVEL=info", "COSIGNER_PPROF_ADDR=" + addr}})
	if err != nil {
		b.Fatalf("scenario: %v", err)
	}
	defer env.Close()
	if env.Net.RelaySoftware(0) != devnet.RelayNostrRs {
		b.Fatalf("relay 0 runs %q, want nostr-rs-relay", env.Net.RelaySoftware(0))
	}
	nostr.InfoLogger.SetOutput(io.Discard)
	pid, err := cosignerPID(env.DataDir)
	if err != nil {
		b.Fatal(err)
	}
	one := nip46ClientOn(ctx, b, env, nostr.GeneratePrivateKey(), env.Net.RelayURLs()[:1])
	ping := func(ctx context.Context) error {
		r, err := one.Call(ctx, "ping")
		if err == nil && r.Result != "pong" {
			err = fmt.Errorf("ping answered %+v", r)
		}
		return err
	}
	sampleCalls(b, 20, ping)

	const seconds = 20
	prof := make(chan error, 1)
	go func() {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds))
		if err != nil {
			prof <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			prof <- fmt.Errorf("profile: %s", resp.Status)
			return
		}
		f, err := os.Create(out)
		if err != nil {
			prof <- err
			return
		}
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		prof <- err
	}()
	m := newCPUMeter()
	m.add("cosigner", pid)
	if err := m.begin(); err != nil {
		b.Fatal(err)
	}
	n := 0
	for start := time.Now(); time.Since(start) < (seconds+1)*time.Second; n++ {
		if err := ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
	use, err := m.end()
	if err != nil {
		b.Fatal(err)
	}
	if err := <-prof; err != nil {
		b.Fatal(err)
	}
	perPing := float64(use.of("cosigner").Microseconds()) / 1000 / float64(n)
	b.Logf("%d sequential pings in %s (%.0f req/s); cosigner CPU %.2f ms per ping (idle not subtracted); profile in %s",
		n, use.wall.Round(time.Millisecond), float64(n)/use.wall.Seconds(), perPing, out)
	b.ReportMetric(perPing, "cosigner-ms/ping")
}
