package signer

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip04"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
	"github.com/custodyagents/cosigner/relaypool"
)

// fakeClock is a settable clock for WithClock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// asClient returns a harness sharing h's remote signer, pool and database with a new client key.
func (h *harness) asClient() *harness {
	h2 := *h
	h2.clientSK = nostr.GeneratePrivateKey()
	h2.clientPK, _ = nostr.GetPublicKey(h2.clientSK)
	return &h2
}

func (h *harness) nostrConnect(relays ...string) {
	h.t.Helper()
	nc := session.NostrConnect{Client: h.clientPK, Relays: relays, Secret: "secret-" + h.clientPK[:8], Perms: "sign_psbt"}
	if err := h.db.AddNostrConnect(context.Background(), nc); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) connectState() (string, string) {
	h.t.Helper()
	st, msg, err := h.db.NostrConnectState(context.Background(), h.clientPK)
	if err != nil {
		h.t.Fatal(err)
	}
	return st, msg
}

// The nostrconnect connect response is re-sent with the same id and growing gaps until the app's
// first request arrives; then it stops and the row says confirmed.
func TestNostrConnectResentUntilFirstRequest(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	h := newHarness(t, WithClock(clock.now))
	ctx := context.Background()
	h.nostrConnect("wss://app.example")
	var ids []string
	sends := func() int {
		h.rs.processNostrConnects(ctx)
		rs := h.decrypt(h.pool.take())
		for _, r := range rs {
			if r.Result != "secret-"+h.clientPK[:8] || r.Error != "" {
				t.Fatalf("connect response %+v", r)
			}
			ids = append(ids, r.ID)
		}
		return len(rs)
	}
	steps := []struct {
		advance time.Duration
		want    int
	}{
		{0, 1},                     // first send
		{0, 0},                     // not yet due
		{NostrConnectResendMin, 1}, // after 1 s
		{NostrConnectResendMin, 0}, // the gap has doubled
		{NostrConnectResendMin, 1}, // 2 s after the second
		{NostrConnectResendMin, 0}, //
		{3 * time.Second, 1},       // 4 s after the third
		{NostrConnectResendMax, 1}, // capped gaps from here on
		{NostrConnectResendMax, 1}, //
		{NostrConnectResendMin, 0}, //
	}
	for i, s := range steps {
		clock.add(s.advance)
		if got := sends(); got != s.want {
			t.Fatalf("step %d: %d sends, want %d", i, got, s.want)
		}
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("re-sent with another id: %v", ids)
		}
	}
	if st, _ := h.connectState(); st != session.ConnectSent {
		t.Fatalf("state %q while re-sending", st)
	}
	if r := h.one(h.request("1", "ping")); r.Result != "pong" {
		t.Fatalf("ping: %+v", r)
	}
	if st, _ := h.connectState(); st != session.ConnectConfirmed {
		t.Fatalf("state %q after the app's first request", st)
	}
	clock.add(NostrConnectResendMax)
	if n := sends(); n != 0 {
		t.Fatalf("%d sends after confirmation", n)
	}
}

// Without any request from the app the re-sending stops NostrConnectResendFor after the first
// send, and the row says unconfirmed (the session stays).
func TestNostrConnectUnconfirmedAfterDeadline(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	h := newHarness(t, WithClock(clock.now))
	ctx := context.Background()
	h.nostrConnect("wss://app.example")
	n := 0
	for range int(NostrConnectResendFor/NostrConnectResendMin) + 5 {
		h.rs.processNostrConnects(ctx)
		n += len(h.pool.take())
		clock.add(NostrConnectResendMin)
	}
	st, msg := h.connectState()
	if st != session.ConnectUnconfirmed || !strings.Contains(msg, "no request") {
		t.Fatalf("state %q %q", st, msg)
	}
	if n < 5 || n > int(NostrConnectResendFor/NostrConnectResendMin) {
		t.Fatalf("%d sends in %s", n, NostrConnectResendFor)
	}
	var secret string
	h.db.SQL.QueryRow(`SELECT secret FROM nostrconnect_pending WHERE client_pubkey = ?`, h.clientPK).Scan(&secret)
	if secret != "" {
		t.Fatal("secret kept after giving up")
	}
	if h.perms() != "sign_psbt" {
		t.Fatal("session lost")
	}
	if r := h.one(h.request("1", "ping")); r.Result != "pong" {
		t.Fatalf("late ping: %+v", r)
	}
	if st, _ := h.connectState(); st != session.ConnectUnconfirmed {
		t.Fatalf("state changed to %q after the deadline", st)
	}
}

// trackedPool is a ClosablePool on one client relay that records what was published and whether
// it was closed; its subscription channel closes when it is closed (as relaypool.Pool's does).
type trackedPool struct {
	*memPool
	url    string
	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

func (p *trackedPool) Subscribe(ctx context.Context, f nostr.Filter) <-chan relaypool.Event {
	ch := make(chan relaypool.Event)
	go func() {
		select {
		case <-ctx.Done():
		case <-p.done:
		}
		close(ch)
	}()
	return ch
}
func (p *trackedPool) URLs() []string { return []string{p.url} }
func (p *trackedPool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.closed {
		p.closed = true
		close(p.done)
	}
}
func (p *trackedPool) isClosed() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.closed }

