package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/nbd-wtf/go-nostr"
	gonip46 "github.com/nbd-wtf/go-nostr/nip46"

	nip46e2e "github.com/custodyagents/cosigner/e2e/nip46"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/store"
)

// The NIP-46 figures (issue 4, "Numbers"): sign_psbt round trip over the local relays against
// ping on cosigner over the same relays (the transport floor) and against go-nostr's own nip46
// client/signer pair doing sign_event over the same relays (an outside reference), p50 and p99;
// and requests per second with 50 concurrent clients. One network and one `cosigner run`
// (built without -race) serve all of them.

const (
	nip46Samples     = 150 // sequential round trips per series
	nip46Clients     = 50  // concurrent clients for the throughput figure
	nip46PerClient   = 10  // requests per client in the throughput run
	nip46ReqTimeout  = time.Minute
	nip46SetupBudget = 6 * time.Minute
)

// nip46Setup starts the network and the daemon (closed when b ends), funds the wallet with two
// 1 BTC coins, and has BDK build (and sign with key B) a 1.5 BTC payment: 2 P2WSH 2-of-3
// inputs, 2 outputs. It returns the scenario and that PSBT (base64).
func nip46Setup(b *testing.B) (*scenario.Env, string) {
	b.Helper()
	if testing.Short() {
		b.Skip("NIP-46 benchmarks need the local test network")
	}
	var (
		nip46Env  *scenario.Env
		nip46PSBT string
		nip46Err  error
	)
	func() {
		ctx, cancel := context.WithTimeout(context.Background(), nip46SetupBudget)
		defer cancel()
		// No per-client rate limit: the figures are about transport and signing, and a sequential
		// series from one client outruns the default 20 requests/s.
		if nip46Env, nip46Err = scenario.Setup(ctx, scenario.Options{Dir: b.TempDir(), MaxPerTx: "3 BTC",
			ExtraEnv: []string{"COSIGNER_CLIENT_RATE=0"}}); nip46Err != nil {
			return
		}
		b.Cleanup(nip46Env.Close)
		if _, nip46Err = nip46Env.FundConfirmed(ctx, btcutil.SatoshiPerBitcoin, btcutil.SatoshiPerBitcoin); nip46Err != nil {
			return
		}
		payee, err := nip46Env.ExternalAddress()
		if err != nil {
			nip46Err = err
			return
		}
		built, err := nip46Env.BuildPayment(ctx, payee, 150_000_000, 5)
		if err != nil {
			nip46Err = err
			return
		}
		nip46PSBT = built.PSBT
	}()
	if nip46Err != nil {
		b.Fatalf("NIP-46 bench setup: %v", nip46Err)
	}
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("cosigner log (tail):\n%s", nip46Env.LogTail(40))
		}
	})
	return nip46Env, nip46PSBT
}

// nip46Client dials a test client (nip46e2e.Client, NIP-44 over relaypool) with key sk on all
// the network's relays and connects it with a fresh single-use secret (default permissions,
// which include sign_psbt).
func nip46Client(ctx context.Context, b *testing.B, env *scenario.Env, sk string) *nip46e2e.Client {
	return nip46ClientOn(ctx, b, env, sk, env.Net.RelayURLs())
}

// nip46ClientOn is nip46Client on the given relays only.
func nip46ClientOn(ctx context.Context, b *testing.B, env *scenario.Env, sk string, relays []string) *nip46e2e.Client {
	b.Helper()
	db, err := store.Open(ctx, filepath.Join(env.Dir, "cosigner-data", "cosigner.db"))
	if err != nil {
		b.Fatal(err)
	}
	s := make([]byte, 16)
	_, _ = rand.Read(s)
	secret := hex.EncodeToString(s)
	err = db.AddConnectSecret(ctx, secret)
	db.Close()
	if err != nil {
		b.Fatal(err)
	}
	c, err := nip46e2e.Dial(ctx, sk, env.KeyA.NostrPubKey, relays, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	if r, err := c.Call(ctx, "connect", env.KeyA.NostrPubKey, secret); err != nil || r.Result != "ack" {
		b.Fatalf("connect: %+v, %v", r, err)
	}
	return c
}

// quantiles reports p50 and p99 of ds in milliseconds.
func reportLatency(b *testing.B, ds []time.Duration) {
	b.Helper()
	slices.Sort(ds)
	q := func(p float64) float64 {
		i := int(p * float64(len(ds)-1))
		return float64(ds[i].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50_ms")
	b.ReportMetric(q(0.99), "p99_ms")
	b.ReportMetric(float64(len(ds)), "samples")
}

// sampleCalls runs n sequential round trips of call and returns their durations.
func sampleCalls(b *testing.B, n int, call func(ctx context.Context) error) []time.Duration {
	b.Helper()
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), nip46ReqTimeout)
		start := time.Now()
		err := call(ctx)
		d := time.Since(start)
		cancel()
		if err != nil {
			b.Fatalf("round trip %d: %v", i, err)
		}
		ds = append(ds, d)
	}
	return ds
}

