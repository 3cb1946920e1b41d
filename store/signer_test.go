package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/nip46/session"
)

func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConnectSecretGrantsPerms(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	if err := db.AddConnectSecretPerms(ctx, "s1", "sign_event:1"); err != nil {
		t.Fatal(err)
	}
	if err := db.AddConnectSecret(ctx, "s2"); err != nil {
		t.Fatal(err)
	}
	var seen []string
	grant := func(p string, has bool) (string, error) {
		if has {
			seen = append(seen, p)
		} else {
			seen = append(seen, "<default>")
		}
		return "granted:" + p, nil
	}
	if g, err := db.UseConnectSecret(ctx, "s1", "alice", "req", session.ClientInfo{Name: "A", URL: "https://a.example", Note: "n"}, grant); err != nil || g != "granted:sign_event:1" {
		t.Fatalf("s1: %q %v", g, err)
	}
	if _, err := db.UseConnectSecret(ctx, "s2", "bob", "", session.ClientInfo{Name: "Bob", Image: "https://b.example/i.png"}, grant); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[1] != "<default>" {
		t.Fatalf("grant saw %q", seen)
	}
	// Spent secret: another client is refused; the same client with its session is answered
	// alike without running grant again; after the session ends the secret is dead.
	if _, err := db.UseConnectSecret(ctx, "s1", "mallory", "", session.ClientInfo{}, grant); !errors.Is(err, session.ErrSecretInvalid) {
		t.Fatalf("reuse by another client: %v", err)
	}
	if err := db.SetSessionPerms(ctx, "alice", "nothing_much"); err != nil {
		t.Fatal(err)
	}
	if g, err := db.UseConnectSecret(ctx, "s1", "alice", "", session.ClientInfo{}, grant); err != nil || g != "nothing_much" || len(seen) != 2 {
		t.Fatalf("retry by the same client: %q %v (grant ran %d times)", g, err, len(seen))
	}
	if err := db.EndSession(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UseConnectSecret(ctx, "s1", "alice", "", session.ClientInfo{}, grant); !errors.Is(err, session.ErrSecretInvalid) {
		t.Fatalf("secret reused after logout: %v", err)
	}
	if _, err := db.UseConnectSecret(ctx, "nope", "alice", "", session.ClientInfo{}, grant); !errors.Is(err, session.ErrSecretInvalid) {
		t.Fatalf("unknown secret: %v", err)
	}
	if err := db.SetSessionPerms(ctx, "alice", "x"); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("set perms without a session: %v", err)
	}
	ss, err := db.ListSessions(ctx)
	if err != nil || len(ss) != 1 || ss[0].Client != "bob" || ss[0].Perms != "granted:" ||
		ss[0].Info != (session.ClientInfo{Name: "Bob", Image: "https://b.example/i.png"}) || ss[0].Metadata != `{"name":"Bob","image":"https://b.example/i.png"}` {
		t.Fatalf("sessions: %+v %v", ss, err)
	}
}

func TestNostrConnectQueueRows(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	c := session.NostrConnect{Client: "carol", Relays: []string{"wss://a", "wss://b"}, Secret: "sec", Perms: "sign_psbt", Name: "App",
		Info: session.ClientInfo{Name: "App", URL: "https://app.example", Note: "client metadata ignored: image …"}}
	if err := db.AddNostrConnect(ctx, c); err != nil {
		t.Fatal(err)
	}
	p, err := db.PendingNostrConnects(ctx)
	if err != nil || len(p) != 1 || p[0].Secret != "sec" || len(p[0].Relays) != 2 || p[0].Info != c.Info {
		t.Fatalf("pending: %+v %v", p, err)
	}
	ss, _ := db.ListSessions(ctx)
	if len(ss) != 1 || ss[0].Perms != "sign_psbt" || ss[0].Name != "App" || ss[0].Relays[1] != "wss://b" || ss[0].Info != c.Info {
		t.Fatalf("session: %+v", ss)
	}
	t0 := time.Unix(1_800_000_000, 0)
	if err := db.NostrConnectSent(ctx, "carol", "r1", t0, t0.Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := db.NostrConnectSent(ctx, "carol", "r2", t0.Add(2*time.Second), t0.Add(6*time.Second)); err != nil {
		t.Fatal(err)
	}
	p, err = db.PendingNostrConnects(ctx)
	if err != nil || len(p) != 1 || p[0].State != session.ConnectSent || p[0].ResponseID != "r1" || p[0].Attempts != 2 ||
		!p[0].SentAt.Equal(t0) || !p[0].NextAt.Equal(t0.Add(6*time.Second)) || p[0].Secret != "sec" {
		t.Fatalf("being re-sent (same id, first send time kept, secret kept): %+v %v", p, err)
	}
	if ok, err := db.ConfirmNostrConnect(ctx, "carol"); err != nil || !ok {
		t.Fatalf("confirm: %v %v", ok, err)
	}
	if ok, err := db.ConfirmNostrConnect(ctx, "carol"); err != nil || ok {
		t.Fatalf("confirm twice: %v %v", ok, err)
	}
	if err := db.NostrConnectSent(ctx, "carol", "r3", t0, t0); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("send after confirmation: %v", err)
	}
	if p, _ := db.PendingNostrConnects(ctx); len(p) != 0 {
		t.Fatalf("still pending: %+v", p)
	}
	var secret string
	db.SQL.QueryRow(`SELECT secret FROM nostrconnect_pending WHERE client_pubkey = 'carol'`).Scan(&secret)
	if secret != "" {
		t.Fatal("client secret kept after the app confirmed")
	}
	if st, _, err := db.NostrConnectState(ctx, "carol"); err != nil || st != session.ConnectConfirmed {
		t.Fatalf("state %q %v", st, err)
	}
	// Accepting the same app again starts over.
	if err := db.AddNostrConnect(ctx, c); err != nil {
		t.Fatal(err)
	}
	if p, _ := db.PendingNostrConnects(ctx); len(p) != 1 || p[0].Attempts != 0 || p[0].ResponseID != "" || p[0].State != session.ConnectPending {
		t.Fatalf("re-accepted: %+v", p)
	}
	if err := db.FinishNostrConnect(ctx, "carol", session.ConnectUnconfirmed, "no request"); err != nil {
		t.Fatal(err)
	}
	if st, msg, _ := db.NostrConnectState(ctx, "carol"); st != session.ConnectUnconfirmed || msg != "no request" {
		t.Fatalf("state %q %q", st, msg)
	}
}

