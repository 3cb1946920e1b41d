package nip46e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/store"
)

// stateSnapshot is the part of the cosigner's store that NIP-46 requests can change.
// Sessions, perms, spent secrets, signed requests and granting audit entries are state; the
// records of refused requests (sign_requests rows in state denied, audit entries "rejected" or
// "denied") are bookkeeping that a refusal is expected to add.
type stateSnapshot struct {
	Sessions     int    // rows of client_sessions
	SessionPerms string // every session's pubkey and perms, in order
	UsedSecrets  int    // connect secrets spent
	Signed       int    // sign_requests in state signed
	Grants       int    // audit entries that granted something: signed, connected, logout
	// Bookkeeping of refusals.
	Requests int // all sign_requests rows
	Audit    int // all audit entries
}

// state is s without the bookkeeping of refusals.
func (s stateSnapshot) state() stateSnapshot {
	s.Requests, s.Audit = 0, 0
	return s
}

func snapshot(ctx context.Context, t *testing.T, env *scenario.Env) stateSnapshot {
	t.Helper()
	db, err := store.Open(ctx, dbPath(env))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var s stateSnapshot
	q := func(dst any, query string) {
		if err := db.SQL.QueryRowContext(ctx, query).Scan(dst); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
	}
	q(&s.Sessions, `SELECT count(*) FROM client_sessions`)
	q(&s.SessionPerms, `SELECT coalesce(group_concat(client_pubkey || '=' || perms, ';'), '') FROM (SELECT client_pubkey, perms FROM client_sessions ORDER BY client_pubkey)`)
	q(&s.UsedSecrets, `SELECT count(*) FROM connect_secrets WHERE used_by IS NOT NULL`)
	q(&s.Signed, `SELECT count(*) FROM sign_requests WHERE state = 'signed'`)
	q(&s.Grants, `SELECT count(*) FROM audit_log WHERE decision IN ('signed', 'connected', 'logout')`)
	q(&s.Requests, `SELECT count(*) FROM sign_requests`)
	q(&s.Audit, `SELECT count(*) FROM audit_log`)
	return s
}

// barrier sends a ping from c and waits for its answer: requests published before it on the
// same relays have been through the cosigner's queue by then (relays keep order per
// connection), so a drop can be told from "not yet".
func barrier(ctx context.Context, t *testing.T, c *Client) {
	t.Helper()
	r, err := c.Call(ctx, "ping")
	if err != nil || r.Result != "pong" {
		t.Fatalf("barrier ping: %+v, %v", r, err)
	}
}