// BenchmarkNIP46 sets up one network and daemon for all the NIP-46 figures.
func BenchmarkNIP46(b *testing.B) {
	env, psbt := nip46Setup(b)
	b.Run("round_trip", func(b *testing.B) { benchRoundTrip(b, env, psbt) })
	b.Run("throughput", func(b *testing.B) { benchThroughput(b, env) })
}

// benchRoundTrip: client publishes a request → its response is received, over the
// three local relays, sequentially. sign_psbt (a 2-in/2-out P2WSH 2-of-3 PSBT: decode, analyze
// against the wallet, policy, sign) next to ping on the same daemon and relays (the transport
// floor) and go-nostr v0.38.2's own BunkerClient and StaticKeySigner doing sign_event over the
// same relays (the signer run in-process: an outside reference). The *_nostr_rs_relay series
// are the same calls from a client on relay 0 alone, nostr-rs-relay 0.8.12: the request and
// the response cross a relay that sends no OK for kind 24133 and leaves Nagle's algorithm on.
func benchRoundTrip(b *testing.B, env *scenario.Env, nip46PSBT string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// go-nostr's Relay logs every event a relay sends outside the filter; @nostr-relay/core
	// 0.0.40 echoes a client's own requests to it (it matches "#p" against the author too).
	nostr.InfoLogger.SetOutput(io.Discard)

	b.Run("cosigner_ping", func(b *testing.B) {
		c := nip46Client(ctx, b, env, nostr.GeneratePrivateKey())
		for range b.N {
			reportLatency(b, sampleCalls(b, nip46Samples, func(ctx context.Context) error {
				r, err := c.Call(ctx, "ping")
				if err == nil && r.Result != "pong" {
					err = fmt.Errorf("ping answered %+v", r)
				}
				return err
			}))
		}
	})
	b.Run("cosigner_sign_psbt", func(b *testing.B) {
		c := nip46Client(ctx, b, env, env.ClientSK) // the client key the policy authorises
		for range b.N {
			reportLatency(b, sampleCalls(b, nip46Samples, func(ctx context.Context) error {
				r, err := c.Call(ctx, "sign_psbt", nip46PSBT)
				if err == nil && (r.Error != "" || r.Result == "") {
					err = fmt.Errorf("sign_psbt answered %+v", r)
				}
				return err
			}))
		}
	})
	relay0 := env.Net.RelayURLs()[:1]
	if env.Net.RelaySoftware(0) != devnet.RelayNostrRs {
		b.Fatalf("relay 0 runs %q, want nostr-rs-relay", env.Net.RelaySoftware(0))
	}
	b.Run("cosigner_ping_nostr_rs_relay", func(b *testing.B) {
		c := nip46ClientOn(ctx, b, env, nostr.GeneratePrivateKey(), relay0)
		for range b.N {
			reportLatency(b, sampleCalls(b, nip46Samples, func(ctx context.Context) error {
				r, err := c.Call(ctx, "ping")
				if err == nil && r.Result != "pong" {
					err = fmt.Errorf("ping answered %+v", r)
				}
				return err
			}))
		}
	})
	b.Run("cosigner_sign_psbt_nostr_rs_relay", func(b *testing.B) {
		c := nip46ClientOn(ctx, b, env, env.ClientSK, relay0)
		for range b.N {
			reportLatency(b, sampleCalls(b, nip46Samples, func(ctx context.Context) error {
				r, err := c.Call(ctx, "sign_psbt", nip46PSBT)
				if err == nil && (r.Error != "" || r.Result == "") {
					err = fmt.Errorf("sign_psbt answered %+v", r)
				}
				return err
			}))
		}
	})
	b.Run("gonostr_sign_event", func(b *testing.B) {
		for range b.N {
			bunker := goNostrPair(ctx, b, env)
			reportLatency(b, sampleCalls(b, nip46Samples, func(ctx context.Context) error {
				ev := nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Tags: nostr.Tags{}, Content: "bench"}
				if err := bunker.SignEvent(ctx, &ev); err != nil {
					return err
				}
				if ok, err := ev.CheckSignature(); !ok {
					return fmt.Errorf("go-nostr signer returned a bad event: %v", err)
				}
				return nil
			}))
		}
	})
}