func TestSessionActivityAndRelays(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	if err := db.AddNostrConnect(ctx, session.NostrConnect{Client: "dave", Relays: []string{"wss://a"}, Secret: "s"}); err != nil {
		t.Fatal(err)
	}
	t1 := time.Unix(1_800_000_100, 0)
	if err := db.RecordActivity(ctx, map[string]session.Activity{"dave": {Requests: 3, LastSeen: t1}, "nobody": {Requests: 1, LastSeen: t1}}); err != nil {
		t.Fatal(err)
	}
	if err := db.RecordActivity(ctx, map[string]session.Activity{"dave": {Requests: 2, LastSeen: t1.Add(-time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if err := db.SetSessionRelays(ctx, "dave", nil); err != nil {
		t.Fatal(err)
	}
	if err := db.SetSessionRelays(ctx, "nobody", nil); !errors.Is(err, session.ErrNoSession) {
		t.Fatalf("relays of no session: %v", err)
	}
	ss, err := db.ListSessions(ctx)
	if err != nil || len(ss) != 1 || ss[0].Requests != 5 || !ss[0].LastSeen.Equal(t1) || len(ss[0].Relays) != 0 {
		t.Fatalf("session: %+v %v", ss, err)
	}
}

func TestRequestTransports(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	if _, _, ok, err := db.RequestTransport(ctx, "erin", "1"); ok || err != nil {
		t.Fatalf("none yet: %v %v", ok, err)
	}
	if err := db.SaveRequestTransport(ctx, "erin", "1", "rot13", ""); err == nil {
		t.Fatal("unknown transport accepted")
	}
	if err := db.SaveRequestTransport(ctx, "erin", "1", session.TransportNIP04, "ws://r"); err != nil {
		t.Fatal(err)
	}
	if tr, on, ok, err := db.RequestTransport(ctx, "erin", "1"); !ok || err != nil || tr != session.TransportNIP04 || on != "ws://r" {
		t.Fatalf("transport %q %q %v %v", tr, on, ok, err)
	}
	if _, _, ok, _ := db.RequestTransport(ctx, "erin", "2"); ok {
		t.Fatal("another request id found")
	}
	if err := db.DeleteRequestTransport(ctx, "erin", "1"); err != nil {
		t.Fatal(err)
	}
	if _, _, ok, _ := db.RequestTransport(ctx, "erin", "1"); ok {
		t.Fatal("deleted transport found")
	}
}

// A session note from the remote signer lands in the audit log like any other entry.
func TestAuditSession(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	note := session.Audit{Client: "alice", RequestID: "r1", Method: "connect", Decision: "rejected",
		Rule: "connect_secret", Reason: "unknown or already used secret"}
	if err := db.AuditSession(ctx, note); err != nil {
		t.Fatal(err)
	}
	log, err := db.AuditLog(ctx, 10)
	if err != nil || len(log) != 1 {
		t.Fatalf("audit log: %+v %v", log, err)
	}
	a := log[0]
	got := session.Audit{Client: a.Client, RequestID: a.RequestID, Method: a.Method, Decision: a.Decision, Rule: a.Rule, Reason: a.Reason}
	if got != note || a.At.IsZero() {
		t.Fatalf("audit entry %+v, want %+v", a, note)
	}
}
