package signer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip44"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/store"
)

// memPool is an in-process RelayPool: what the remote signer publishes is kept for the test.
type memPool struct {
	mu        sync.Mutex
	published []nostr.Event
}

func (m *memPool) Subscribe(ctx context.Context, f nostr.Filter) <-chan relaypool.Event {
	return make(chan relaypool.Event)
}
func (m *memPool) Publish(ctx context.Context, ev nostr.Event) []relaypool.PublishResult {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.published = append(m.published, ev)
	return []relaypool.PublishResult{{Relay: "mem://"}}
}
func (m *memPool) URLs() []string { return []string{"ws://127.0.0.1:1", "ws://127.0.0.1:2"} }
func (m *memPool) take() []nostr.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.published
	m.published = nil
	return out
}

type echoPSBT struct{}

func (echoPSBT) SignPSBT(ctx context.Context, r nip46.Call) (string, error) {
	return "signed:" + r.Params[0], nil
}

type harness struct {
	t        testing.TB
	rs       *RemoteSigner
	pool     *memPool
	db       *store.DB
	clientSK string
	clientPK string
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newHarness(t testing.TB, opts ...Option) *harness {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	pool := &memPool{}
	rs, err := NewRemoteSigner(nostr.GeneratePrivateKey(), pool, db, quietLog(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Handle(nip46.MethodSignPSBT, echoPSBT{}.SignPSBT); err != nil {
		t.Fatal(err)
	}
	sk := nostr.GeneratePrivateKey()
	pk, _ := nostr.GetPublicKey(sk)
	return &harness{t: t, rs: rs, pool: pool, db: db, clientSK: sk, clientPK: pk}
}

// request builds a signed kind-24133 request event from the client.
func (h *harness) request(id, method string, params ...string) *nostr.Event {
	body, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	return h.event(string(body))
}

func (h *harness) event(plaintext string) *nostr.Event {
	ck, _ := nip44.GenerateConversationKey(h.rs.PublicKey(), h.clientSK)
	content, _ := nip44.Encrypt(plaintext, ck)
	ev := &nostr.Event{PubKey: h.clientPK, CreatedAt: nostr.Now(), Kind: nip46.KindNostrConnect,
		Tags: nostr.Tags{{"p", h.rs.PublicKey()}}, Content: content}
	if err := ev.Sign(h.clientSK); err != nil {
		h.t.Fatal(err)
	}
	return ev
}

// send handles ev and returns the decrypted responses published (none if dropped).
func (h *harness) send(ev *nostr.Event) []nip46.Response {
	h.t.Helper()
	h.rs.handleEvent(context.Background(), ev, "mem://")
	var out []nip46.Response
	for _, p := range h.pool.take() {
		if p.Kind != nip46.KindNostrConnect || !p.Tags.ContainsAny("p", []string{h.clientPK}) || p.PubKey != h.rs.PublicKey() {
			h.t.Fatalf("response event not addressed properly: %+v", p)
		}
		if ok, _ := p.CheckSignature(); !ok {
			h.t.Fatal("response event has a bad signature")
		}
		ck, _ := nip44.GenerateConversationKey(h.rs.PublicKey(), h.clientSK)
		plain, err := nip44.Decrypt(p.Content, ck)
		if err != nil {
			h.t.Fatalf("response is not NIP-44 decryptable by the client: %v", err)
		}
		var r nip46.Response
		if err := json.Unmarshal([]byte(plain), &r); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func (h *harness) one(ev *nostr.Event) nip46.Response {
	h.t.Helper()
	rs := h.send(ev)
	if len(rs) != 1 {
		h.t.Fatalf("got %d responses, want 1", len(rs))
	}
	return rs[0]
}

func TestRemoteSignerSessionAndMethods(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	// A stranger (no session) is not answered, and nothing is written, unless it connects with a
	// usable secret.
	if err := h.db.AddConnectSecret(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	before := tableCounts(t, h.db)
	for _, ev := range []*nostr.Event{
		h.request("1", "ping"),
		h.request("2", "connect", h.rs.PublicKey(), "nope"),
		h.request("2b", "connect", h.rs.PublicKey()),
		h.request("3", "connect", strings.Repeat("0", 64), "s1"), // another signer's pubkey
		h.request("3b", "sign_psbt", "cHNidP8"),
	} {
		if rs := h.send(ev); len(rs) != 0 {
			t.Fatalf("a stranger was answered: %+v", rs)
		}
	}
	if after := tableCounts(t, h.db); after != before {
		t.Fatalf("a stranger's events were written: %s -> %s", before, after)
	}
	if d := h.rs.Drops(); d.Stranger != 2 || d.BadSecret != 3 {
		t.Fatalf("drops %+v", d)
	}
	if r := h.one(h.request("4", "connect", h.rs.PublicKey(), "s1")); r.Result != "ack" || r.ID != "4" {
		t.Fatalf("connect: %+v", r)
	}
	cases := []struct{ method, result, errPrefix string }{
		{"ping", "pong", ""},
		{"get_public_key", h.rs.PublicKey(), ""},
		{"switch_relays", `["ws://127.0.0.1:1","ws://127.0.0.1:2"]`, ""},
		{"sign_event", "", "invalid_params: "},
		{"nip44_encrypt", "", "unauthorized: "},
		{"get_wallet", "", "unknown_method: "},
		{"no_such_method", "", "unknown_method: "},
		{"nip04_encrypt", "", "unknown_method: "},
		{"", "", "invalid_request: "},
	}
	for i, c := range cases {
		r := h.one(h.request(string(rune('a'+i)), c.method))
		if r.Result != c.result || !strings.HasPrefix(r.Error, c.errPrefix) || (c.errPrefix == "") != (r.Error == "") {
			t.Errorf("%s: %+v", c.method, r)
		}
	}
	if r := h.one(h.request("p", "sign_psbt", "cHNidP8")); r.Result != "signed:cHNidP8" {
		t.Fatalf("sign_psbt not passed to the handler: %+v", r)
	}
	// A second client cannot reuse the spent secret.
	other := newHarness(t)
	other.rs, other.db = h.rs, h.db
	other.pool = h.pool
	if rs := other.send(other.request("5", "connect", h.rs.PublicKey(), "s1")); len(rs) != 0 {
		t.Fatalf("reused secret: %+v", rs)
	}
	// A client with a session that sends a wrong secret is answered (and audited).
	if r := h.one(h.request("5b", "connect", h.rs.PublicKey(), "wrong")); !strings.HasPrefix(r.Error, "unauthorized: ") {
		t.Fatalf("wrong secret from a client: %+v", r)
	}
	if r := h.one(h.request("6", "logout")); r.Result != "ack" {
		t.Fatalf("logout: %+v", r)
	}
	if rs := h.send(h.request("7", "ping")); len(rs) != 0 {
		t.Fatalf("ping after logout: %+v", rs)
	}
}

func TestRemoteSignerDropsHostileEvents(t *testing.T) {
	h := newHarness(t)
	forged := h.request("1", "ping")
	forged.Content = h.request("2", "connect", h.rs.PublicKey(), "x").Content // signature no longer matches
	old := h.request("3", "ping")
	old.CreatedAt = nostr.Timestamp(time.Now().Add(-time.Hour).Unix())
	old.Sign(h.clientSK)
	notForUs := h.request("4", "ping")
	notForUs.Tags = nostr.Tags{{"p", strings.Repeat("1", 64)}}
	notForUs.Sign(h.clientSK)
	wrongKind := h.request("5", "ping")
	wrongKind.Kind = 1
	wrongKind.Sign(h.clientSK)
	garbled := h.request("6", "ping")
	garbled.Content = "not nip44"
	garbled.Sign(h.clientSK)
	huge := h.request("7", "ping")
	huge.Content = strings.Repeat("A", MaxContentBytes+1)
	huge.Sign(h.clientSK)
	noID := h.event(`{"method":"ping","params":[]}`)
	notJSON := h.event(`hello`)
	for name, ev := range map[string]*nostr.Event{"forged": forged, "replayed": old, "not for us": notForUs,
		"wrong kind": wrongKind, "not NIP-44": garbled, "oversized": huge, "no id": noID, "not JSON": notJSON} {
		if rs := h.send(ev); len(rs) != 0 {
			t.Errorf("%s event was answered: %+v", name, rs)
		}
	}
	h.connectWith("sign_psbt", "")
	if r := h.one(h.event(`{"id":"8","method":"ping","params":[1,2]}`)); !strings.HasPrefix(r.Error, "invalid_request: ") {
		t.Fatalf("non-string params: %+v", r)
	}
}

// tableCounts is the number of rows of every table the remote signer writes, as one string.
func tableCounts(t testing.TB, db *store.DB) string {
	t.Helper()
	var out []string
	for _, tbl := range []string{"audit_log", "sign_requests", "client_sessions", "connect_secrets", "nip46_seen_events",
		"request_transports", "nostrconnect_pending"} {
		var n int
		if err := db.SQL.QueryRow(`SELECT count(*) FROM ` + tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s=%d", tbl, n))
	}
	return strings.Join(out, " ")
}

func FuzzRemoteSignerPayload(f *testing.F) {
	f.Add(`{"id":"1","method":"connect","params":["x","y"]}`)
	f.Add(`{"id":"1","method":"sign_psbt","params":["cHNidP8"]}`)
	f.Add(`{"id":"","method":null,"params":{}}`)
	f.Add(`{"id":"2","method":"sign_event","params":["{\"kind\":1,\"content\":\"x\",\"tags\":[[\"p\"]]}"]}`)
	f.Add(`{"id":"3","method":"nip44_decrypt","params":["` + strings.Repeat("ab", 32) + `","AgAA"]}`)
	f.Add(`{"id":"4","method":"nip04_decrypt","params":["` + strings.Repeat("ab", 32) + `","QUFB?iv=QUFB"]}`)
	f.Add(`{"id":"5","method":"logout","params":[]}`)
	h := newHarness(f, WithLegacyNIP04(true), WithRateLimit(0, 0))
	// A connected client that may call everything, so that the fuzzer reaches every method.
	const all = "nip04_decrypt,nip04_encrypt,nip44_decrypt,nip44_encrypt,sign_event,sign_event:24133,sign_psbt"
	h.connectWith(all, "")
	f.Fuzz(func(t *testing.T, payload string) {
		h.t = t
		ctx := context.Background()
		if _, ok, _ := h.db.SessionPerms(ctx, h.clientPK); !ok { // an earlier input logged out
			h.db.AddNostrConnect(ctx, session.NostrConnect{Client: h.clientPK, Perms: all, Secret: "x"})
		}
		ev := h.event(payload)
		h.rs.handleEvent(context.Background(), ev, "mem://")
		if len(h.pool.take()) > 1 {
			t.Fatal("more than one response to one request")
		}
		if p, ok, _ := h.db.SessionPerms(ctx, h.clientPK); !strings.Contains(payload, "logout") && (!ok || p != all) {
			t.Fatalf("session changed by %q: %q %v", payload, p, ok)
		}
	})
}