// goNostrPair runs go-nostr's nip46.StaticKeySigner in-process on the network's relays (a
// subscription to kind 24133 p-tagged to it; each request handled by HandleRequest and the
// signed response published to every relay at once) and returns a connected go-nostr
// BunkerClient.
func goNostrPair(ctx context.Context, b *testing.B, env *scenario.Env) *gonip46.BunkerClient {
	b.Helper()
	relays := env.Net.RelayURLs()
	signerSK := nostr.GeneratePrivateKey()
	signerPK, _ := nostr.GetPublicKey(signerSK)
	sctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	b.Cleanup(func() { stop(); wg.Wait() })
	signer := gonip46.NewStaticKeySigner(signerSK)
	spool := nostr.NewSimplePool(sctx)
	since := nostr.Now()
	events := spool.SubMany(sctx, relays, nostr.Filters{{Kinds: []int{nostr.KindNostrConnect},
		Tags: nostr.TagMap{"p": []string{signerPK}}, Since: &since}})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ie := range events {
			_, _, resp, err := signer.HandleRequest(ie.Event)
			if err != nil {
				continue
			}
			if err := resp.Sign(signerSK); err != nil {
				continue
			}
			// go-nostr's Relay.Publish waits for the relay's OK under its context, and
			// nostr-rs-relay 0.8.12 (relay 0) sends none for kind 24133: publish to each relay
			// on its own, each bounded, so that the loop goes on to the next request.
			for _, u := range relays {
				if r, err := spool.EnsureRelay(u); err == nil {
					wg.Add(1)
					go func() {
						defer wg.Done()
						pctx, cancel := context.WithTimeout(sctx, 10*time.Second)
						defer cancel()
						_ = r.Publish(pctx, resp)
					}()
				}
			}
		}
	}()
	uri := "bunker://" + signerPK + "?relay=" + relays[0]
	for _, u := range relays[1:] {
		uri += "&relay=" + u
	}
	// The signer's subscription may not be live yet: retry the connect a few times. The
	// client's context lives on after a successful connect (its subscription runs under it).
	var err error
	for try := 0; try < 5; try++ {
		cctx, cancel := context.WithCancel(sctx)
		timer := time.AfterFunc(5*time.Second, cancel)
		bunker, cerr := gonip46.ConnectBunker(cctx, nostr.GeneratePrivateKey(), uri, nostr.NewSimplePool(cctx), nil)
		if timer.Stop() && cerr == nil {
			b.Cleanup(cancel)
			return bunker
		}
		cancel()
		err = cerr
	}
	b.Fatalf("go-nostr BunkerClient could not connect to its own signer: %v", err)
	return nil
}

// benchThroughput: 50 clients, each connected with its own key, send ping requests at once
// (each client one at a time); requests per second answered over the three relays.
func benchThroughput(b *testing.B, env *scenario.Env) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	run := func(b *testing.B, clients []*nip46e2e.Client, method string, params ...string) {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, len(clients))
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range nip46PerClient {
					rctx, rcancel := context.WithTimeout(ctx, nip46ReqTimeout)
					r, err := c.Call(rctx, method, params...)
					rcancel()
					if err == nil && (r.Error != "" || r.Result == "") {
						err = fmt.Errorf("%s answered %+v", method, r)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		n := len(clients) * nip46PerClient
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "req/s")
		b.ReportMetric(float64(len(clients)), "clients")
	}
	b.Run("ping_50_clients", func(b *testing.B) {
		clients := make([]*nip46e2e.Client, nip46Clients)
		for i := range clients {
			clients[i] = nip46Client(ctx, b, env, nostr.GeneratePrivateKey())
		}
		for range b.N {
			run(b, clients, "ping")
		}
	})
}
