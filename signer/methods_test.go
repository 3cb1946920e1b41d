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

// connectWith gives the harness client a session from a secret created with perms, asking for
// requested.
func (h *harness) connectWith(perms, requested string) {
	h.t.Helper()
	secret := "s-" + h.clientPK[:8] + perms
	if err := h.db.AddConnectSecretPerms(context.Background(), secret, perms); err != nil {
		h.t.Fatal(err)
	}
	if r := h.one(h.request("c", "connect", h.rs.PublicKey(), secret, requested)); r.Result != "ack" {
		h.t.Fatalf("connect: %+v", r)
	}
}

func (h *harness) perms() string {
	p, _, err := h.db.SessionPerms(context.Background(), h.clientPK)
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

func template(kind int, content string) string {
	b, _ := json.Marshal(map[string]any{"kind": kind, "content": content, "tags": [][]string{{"t", "x"}}, "created_at": 1700000000})
	return string(b)
}

func TestSignEventPermittedKindsOnly(t *testing.T) {
	h := newHarness(t)
	h.connectWith("sign_event:1,nip44_encrypt", "sign_event:1,sign_event:4,nip44_decrypt")
	if got := h.perms(); got != "sign_event:1" {
		t.Fatalf("granted %q, want the intersection sign_event:1", got)
	}
	if r := h.one(h.request("0", "sign_event", `{"kind":1,"content":"x","tags":[],"created_at":1,"id":"bogus","sig":"bogus","pubkey":"`+h.rs.PublicKey()+`"}`)); r.Error != "" {
		t.Fatalf("unsigned event with id/sig/pubkey fields: %+v", r)
	}
	r := h.one(h.request("1", "sign_event", template(1, "hello")))
	if r.Error != "" {
		t.Fatalf("sign_event kind 1: %+v", r)
	}
	var ev nostr.Event
	if err := json.Unmarshal([]byte(r.Result), &ev); err != nil {
		t.Fatal(err)
	}
	if ok, _ := ev.CheckSignature(); !ok || ev.PubKey != h.rs.PublicKey() || ev.Kind != 1 || ev.Content != "hello" || ev.CreatedAt != 1700000000 {
		t.Fatalf("signed event %+v", ev)
	}
	before, _ := h.db.AuditLog(context.Background(), 100)
	for _, c := range []struct{ method, param, want string }{
		{"sign_event", template(4, "dm"), "unauthorized: "},
		{"sign_event", template(nip46.KindNostrConnect, "x"), "unauthorized: "},
		{"sign_psbt", "cHNidP8", "unauthorized: "},
		{"nip44_decrypt", strings.Repeat("a", 64), "unauthorized: "},
		{"sign_event", `{"kind":1}`, "invalid_params: "},
		{"sign_event", `{"kind":1,"content":"","idx":"x"}`, "invalid_params: "},
		{"sign_event", `{"kind":1,"content":"","pubkey":"` + strings.Repeat("0", 64) + `"}`, "invalid_params: "},
		{"sign_event", `{"kind":70000,"content":""}`, "invalid_params: "},
		{"sign_event", `{"kind":1,"content":"","tags":[[]]}`, "invalid_params: "},
	} {
		if r := h.one(h.request("x", c.method, c.param)); !strings.HasPrefix(r.Error, c.want) || r.Result != "" {
			t.Errorf("%s %s: %+v", c.method, c.param, r)
		}
	}
	if got := h.perms(); got != "sign_event:1" {
		t.Fatalf("perms changed by refused requests: %q", got)
	}
	after, _ := h.db.AuditLog(context.Background(), 100)
	if len(after) != len(before)+4 { // the four unauthorized calls are logged, nothing else
		t.Fatalf("audit grew by %d, want 4", len(after)-len(before))
	}
	// The operator grants more (cosigner clients grant); the daemon reads it on the next request.
	if err := h.db.SetSessionPerms(context.Background(), h.clientPK, "sign_event:1,sign_event:4"); err != nil {
		t.Fatal(err)
	}
	if r := h.one(h.request("2", "sign_event", template(4, "dm"))); r.Error != "" {
		t.Fatalf("after grant: %+v", r)
	}
	// A retried connect with the spent secret does not restore anything.
	if err := h.db.SetSessionPerms(context.Background(), h.clientPK, ""); err != nil {
		t.Fatal(err)
	}
	h.one(h.request("3", "connect", h.rs.PublicKey(), "s-"+h.clientPK[:8]+"sign_event:1,nip44_encrypt"))
	if got := h.perms(); got != "" {
		t.Fatalf("reconnect restored perms %q", got)
	}
}

func TestNIP44Methods(t *testing.T) {
	h := newHarness(t)
	h.connectWith("nip44_encrypt,nip44_decrypt", "")
	peerSK := nostr.GeneratePrivateKey()
	peerPK, _ := nostr.GetPublicKey(peerSK)
	r := h.one(h.request("1", "nip44_encrypt", peerPK, "secret note"))
	if r.Error != "" {
		t.Fatal(r)
	}
	ck, _ := nip44.GenerateConversationKey(h.rs.PublicKey(), peerSK)
	if plain, err := nip44.Decrypt(r.Result, ck); err != nil || plain != "secret note" {
		t.Fatalf("peer cannot read it: %q %v", plain, err)
	}
	ct, _ := nip44.Encrypt("reply", ck)
	if r := h.one(h.request("2", "nip44_decrypt", peerPK, ct)); r.Result != "reply" {
		t.Fatalf("nip44_decrypt: %+v", r)
	}
	// Another client's NIP-46 request to this bunker is not decrypted for this client.
	other := newHarness(t)
	other.rs = h.rs
	stolen := other.request("9", "connect", h.rs.PublicKey(), "their-secret")
	if r := h.one(h.request("3", "nip44_decrypt", other.clientPK, stolen.Content)); !strings.HasPrefix(r.Error, "unauthorized: ") {
		t.Fatalf("decrypting another client's NIP-46 traffic: %+v", r)
	}
	for _, params := range [][]string{{peerPK}, {"zz", "x"}, {peerPK, "not a payload"}} {
		if r := h.one(h.request("4", "nip44_decrypt", params...)); !strings.HasPrefix(r.Error, "invalid_params: ") {
			t.Errorf("nip44_decrypt %q: %+v", params, r)
		}
	}
}

func TestLegacyNIP04Transport(t *testing.T) {
	// Without the legacy mode a NIP-04 request is dropped.
	h := newHarness(t)
	shared, _ := nip04.ComputeSharedSecret(h.rs.PublicKey(), h.clientSK)
	nip04Request := func(h *harness, id, method string, params ...string) *nostr.Event {
		body, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
		ct, _ := nip04.Encrypt(string(body), shared)
		ev := &nostr.Event{PubKey: h.clientPK, CreatedAt: nostr.Now(), Kind: nip46.KindNostrConnect,
			Tags: nostr.Tags{{"p", h.rs.PublicKey()}}, Content: ct}
		ev.Sign(h.clientSK)
		return ev
	}
	if rs := h.send(nip04Request(h, "1", "ping")); len(rs) != 0 {
		t.Fatalf("NIP-04 request answered without the legacy mode: %+v", rs)
	}

	h = newHarness(t, WithLegacyNIP04(true))
	shared, _ = nip04.ComputeSharedSecret(h.rs.PublicKey(), h.clientSK)
	if err := h.db.AddConnectSecretPerms(context.Background(), "s", "nip04_encrypt,nip04_decrypt"); err != nil {
		t.Fatal(err)
	}
	h.rs.handleEvent(context.Background(), nip04Request(h, "1", "connect", h.rs.PublicKey(), "s"), "mem://")
	pub := h.pool.take()
	if len(pub) != 1 {
		t.Fatalf("%d responses", len(pub))
	}
	plain, err := nip04.Decrypt(pub[0].Content, shared)
	if err != nil || !strings.Contains(plain, `"result":"ack"`) {
		t.Fatalf("legacy connect not answered in NIP-04: %q %v", plain, err)
	}
	// A NIP-44 request from the same client is answered in NIP-44, with nip04_* methods.
	r := h.one(h.request("2", "nip04_encrypt", h.clientPK, "hi"))
	if got, err := nip04.Decrypt(r.Result, shared); err != nil || got != "hi" {
		t.Fatalf("nip04_encrypt: %+v %q %v", r, got, err)
	}
	for _, bad := range []string{"AAAA?iv=AAAA", "x?iv=y", "QUJDREVGR0hJSktMTU5PUA==?iv=QUI="} {
		if r := h.one(h.request("3", "nip04_decrypt", h.clientPK, bad)); !strings.HasPrefix(r.Error, "invalid_params: ") {
			t.Fatalf("malformed nip04 ciphertext %q: %+v", bad, r)
		}
	}
}

func TestRateLimitPerClient(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := newHarness(t, WithRateLimit(1, 2), WithClock(func() time.Time { return now }))
	if err := h.db.AddConnectSecret(context.Background(), "s"); err != nil {
		t.Fatal(err)
	}
	ev := func(id, method string, params ...string) *nostr.Event {
		e := h.request(id, method, params...)
		e.CreatedAt = nostr.Timestamp(now.Unix())
		e.Sign(h.clientSK)
		return e
	}
	if r := h.one(ev("1", "connect", h.rs.PublicKey(), "s")); r.Result != "ack" {
		t.Fatal(r)
	}
	if r := h.one(ev("2", "ping")); r.Result != "pong" {
		t.Fatal(r)
	}
	r := h.one(ev("3", "ping"))
	if !strings.HasPrefix(r.Error, "rate_limited: ") {
		t.Fatalf("third request within a second: %+v", r)
	}
	// Another client has its own bucket.
	other := newHarness(t)
	other.rs, other.db, other.pool = h.rs, h.db, h.pool
	e := other.request("1", "ping")
	e.CreatedAt = nostr.Timestamp(now.Unix())
	e.Sign(other.clientSK)
	if rs := other.send(e); len(rs) != 0 {
		t.Fatalf("a stranger was answered: %+v", rs)
	}
	now = now.Add(time.Second)
	if r := h.one(ev("4", "ping")); r.Result != "pong" {
		t.Fatalf("after a second: %+v", r)
	}
}

func TestReplayedEventDropped(t *testing.T) {
	h := newHarness(t)
	h.connectWith("sign_psbt", "")
	ev := h.request("1", "ping")
	if len(h.send(ev)) != 1 {
		t.Fatal("first delivery not answered")
	}
	if rs := h.send(ev); len(rs) != 0 {
		t.Fatalf("replayed event answered again: %+v", rs)
	}
}

type heldPSBT struct{}

func (heldPSBT) SignPSBT(ctx context.Context, r nip46.Call) (string, error) {
	return "", &nip46.HeldError{URL: "https://approve.example/r/" + r.ID, Reason: "cooling_off: 1h"}
}

func TestHeldRequestAuthURLThenRespond(t *testing.T) {
	h := newHarness(t)
	rs, err := NewRemoteSigner(nostr.GeneratePrivateKey(), h.pool, h.db, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Handle(nip46.MethodSignPSBT, heldPSBT{}.SignPSBT); err != nil {
		t.Fatal(err)
	}
	h.rs = rs
	h.connectWith("sign_psbt", "")
	r := h.one(h.request("77", "sign_psbt", "cHNidP8"))
	if r.ID != "77" || r.Result != "auth_url" || r.Error != "https://approve.example/r/77" {
		t.Fatalf("held request: %+v", r)
	}
	if err := rs.Respond(context.Background(), h.clientPK, "77", "cHNidP8signed", nil); err != nil {
		t.Fatal(err)
	}
	if got := h.decrypt(h.pool.take()); len(got) != 1 || got[0].ID != "77" || got[0].Result != "cHNidP8signed" {
		t.Fatalf("late answer: %+v", got)
	}
}

func TestRespondDeliversLateAnswer(t *testing.T) {
	h := newHarness(t)
	h.connectWith("sign_psbt", "")
	if err := h.rs.Respond(context.Background(), h.clientPK, "42", "", nip46.Errorf(nip46.CodePolicyDenied, "approvals: rejected")); err != nil {
		t.Fatal(err)
	}
	if err := h.rs.Respond(context.Background(), h.clientPK, "43", "done", nil); err != nil {
		t.Fatal(err)
	}
	if err := h.rs.Respond(context.Background(), h.clientPK, "44", "", nil); err == nil {
		t.Fatal("empty result accepted (nostr-tools never resolves it)")
	}
	got := h.decrypt(h.pool.take())
	if len(got) != 2 || got[0].ID != "42" || got[0].Error != "policy_denied: approvals: rejected" || got[1].ID != "43" || got[1].Result != "done" {
		t.Fatalf("late answers: %+v", got)
	}
}

func TestHandleExtensionMethod(t *testing.T) {
	h := newHarness(t)
	if err := h.rs.Handle("ping", func(context.Context, nip46.Call) (string, error) { return "", nil }); err == nil {
		t.Fatal("replacing a session method accepted")
	}
	if err := h.rs.Handle("psbt_status", func(_ context.Context, r nip46.Call) (string, error) { return "status:" + r.Params[0], nil }); err != nil {
		t.Fatal(err)
	}
	if err := h.rs.Handle("get_wallet", WalletMethod(WalletInfo{Descriptor: "wsh(…)#abcdefgh", Fingerprints: []string{"01020304"}, Network: "regtest"})); err != nil {
		t.Fatal(err)
	}
	h.connectWith("psbt_status", "")
	if r := h.one(h.request("1", "psbt_status", "abc")); r.Result != "status:abc" {
		t.Fatal(r)
	}
	if r := h.one(h.request("2", "get_wallet")); !strings.HasPrefix(r.Error, "unauthorized: ") {
		t.Fatal(r)
	}
	h.db.SetSessionPerms(context.Background(), h.clientPK, "get_wallet")
	r := h.one(h.request("3", "get_wallet"))
	var w WalletInfo
	if err := json.Unmarshal([]byte(r.Result), &w); err != nil || w.Network != "regtest" || w.Fingerprints[0] != "01020304" {
		t.Fatalf("get_wallet: %+v", r)
	}
}

// decrypt opens responses published to the harness client.
func (h *harness) decrypt(evs []nostr.Event) []nip46.Response {
	h.t.Helper()
	ck, _ := nip44.GenerateConversationKey(h.rs.PublicKey(), h.clientSK)
	var out []nip46.Response
	for _, e := range evs {
		plain, err := nip44.Decrypt(e.Content, ck)
		if err != nil {
			h.t.Fatal(err)
		}
		var r nip46.Response
		json.Unmarshal([]byte(plain), &r)
		out = append(out, r)
	}
	return out
}

func TestNostrConnectQueue(t *testing.T) {
	h := newHarness(t)
	clientPool := &memPool{}
	dialed := 0
	rs, err := NewRemoteSigner(nostr.GeneratePrivateKey(), h.pool, h.db, quietLog(),
		WithClientRelays(func(urls []string) (ClosablePool, error) { dialed++; return closable{clientPool}, nil }))
	if err != nil {
		t.Fatal(err)
	}
	h.rs = rs
	uri := "nostrconnect://" + h.clientPK + "?relay=wss%3A%2F%2Fapp.example&relay=ws%3A%2F%2F127.0.0.1%3A1&secret=abc123&perms=sign_event%3A1%2Csign_psbt&name=App"
	u, err := nip46.ParseNostrConnectURI(uri)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := AcceptNostrConnect(u, "sign_psbt,get_wallet")
	if err != nil || nc.Perms != "sign_psbt" || nc.Metadata != `{"name":"App"}` {
		t.Fatalf("accept: %+v %v", nc, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := h.db.AddNostrConnect(ctx, nc); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { rs.Run(ctx); close(done) }()
	for { // wait for the daemon to pick up the queue (no timing assertion: it must happen)
		st, _, _ := h.db.NostrConnectState(ctx, h.clientPK)
		if st == session.ConnectSent {
			break
		}
		rs.PokeNostrConnect()
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if dialed != 1 {
		t.Fatalf("dialed %d client relays, want 1 (the other is in the pool)", dialed)
	}
	// The test pokes the queue until the state reads sent, so a poke that arrives while the
	// first send is being recorded may send the same response again (the client ignores a
	// repeated id); what must hold is that every copy is the connect response with the secret.
	main, client := h.decrypt(h.pool.take()), h.decrypt(clientPool.take())
	ok := len(main) >= 1 && len(client) >= 1
	for _, r := range append(slices.Clone(main), client...) {
		ok = ok && r.Result == "abc123" && r.ID == main[0].ID
	}
	if !ok {
		t.Fatalf("connect response with the secret: pool %+v, client relay %+v", main, client)
	}
	if got := h.perms(); got != "sign_psbt" {
		t.Fatalf("session perms %q", got)
	}
	if r := h.one(h.request("1", "sign_psbt", "x")); !strings.HasPrefix(r.Error, "internal") && !strings.HasPrefix(r.Error, "unknown_method") {
		t.Fatalf("session usable: %+v", r)
	}
}

type closable struct{ *memPool }

func (closable) Close() {}

// toPool is a memPool that also has PublishTo (like relaypool.Pool).
type toPool struct {
	*memPool
	mu   sync.Mutex
	urls [][]string
}

func (p *toPool) PublishTo(ctx context.Context, ev nostr.Event, urls []string) []relaypool.PublishResult {
	p.mu.Lock()
	p.urls = append(p.urls, urls)
	p.mu.Unlock()
	return p.Publish(ctx, ev)
}

func TestClientRelaysWithoutDialerUsePublishTo(t *testing.T) {
	h := newHarness(t)
	tp := &toPool{memPool: h.pool}
	rs, err := NewRemoteSigner(nostr.GeneratePrivateKey(), tp, h.db, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	h.rs = rs
	ctx := context.Background()
	if err := h.db.AddNostrConnect(ctx, session.NostrConnect{Client: h.clientPK, Relays: []string{"wss://app.example", "ws://127.0.0.1:1"},
		Secret: "x", Perms: ""}); err != nil {
		t.Fatal(err)
	}
	rs.setClientRelays(h.clientPK, []string{"wss://app.example", "ws://127.0.0.1:1"})
	if r := h.one(h.request("1", "ping")); r.Result != "pong" {
		t.Fatal(r)
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if len(tp.urls) != 1 || len(tp.urls[0]) != 1 || tp.urls[0][0] != "wss://app.example" {
		t.Fatalf("PublishTo urls %q (the pool's own relay must not be repeated)", tp.urls)
	}
}
