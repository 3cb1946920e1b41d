package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/relaypool"
)

// BenchmarkRelayPool measures relaypool.Publish against the three @nostr-relay/core relays of
// the local test network: to one relay (the baseline: one WebSocket round trip to OK), to three
// with the default quorum (two of three OKs) and to three waiting for every OK; and the delivery
// of an event published through the pool to a subscriber on the same relays (publish → event
// out of Subscribe, de-duplicated).
func BenchmarkRelayPool(b *testing.B) {
	if testing.Short() {
		b.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	n, err := devnet.Start(ctx, devnet.Config{Dir: b.TempDir(), InitialBlocks: -1})
	if err != nil {
		b.Fatalf("devnet.Start: %v", err)
	}
	defer n.Close()
	urls := n.RelayURLs()
	sk := nostr.GeneratePrivateKey()
	rcpt, _ := nostr.GetPublicKey(nostr.GeneratePrivateKey())
	seq := 0
	event := func(b *testing.B) nostr.Event { // a distinct event (id) each time
		seq++
		ev := nostr.Event{Kind: 24133, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"p", rcpt}}, Content: fmt.Sprint("bench ", seq)}
		if err := ev.Sign(sk); err != nil {
			b.Fatal(err)
		}
		return ev
	}
	const samples = 300
	relayBenchLogger := func() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
	report := func(b *testing.B, lat []time.Duration) {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50_ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99_ms")
	}

	for _, tc := range []struct {
		name   string
		relays []string
		quorum int
	}{
		{"publish/one_relay", urls[:1], 0},
		{"publish/quorum_2_of_3", urls, 0},
		{"publish/all_3", urls, len(urls)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			pool, err := relaypool.New(tc.relays, relaypool.Options{Quorum: tc.quorum, Logger: relayBenchLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			if res := pool.Publish(ctx, event(b)); func() bool { ok, _ := relaypool.Published(res); return ok < pool.Quorum() }() { // connect first
				b.Fatalf("publish: %+v", res)
			}
			for b.Loop() {
				lat := make([]time.Duration, 0, samples)
				for range samples {
					ev := event(b)
					began := time.Now()
					res := pool.Publish(ctx, ev)
					lat = append(lat, time.Since(began))
					if ok, _ := relaypool.Published(res); ok < pool.Quorum() {
						b.Fatalf("publish: %+v", res)
					}
				}
				report(b, lat)
			}
		})
	}

	b.Run("deliver/publish_to_subscriber_3_relays", func(b *testing.B) {
		pub, err := relaypool.New(urls, relaypool.Options{Logger: relayBenchLogger()})
		if err != nil {
			b.Fatal(err)
		}
		defer pub.Close()
		sub, err := relaypool.New(urls, relaypool.Options{Logger: relayBenchLogger()})
		if err != nil {
			b.Fatal(err)
		}
		defer sub.Close()
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		events := sub.Subscribe(sctx, nostr.Filter{Kinds: []int{24133}, Tags: nostr.TagMap{"p": {rcpt}}})
		await := func(id string) {
			for {
				select {
				case ev := <-events:
					if ev.ID == id {
						return
					}
				case <-time.After(30 * time.Second):
					b.Fatalf("event %s not delivered", id)
				}
			}
		}
		// The subscription is open on the relays once a probe comes through (ephemeral events
		// are not stored: one sent before the REQ is lost, so probe until one arrives).
		for open := false; !open; {
			probe := event(b)
			pub.Publish(ctx, probe)
			t := time.NewTimer(500 * time.Millisecond)
			for waiting := true; waiting; {
				select {
				case ev := <-events:
					open = ev.ID == probe.ID
					waiting = !open
				case <-t.C:
					waiting = false
				}
			}
			t.Stop()
		}
		for b.Loop() {
			lat := make([]time.Duration, 0, samples)
			for range samples {
				ev := event(b)
				published := make(chan struct{})
				began := time.Now()
				go func() { // owned by this loop, which waits for it below
					defer close(published)
					pub.Publish(ctx, ev)
				}()
				await(ev.ID)
				lat = append(lat, time.Since(began))
				<-published
			}
			report(b, lat)
		}
	})
}

// loopbackHop is the one-way time of a message of size bytes between two processes' sockets on
// this machine: half the median round trip of a TCP ping-pong over 127.0.0.1 (TCP_NODELAY, Go's
// default) between two goroutines, rounds times. One relay hop of a NIP-46 message (client →
// relay, relay → remote signer, and back) costs at least this.
func loopbackHop(b *testing.B, size, rounds int) time.Duration {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() { // the echo side, owned by this function (it waits for done)
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		buf := make([]byte, size)
		for range rounds {
			if _, err := io.ReadFull(c, buf); err != nil {
				done <- err
				return
			}
			if _, err := c.Write(buf); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg, buf := make([]byte, size), make([]byte, size)
	rtts := make([]time.Duration, 0, rounds)
	for range rounds {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	slices.Sort(rtts)
	return rtts[len(rtts)/2] / 2
}
