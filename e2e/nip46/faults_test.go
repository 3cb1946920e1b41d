package nip46e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/store"
)

// connectClients dials n clients on the network's relays and connects each with a fresh
// bunker secret granting perms; client 0 uses the key the policy authorises (env.ClientSK).
func connectClients(ctx context.Context, t *testing.T, env *scenario.Env, n int, perms string) []*Client {
	t.Helper()
	cs := make([]*Client, n)
	for i := range cs {
		sk := nostr.GeneratePrivateKey()
		if i == 0 {
			sk = env.ClientSK
		}
		c, err := Dial(ctx, sk, env.KeyA.NostrPubKey, env.Net.RelayURLs(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		secret := secretOf(t, bunkerURI(ctx, t, env, perms))
		r, err := c.Call(ctx, "connect", env.KeyA.NostrPubKey, secret)
		if err != nil || r.Error != "" || r.Result != "ack" {
			t.Fatalf("client %d connect: %+v, %v", i, r, err)
		}
		cs[i] = c
	}
	return cs
}

func secretOf(t *testing.T, bunker string) string {
	t.Helper()
	_, q, ok := strings.Cut(bunker, "secret=")
	if !ok {
		t.Fatalf("no secret in %s", bunker)
	}
	q, _, _ = strings.Cut(q, "&")
	return q
}

// auditCounts returns, for client's sign_psbt requests, how many audit entries each request id
// has, and how many sign_requests rows.
func auditCounts(ctx context.Context, t *testing.T, env *scenario.Env, client string) (audit, rows map[string]int) {
	t.Helper()
	db, err := store.Open(ctx, dbPath(env))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string) map[string]int {
		m := map[string]int{}
		rs, err := db.SQL.QueryContext(ctx, q, client)
		if err != nil {
			t.Fatal(err)
		}
		defer rs.Close()
		for rs.Next() {
			var id string
			var n int
			if err := rs.Scan(&id, &n); err != nil {
				t.Fatal(err)
			}
			m[id] = n
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		return m
	}
	audit = count(`SELECT request_id, count(*) FROM audit_log WHERE client_pubkey = ? AND method = 'sign_psbt' GROUP BY request_id`)
	rows = count(`SELECT request_id, count(*) FROM sign_requests WHERE client_pubkey = ? AND method = 'sign_psbt' GROUP BY request_id`)
	return audit, rows
}

// TestFaultsRelaysKilledUnderLoad sends a stream of 500 NIP-46 requests (ping from five
// clients, sign_psbt of a real 2-in/2-out P2WSH 2-of-3 PSBT from the authorised one) while two
// of the three relays are stopped and later started again, one after the other. Every request
// must be answered, by exactly one response event, and every sign_psbt must have exactly one
// decision in the cosigner's store (sign_requests row and audit entry).
func TestFaultsRelaysKilledUnderLoad(t *testing.T) {
	env := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const (
		total     = 500
		nClients  = 5
		inFlight  = 4 // per client
		psbtEvery = 2 // every other request of client 0 is sign_psbt
	)
	built := buildPSBT(ctx, t, env, 150_000_000) // spends both 1 BTC coins: 2 inputs, payee + change
	if in := decodePSBT(t, built.PSBT); len(in.Inputs) != 2 || len(in.UnsignedTx.TxOut) != 2 {
		t.Fatalf("PSBT has %d inputs and %d outputs, want 2 and 2", len(in.Inputs), len(in.UnsignedTx.TxOut))
	}
	clients := connectClients(ctx, t, env, nClients, "")

	type outcome struct {
		client int
		id     string
		method string
		resp   Response
		err    error
	}
	var (
		answered atomic.Int64
		mu       sync.Mutex
		outcomes []outcome
	)
	// The relay schedule, driven by how many requests have been answered (not by time).
	type step struct {
		at    int64
		relay int
		stop  bool
	}
	schedule := []step{{80, 0, true}, {160, 1, true}, {300, 0, false}, {380, 1, false}}
	relayErr := make(chan error, 1)
	progress := make(chan struct{}, total)
	var ctl sync.WaitGroup
	ctl.Add(1)
	go func() {
		defer ctl.Done()
		next := 0
		for next < len(schedule) {
			select {
			case <-progress:
			case <-ctx.Done():
				relayErr <- ctx.Err()
				return
			}
			for next < len(schedule) && answered.Load() >= schedule[next].at {
				s := schedule[next]
				var err error
				if s.stop {
					err = env.Net.StopRelay(s.relay)
				} else {
					err = env.Net.StartRelay(s.relay)
				}
				if err != nil {
					relayErr <- fmt.Errorf("relay %d (stop=%v): %w", s.relay, s.stop, err)
					return
				}
				t.Logf("after %d answers: relay %d stopped=%v", answered.Load(), s.relay, s.stop)
				next++
			}
		}
		relayErr <- nil
	}()

	var wg sync.WaitGroup
	record := func(o outcome) {
		answered.Add(1)
		progress <- struct{}{}
		mu.Lock()
		outcomes = append(outcomes, o)
		mu.Unlock()
	}
	for ci, c := range clients {
		wg.Add(1)
		go func() { // one sender per client, at most inFlight requests outstanding
			defer wg.Done()
			var inner sync.WaitGroup
			defer inner.Wait()
			sem := make(chan struct{}, inFlight)
			for k := 0; k < total/nClients; k++ {
				method, params := "ping", []string(nil)
				if ci == 0 && k%psbtEvery == 0 {
					method, params = "sign_psbt", []string{built.PSBT}
				}
				ev, id, err := c.Request(method, params...)
				if err != nil {
					record(outcome{ci, id, method, Response{}, err})
					continue
				}
				sem <- struct{}{}
				inner.Add(1)
				go func() {
					defer inner.Done()
					defer func() { <-sem }()
					rctx, rcancel := context.WithTimeout(ctx, 2*time.Minute)
					defer rcancel()
					r, err := c.Send(rctx, ev, id)
					record(outcome{ci, id, method, r, err})
				}()
			}
		}()
	}
	wg.Wait()
	ctl.Wait()
	if err := <-relayErr; err != nil {
		t.Fatal(err)
	}
	// Whatever happened, leave every relay running for the next tests.
	for i := range env.Net.RelayURLs() {
		if err := env.Net.StartRelay(i); err != nil {
			t.Fatal(err)
		}
	}

	if len(outcomes) != total {
		t.Fatalf("%d outcomes for %d requests", len(outcomes), total)
	}
	var failed []string
	signedPSBTs := map[string]bool{}
	for _, o := range outcomes {
		switch {
		case o.err != nil:
			failed = append(failed, fmt.Sprintf("client %d %s %s: %v", o.client, o.method, o.id, o.err))
		case o.resp.Error != "":
			failed = append(failed, fmt.Sprintf("client %d %s %s: answered %s", o.client, o.method, o.id, o.resp.Error))
		case o.method == "ping" && o.resp.Result != "pong":
			failed = append(failed, fmt.Sprintf("client %d ping %s: answered %q", o.client, o.id, o.resp.Result))
		case o.method == "sign_psbt":
			signedPSBTs[o.resp.Result] = true
		}
	}
	if len(failed) > 0 {
		t.Fatalf("%d of %d requests not answered properly, e.g.:\n%s", len(failed), total, strings.Join(failed[:min(len(failed), 10)], "\n"))
	}
	for res := range signedPSBTs {
		checkCosigned(t, built.PSBT, res)
	}

	// A last ping per client over the restarted relays: the service is whole again, and any
	// duplicate response still in flight has had the same path to arrive.
	for i, c := range clients {
		if r, err := c.Call(ctx, "ping"); err != nil || r.Result != "pong" {
			t.Fatalf("client %d ping after the relays came back: %+v, %v", i, r, err)
		}
	}
	for _, o := range outcomes {
		if rs := clients[o.client].Responses(o.id); len(rs) != 1 {
			t.Errorf("request %s (%s) got %d distinct response events, want 1", o.id, o.method, len(rs))
		}
	}
	audit, rows := auditCounts(ctx, t, env, clients[0].PK)
	nPSBT := 0
	for _, o := range outcomes {
		if o.method != "sign_psbt" {
			continue
		}
		nPSBT++
		if audit[o.id] != 1 || rows[o.id] != 1 {
			t.Errorf("sign_psbt %s: %d audit entries and %d sign_requests rows, want 1 and 1", o.id, audit[o.id], rows[o.id])
		}
	}
	t.Logf("%d requests (%d sign_psbt) answered once each across two relay outages", total, nPSBT)
	if !env.DaemonRunning() {
		t.Fatal("cosigner run exited")
	}
	// Client 0 is the policy's listed client (env.ClientSK), which the later tests of this shared
	// daemon use again; its ~100 requests here can leave its token bucket (COSIGNER_CLIENT_RATE=2,
	// BURST=100, main_test.go) nearly empty when this test runs fast. Let it refill enough for
	// them (60 tokens) rather than have them refused with rate_limited.
	time.Sleep(30 * time.Second)
}