// TestHostileRelay has a misbehaving relay, which the cosigner uses besides the three good
// ones, send garbage frames, oversized events, forged events (a logout in the name of a
// connected client with a bad signature, with a wrong id, signed by somebody else) and a
// replay of an answered request, while a client sends pings over the good relays. Every ping
// is answered, the forged logout changes nothing, the replay is not answered again, and the
// daemon stays up.
func TestHostileRelay(t *testing.T) {
	env := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := hostile.WaitSubscribed(ctx); err != nil {
		t.Fatal(err)
	}
	c := connectClients(ctx, t, env, 1, "")[0]

	// A request the cosigner has answered, to replay.
	replayed, replayedID, err := c.Request("ping")
	if err != nil {
		t.Fatal(err)
	}
	if r, err := c.Send(ctx, replayed, replayedID); err != nil || r.Result != "pong" {
		t.Fatalf("ping: %+v, %v", r, err)
	}
	before := snapshot(ctx, t, env)

	logout, _, err := c.Request("logout")
	if err != nil {
		t.Fatal(err)
	}
	attacker := nostr.GeneratePrivateKey()
	badSig := logout
	other := logout
	_ = other.Sign(attacker) // a valid signature by the attacker's key...
	badSig.Sig = other.Sig   // ...on the client's event: does not verify for the client's pubkey
	badID := logout
	badID.Content = strings.Replace(badID.Content, badID.Content[10:14], "AAAA", 1) // id no longer matches
	impostor := logout
	impostor.PubKey = c.PK
	impostor.ID = impostor.GetID()
	impostor.Sig = other.Sig
	stranger := func(kind, size int) *nostr.Event {
		ev := nostr.Event{Kind: kind, CreatedAt: nostr.Now(), Tags: nostr.Tags{{"p", env.KeyA.NostrPubKey}}, Content: strings.Repeat("A", size)}
		_ = ev.Sign(nostr.GeneratePrivateKey())
		return &ev
	}
	items := []blastItem{
		{Raw: []byte("this is not JSON")},
		{Raw: []byte(`["EVENT"]`)},
		{Raw: []byte(`["EVENT","nosuchsub",{"id":"zz"}]`)},
		{Raw: []byte(`{"kind":24133}`)},
		{Raw: []byte{0xff, 0x00, 0xfe, 0x01}, Binary: true},
		{Raw: []byte(`["OK","` + strings.Repeat("0", 64) + `",true,""]`)},
		{Raw: []byte(`["NOTICE","` + strings.Repeat("x", 100_000) + `"]`)},
		{Raw: []byte(`["AUTH","challenge-from-a-hostile-relay"]`)},
		{Event: &badSig},
		{Event: &badID},
		{Event: &impostor},
		{Event: &replayed},
		{Event: stranger(1, 10)},          // wrong kind for the subscription
		{Event: stranger(24133, 100_000)}, // over the signer's 96 KiB content limit
		{Event: stranger(24133, 50)},      // not NIP-44 at all
		{Event: stranger(24133, 600_000)}, // over relaypool's 512 KiB message limit: connection dropped
	}

	// Pings over the good relays while the hostile relay blasts, several times over.
	const pings = 40 // within the rate limit's burst (main_test.go)
	var wg sync.WaitGroup
	errs := make(chan error, pings)
	for i := 0; i < pings; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.Call(ctx, "ping")
			if err == nil && r.Result != "pong" {
				err = fmt.Errorf("answered %+v", r)
			}
			errs <- err
		}()
	}
	sent := 0
	for round := 0; round < 3; round++ {
		if err := hostile.WaitSubscribed(ctx); err != nil { // re-subscribed after the drop
			t.Fatal(err)
		}
		sent += hostile.Blast(ctx, items)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("ping during the blast: %v", err)
		}
	}
	if sent == 0 {
		t.Fatal("the hostile relay sent nothing")
	}
	barrier(ctx, t, c) // still connected: none of the forged logouts took effect
	if n := len(c.Responses(replayedID)); n != 1 {
		t.Fatalf("the replayed request was answered %d times, want once", n)
	}
	if after := snapshot(ctx, t, env); after != before {
		t.Fatalf("the hostile relay changed the store:\nbefore %+v\nafter  %+v", before, after)
	}
	if !env.DaemonRunning() {
		t.Fatal("cosigner run exited")
	}
	if ok, err := env.Healthy(ctx); !ok {
		t.Fatalf("/healthz not OK after the blast: %v", err)
	}
	t.Logf("hostile relay wrote %d frames; %d pings answered over the good relays", sent, pings)
}

