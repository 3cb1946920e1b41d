package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
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
	if g, err := db.UseConnectSecret(ctx, "s1", "alice", "req", "{}", grant); err != nil || g != "granted:sign_event:1" {
		t.Fatalf("s1: %q %v", g, err)
	}
	if _, err := db.UseConnectSecret(ctx, "s2", "bob", "", "", grant); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[1] != "<default>" {
		t.Fatalf("grant saw %q", seen)
	}
	// Spent secret: another client is refused; the same client with its session is answered
	// alike without running grant again; after the session ends the secret is dead.
	if _, err := db.UseConnectSecret(ctx, "s1", "mallory", "", "", grant); !errors.Is(err, ErrSecretInvalid) {
		t.Fatalf("reuse by another client: %v", err)
	}
	if err := db.SetSessionPerms(ctx, "alice", "nothing_much"); err != nil {
		t.Fatal(err)
	}
	if g, err := db.UseConnectSecret(ctx, "s1", "alice", "", "", grant); err != nil || g != "nothing_much" || len(seen) != 2 {
		t.Fatalf("retry by the same client: %q %v (grant ran %d times)", g, err, len(seen))
	}
	if err := db.EndSession(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UseConnectSecret(ctx, "s1", "alice", "", "", grant); !errors.Is(err, ErrSecretInvalid) {
		t.Fatalf("secret reused after logout: %v", err)
	}
	if _, err := db.UseConnectSecret(ctx, "nope", "alice", "", "", grant); !errors.Is(err, ErrSecretInvalid) {
		t.Fatalf("unknown secret: %v", err)
	}
	if err := db.SetSessionPerms(ctx, "alice", "x"); !errors.Is(err, ErrNoSession) {
		t.Fatalf("set perms without a session: %v", err)
	}
	ss, err := db.ListSessions(ctx)
	if err != nil || len(ss) != 1 || ss[0].Client != "bob" || ss[0].Perms != "granted:" {
		t.Fatalf("sessions: %+v %v", ss, err)
	}
}

func TestNostrConnectQueueRows(t *testing.T) {
	ctx := context.Background()
	db := openTest(t)
	c := NostrConnect{Client: "carol", Relays: []string{"wss://a", "wss://b"}, Secret: "sec", Perms: "sign_psbt", Name: "App"}
	if err := db.AddNostrConnect(ctx, c); err != nil {
		t.Fatal(err)
	}
	p, err := db.PendingNostrConnects(ctx)
	if err != nil || len(p) != 1 || p[0].Secret != "sec" || len(p[0].Relays) != 2 {
		t.Fatalf("pending: %+v %v", p, err)
	}
	ss, _ := db.ListSessions(ctx)
	if len(ss) != 1 || ss[0].Perms != "sign_psbt" || ss[0].Name != "App" || ss[0].Relays[1] != "wss://b" {
		t.Fatalf("session: %+v", ss)
	}
	if err := db.FinishNostrConnect(ctx, "carol", ConnectSent, ""); err != nil {
		t.Fatal(err)
	}
	if p, _ := db.PendingNostrConnects(ctx); len(p) != 0 {
		t.Fatalf("still pending: %+v", p)
	}
	var secret string
	db.SQL.QueryRow(`SELECT secret FROM nostrconnect_pending WHERE client_pubkey = 'carol'`).Scan(&secret)
	if secret != "" {
		t.Fatal("client secret kept after the response was sent")
	}
	if st, _, err := db.NostrConnectState(ctx, "carol"); err != nil || st != ConnectSent {
		t.Fatalf("state %q %v", st, err)
	}
}