// Pools opened on clients' own relays are closed when no client needs them any more: after
// logout, after switch_relays, when idle, and when the session was revoked from the CLI.
func TestClientRelayPoolsClosed(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	var mu sync.Mutex
	pools := map[string]*trackedPool{}
	dial := func(urls []string) (ClosablePool, error) {
		mu.Lock()
		defer mu.Unlock()
		p := &trackedPool{memPool: &memPool{}, url: urls[0], done: make(chan struct{})}
		pools[urls[0]] = p
		return p, nil
	}
	h := newHarness(t, WithClock(clock.now), WithClientRelays(dial), WithClientRelayIdle(time.Hour))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { h.rs.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for { // Run has started when a queued nostrconnect gets its pool
		h.rs.clientMu.Lock()
		started := h.rs.runCtx != nil
		h.rs.clientMu.Unlock()
		if started {
			break
		}
		time.Sleep(time.Millisecond)
	}
	a, b, c, d := h.asClient(), h.asClient(), h.asClient(), h.asClient()
	a.nostrConnect("wss://a", "wss://shared")
	b.nostrConnect("wss://shared", "wss://b")
	c.nostrConnect("wss://c")
	d.nostrConnect("wss://d")
	h.rs.processNostrConnects(ctx)
	h.pool.take()
	if got := h.rs.ClientRelayPools(); !slices.Equal(got, []string{"wss://a", "wss://b", "wss://c", "wss://d", "wss://shared"}) {
		t.Fatalf("open pools %v", got)
	}
	tp := func(u string) *trackedPool { mu.Lock(); defer mu.Unlock(); return pools[u] }
	for _, u := range []string{"wss://a", "wss://b", "wss://c", "wss://d", "wss://shared"} {
		tp(u).take()
	}

	// logout: a's own relay closes, the shared one stays for b; the ack still reached a's relays.
	if r := a.one(a.request("1", "logout")); r.Result != "ack" {
		t.Fatalf("logout: %+v", r)
	}
	if len(tp("wss://a").take()) != 1 || len(tp("wss://shared").take()) != 1 {
		t.Fatal("logout ack not sent to the client's relays")
	}
	if !tp("wss://a").isClosed() || tp("wss://shared").isClosed() {
		t.Fatalf("after logout: open pools %v", h.rs.ClientRelayPools())
	}

	// switch_relays: b is told our relays and moves there; its relays close, and the session says so.
	r := b.one(b.request("2", "switch_relays"))
	var urls []string
	if json.Unmarshal([]byte(r.Result), &urls) != nil || !slices.Equal(urls, h.pool.URLs()) {
		t.Fatalf("switch_relays: %+v", r)
	}
	if len(tp("wss://b").take()) != 1 {
		t.Fatal("switch_relays answer not sent to the client's own relay")
	}
	if !tp("wss://b").isClosed() || !tp("wss://shared").isClosed() {
		t.Fatalf("after switch_relays: open pools %v", h.rs.ClientRelayPools())
	}
	ss, _ := h.db.ListSessions(ctx)
	for _, s := range ss {
		if s.Client == b.clientPK && len(s.Relays) != 0 {
			t.Fatalf("b's session still lists its relays: %v", s.Relays)
		}
	}

	// idle: c's relay has seen nothing for over an hour; d's was used a minute ago.
	clock.add(59 * time.Minute)
	ping := d.request("3", "ping")
	ping.CreatedAt = nostr.Timestamp(clock.now().Unix()) // the request is fresh on the signer's clock
	ping.Sign(d.clientSK)
	if rr := d.one(ping); rr.Result != "pong" {
		t.Fatalf("ping: %+v", rr)
	}
	clock.add(2 * time.Minute)
	h.rs.closeIdle()
	if !tp("wss://c").isClosed() || tp("wss://d").isClosed() {
		t.Fatalf("after idle: open pools %v", h.rs.ClientRelayPools())
	}

	// revoked from the CLI while running.
	if err := h.db.EndSession(ctx, d.clientPK); err != nil {
		t.Fatal(err)
	}
	h.rs.syncSessions(ctx)
	if !tp("wss://d").isClosed() || len(h.rs.ClientRelayPools()) != 0 {
		t.Fatalf("after revoke: open pools %v", h.rs.ClientRelayPools())
	}
}

// A late answer after a restart goes out in the transport its request came with: NIP-04 for a
// legacy client, NIP-44 otherwise, whatever the client used last.
func TestLateAnswerTransportSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	sk := nostr.GeneratePrivateKey()
	start := func() (*RemoteSigner, *toPool) {
		p := &toPool{memPool: &memPool{}}
		rs, err := NewRemoteSigner(sk, p, h.db, quietLog(), WithLegacyNIP04(true))
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Handle(nip46.MethodSignPSBT, heldPSBT{}.SignPSBT); err != nil {
			t.Fatal(err)
		}
		return rs, p
	}
	rs, pool := start()
	h.rs = rs
	if err := h.db.AddConnectSecretPerms(ctx, "s", "sign_psbt"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.UseConnectSecret(ctx, "s", h.clientPK, "", session.ClientInfo{}, func(string, bool) (string, error) { return "sign_psbt", nil }); err != nil {
		t.Fatal(err)
	}
	shared, _ := nip04.ComputeSharedSecret(rs.PublicKey(), h.clientSK)
	legacyReq := func(id string) *nostr.Event {
		body, _ := json.Marshal(map[string]any{"id": id, "method": "sign_psbt", "params": []string{"cHNidP8"}})
		content, _ := nip04.Encrypt(string(body), shared)
		ev := &nostr.Event{PubKey: h.clientPK, CreatedAt: nostr.Now(), Kind: nip46.KindNostrConnect,
			Tags: nostr.Tags{{"p", rs.PublicKey()}}, Content: content}
		ev.Sign(h.clientSK)
		return ev
	}
	rs.handleEvent(ctx, legacyReq("old"), "wss://came-here")
	rs.handleEvent(ctx, h.request("new", "sign_psbt", "cHNidP8"), "mem://")
	if n := len(pool.take()); n != 2 {
		t.Fatalf("%d auth_url answers", n)
	}
	if tr, on, ok, err := h.db.RequestTransport(ctx, h.clientPK, "old"); !ok || err != nil || tr != session.TransportNIP04 || on != "wss://came-here" {
		t.Fatalf("held request's transport: %q %q %v %v", tr, on, ok, err)
	}
	// The client's last request was NIP-44; restart.
	rs, pool = start()
	open := func(ev nostr.Event) (nip46.Response, string) {
		var r nip46.Response
		if plain, err := nip04.Decrypt(ev.Content, shared); err == nil && strings.Contains(ev.Content, "?iv=") {
			json.Unmarshal([]byte(plain), &r)
			return r, "nip04"
		}
		ck, _ := nip44.GenerateConversationKey(rs.PublicKey(), h.clientSK)
		plain, err := nip44.Decrypt(ev.Content, ck)
		if err != nil {
			t.Fatalf("late answer not decryptable: %v", err)
		}
		json.Unmarshal([]byte(plain), &r)
		return r, "nip44"
	}
	if err := rs.Respond(ctx, h.clientPK, "old", "signed-old", nil); err != nil {
		t.Fatal(err)
	}
	evs := pool.take()
	if len(evs) != 1 {
		t.Fatalf("%d late answers", len(evs))
	}
	if r, tr := open(evs[0]); tr != "nip04" || r.ID != "old" || r.Result != "signed-old" {
		t.Fatalf("late answer to the NIP-04 request: %s %+v", tr, r)
	}
	if err := rs.Respond(ctx, h.clientPK, "new", "", nip46.Errorf(nip46.CodePolicyDenied, "no")); err != nil {
		t.Fatal(err)
	}
	if r, tr := open(pool.take()[0]); tr != "nip44" || r.ID != "new" || !strings.HasPrefix(r.Error, "policy_denied") {
		t.Fatalf("late answer to the NIP-44 request: %s %+v", tr, r)
	}
	if _, _, ok, _ := h.db.RequestTransport(ctx, h.clientPK, "old"); ok {
		t.Fatal("transport kept after the late answer")
	}
}

// Requests are counted per client in memory and written by flushActivity; clients without a
// session are not recorded.
func TestClientActivityRecorded(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1_900_000_000, 0)}
	h := newHarness(t, WithClock(clock.now))
	ctx := context.Background()
	h.nostrConnect("wss://app.example")
	stranger := h.asClient()
	fresh := func(c *harness, id string) *nostr.Event {
		ev := c.request(id, "ping")
		ev.CreatedAt = nostr.Timestamp(clock.now().Unix())
		ev.Sign(c.clientSK)
		return ev
	}
	for i := range 3 {
		clock.add(time.Second)
		if r := h.one(fresh(h, string(rune('a'+i)))); r.Result != "pong" {
			t.Fatalf("ping: %+v", r)
		}
	}
	if rs := stranger.send(fresh(stranger, "x")); len(rs) != 0 {
		t.Fatalf("a stranger was answered: %+v", rs)
	}
	h.rs.flushActivity(ctx)
	h.rs.flushActivity(ctx) // nothing new: no change
	ss, err := h.db.ListSessions(ctx)
	if err != nil || len(ss) != 1 || ss[0].Requests != 3 || !ss[0].LastSeen.Equal(clock.now()) {
		t.Fatalf("sessions %+v %v", ss, err)
	}
}