// TestHostileClients sends what a hostile or broken client would, each over the real relays:
// an unauthorized pubkey, a reused connect secret, a replay of an answered event, a wrong p tag,
// an oversized payload, a stale or future created_at, and more requests than the rate limit.
// Each is refused with a clear error where NIP-46 lets the cosigner answer, or dropped where it
// does not (no way to know who is asking, or answering would serve the attack), and the store
// does not change.
func TestHostileClients(t *testing.T) {
	env := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	built := buildPSBT(ctx, t, env, 10_000_000)
	good := connectClients(ctx, t, env, 1, "")[0]

	// dropped publishes ev (built by c) and shows that no response came for id: after a barrier
	// ping from c, whose request travelled the same relays behind it, there is still none.
	dropped := func(t *testing.T, c *Client, ev nostr.Event, id string) {
		t.Helper()
		if n, err := c.Publish(ctx, ev); n == 0 {
			t.Fatalf("no relay took the event: %v", err)
		}
		barrier(ctx, t, c)
		if rs := c.Responses(id); len(rs) != 0 {
			t.Fatalf("the cosigner answered %+v; it should have dropped the event", rs)
		}
	}
	unchanged := func(t *testing.T, before stateSnapshot) {
		t.Helper()
		if after := snapshot(ctx, t, env); after.state() != before.state() {
			t.Fatalf("the store changed:\nbefore %+v\nafter  %+v", before, after)
		}
	}

	t.Run("unauthorized pubkey", func(t *testing.T) {
		stranger, err := Dial(ctx, nostr.GeneratePrivateKey(), env.KeyA.NostrPubKey, env.Net.RelayURLs(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer stranger.Close()
		// A pubkey without a session is not answered and nothing of it is written (not even a
		// refusal in the audit log), unless it connects with a usable secret.
		before := snapshot(ctx, t, env)
		var ids []string
		for _, m := range [][]string{{"sign_psbt", built.PSBT}, {"sign_event", `{"kind":1,"content":"x","tags":[],"created_at":1}`},
			{"nip44_decrypt", good.PK, "x"}, {"logout"}, {"connect", env.KeyA.NostrPubKey, "not-a-secret"}, {"connect", env.KeyA.NostrPubKey}} {
			ev, id, err := stranger.Request(m[0], m[1:]...)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := stranger.Publish(ctx, ev); n == 0 {
				t.Fatalf("no relay took the event: %v", err)
			}
			ids = append(ids, id)
		}
		barrier(ctx, t, good)
		for i, id := range ids {
			if rs := stranger.Responses(id); len(rs) != 0 {
				t.Fatalf("request %d from an unknown pubkey answered %+v", i, rs)
			}
		}
		if after := snapshot(ctx, t, env); after != before {
			t.Fatalf("the store changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})

	t.Run("connected client without the permission", func(t *testing.T) {
		before := snapshot(ctx, t, env)
		r, err := good.Call(ctx, "sign_event", `{"kind":1,"content":"x","tags":[],"created_at":1}`)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r.Error, "unauthorized: ") || !strings.Contains(r.Error, "sign_event") {
			t.Fatalf("sign_event without the permission answered %+v", r)
		}
		unchanged(t, before)
		if dec, err := env.LastDecision(ctx, "sign_event"); err != nil || dec.Decision != "rejected" || dec.Client != good.PK {
			t.Fatalf("the refusal is not in the audit log: %+v, %v", dec, err)
		}
	})

	t.Run("reused secret", func(t *testing.T) {
		bunker := bunkerURI(ctx, t, env, "")
		secret := secretOf(t, bunker)
		first, err := Dial(ctx, nostr.GeneratePrivateKey(), env.KeyA.NostrPubKey, env.Net.RelayURLs(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		if r, err := first.Call(ctx, "connect", env.KeyA.NostrPubKey, secret); err != nil || r.Result != "ack" {
			t.Fatalf("first connect: %+v, %v", r, err)
		}
		thief, err := Dial(ctx, nostr.GeneratePrivateKey(), env.KeyA.NostrPubKey, env.Net.RelayURLs(), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer thief.Close()
		before := snapshot(ctx, t, env)
		// The thief has no session: its connect with the spent secret, and its ping, get no
		// answer and write nothing.
		for _, m := range [][]string{{"connect", env.KeyA.NostrPubKey, secret}, {"ping"}} {
			ev, id, err := thief.Request(m[0], m[1:]...)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := thief.Publish(ctx, ev); n == 0 {
				t.Fatalf("no relay took the event: %v", err)
			}
			barrier(ctx, t, first)
			if rs := thief.Responses(id); len(rs) != 0 {
				t.Fatalf("%s with a spent secret answered %+v", m[0], rs)
			}
		}
		if after := snapshot(ctx, t, env); after != before {
			t.Fatalf("the store changed:\nbefore %+v\nafter  %+v", before, after)
		}
	})

	t.Run("replay of an answered event", func(t *testing.T) {
		ev, id, err := good.Request("sign_psbt", built.PSBT)
		if err != nil {
			t.Fatal(err)
		}
		r, err := good.Send(ctx, ev, id)
		if err != nil || r.Error != "" {
			t.Fatalf("sign_psbt: %+v, %v", r, err)
		}
		before := snapshot(ctx, t, env)
		for i := 0; i < 3; i++ {
			if n, err := good.Publish(ctx, ev); n == 0 {
				t.Fatalf("no relay took the replay: %v", err)
			}
		}
		barrier(ctx, t, good)
		if rs := good.Responses(id); len(rs) != 1 {
			t.Fatalf("the replayed request got %d response events, want the first one only", len(rs))
		}
		unchanged(t, before)
	})

	t.Run("wrong p tag", func(t *testing.T) {
		before := snapshot(ctx, t, env)
		_, id, _ := good.Request("ping")
		body := fmt.Sprintf(`{"id":%q,"method":"ping","params":[]}`, id)
		for _, tags := range []nostr.Tags{
			{{"p", nostr.GeneratePrivateKey()}}, // addressed to somebody else (encrypted to us)
			{},                                  // addressed to nobody
		} {
			ev, err := good.Seal(body, tags, nostr.Now())
			if err != nil {
				t.Fatal(err)
			}
			dropped(t, good, ev, id)
		}
		unchanged(t, before)
	})

	t.Run("oversized payload", func(t *testing.T) {
		before := snapshot(ctx, t, env)
		// The largest request NIP-44 can carry (65,535 bytes of plaintext), holding no PSBT:
		// answered with a clear error.
		ev, id, err := good.Request("sign_psbt", strings.Repeat("A", 65_000))
		if err != nil {
			t.Fatal(err)
		}
		r, err := good.Send(ctx, ev, id)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(r.Error, "invalid_psbt: ") {
			t.Fatalf("a 65 kB non-PSBT answered %+v", r)
		}
		// Content over the signer's 96 KiB limit (and too long for NIP-44): dropped.
		big := nostr.Event{PubKey: good.PK, CreatedAt: nostr.Now(), Kind: KindNostrConnect,
			Tags: nostr.Tags{{"p", env.KeyA.NostrPubKey}}, Content: strings.Repeat("A", 120_000)}
		if err := big.Sign(good.SK); err != nil {
			t.Fatal(err)
		}
		if n, _ := good.Publish(ctx, big); n == 0 {
			t.Log("the relays refused the 120 kB event themselves")
		}
		barrier(ctx, t, good)
		unchanged(t, before)
	})

	t.Run("stale or future created_at", func(t *testing.T) {
		before := snapshot(ctx, t, env)
		for _, skew := range []time.Duration{-11 * time.Minute, -2 * time.Hour, 11 * time.Minute} {
			_, id, _ := good.Request("ping")
			ev, err := good.Seal(fmt.Sprintf(`{"id":%q,"method":"ping","params":[]}`, id),
				nostr.Tags{{"p", env.KeyA.NostrPubKey}}, nostr.Timestamp(time.Now().Add(skew).Unix()))
			if err != nil {
				t.Fatal(err)
			}
			dropped(t, good, ev, id)
		}
		unchanged(t, before)
	})

	t.Run("over the rate limit", func(t *testing.T) {
		// The daemon runs with COSIGNER_CLIENT_RATE=2 and COSIGNER_CLIENT_BURST=100
		// (main_test.go). A fresh client (its own token bucket) sends 240 requests at once: past
		// the burst as long as the cosigner handles more than 3.4 requests per second, and
		// within the relay pool's 256-event subscription buffer.
		c := connectClients(ctx, t, env, 2, "")[1]
		before := snapshot(ctx, t, env)
		// The requests reach the cosigner through the fixture relay, which pushes them all at
		// once (the local node relays carry only a few dozen events per second on a busy
		// machine, too close to the refill for a test); the answers come back over every relay.
		const n = 240
		type pending struct {
			id string
			ch <-chan Response
		}
		reqs := make([]pending, n)
		items := make([]blastItem, n)
		for i := range reqs {
			ev, id, err := c.Request("ping")
			if err != nil {
				t.Fatal(err)
			}
			reqs[i] = pending{id, c.Watch(id)}
			items[i] = blastItem{Event: &ev}
		}
		if err := hostile.WaitSubscribed(ctx); err != nil {
			t.Fatal(err)
		}
		if sent := hostile.Blast(ctx, items); sent < n {
			t.Fatalf("the fixture relay delivered %d of %d requests", sent, n)
		}
		// Requests within the bucket are answered; over it, one rate_limited answer per second
		// goes out and the rest are dropped unanswered (each answer is a signed event on every
		// relay). Wait (on a barrier from another client, then on the answers themselves) until
		// both kinds arrived.
		barrier(ctx, t, good)
		var limited, pong int
		for {
			limited, pong = 0, 0
			for _, r := range reqs {
				rs := c.Responses(r.id)
				if len(rs) > 1 {
					t.Fatalf("request %s answered %d times", r.id, len(rs))
				}
				for _, a := range rs {
					switch {
					case a.Result == "pong":
						pong++
					case strings.HasPrefix(a.Error, "rate_limited: "):
						limited++
					default:
						t.Fatalf("unexpected answer %+v", a)
					}
				}
			}
			if limited > 0 && pong > 0 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%d pings: %d pong, %d rate_limited; want some of each", n, pong, limited)
			case <-time.After(100 * time.Millisecond):
			}
		}
		unchanged(t, before)
		// The client is served again once its bucket refills (2/s): a ping within the same
		// second as the last rate_limited answer is dropped, so ask until one is answered.
		for {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			r, err := c.Call(cctx, "ping")
			ccancel()
			if err == nil && (r.Result == "pong" || strings.HasPrefix(r.Error, "rate_limited: ")) {
				break
			}
			if err == nil || ctx.Err() != nil {
				t.Fatalf("ping after the burst: %+v, %v", r, err)
			}
		}
		t.Logf("%d pings at once: %d answered, %d refused with rate_limited, %d dropped unanswered", n, pong, limited, n-pong-limited)
	})
}
