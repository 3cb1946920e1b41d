package signer

import (
	"context"
	"strings"
	"testing"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
	"github.com/custodyagents/cosigner/store"
)

// sessionOf returns the stored session of client.
func sessionOf(t *testing.T, db *store.DB, client string) session.ClientSession {
	t.Helper()
	ss, err := db.ListSessions(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if s.Client == client {
			return s
		}
	}
	t.Fatalf("no session for %s", client)
	return session.ClientSession{}
}

// lastAudit returns the newest audit entry about client.
func lastAudit(t *testing.T, db *store.DB, client string) store.AuditEntry {
	t.Helper()
	es, err := db.AuditLog(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var last store.AuditEntry
	for _, e := range es {
		if e.Client == client && (last.At.IsZero() || !e.At.Before(last.At)) {
			last = e
		}
	}
	return last
}

// NIP-46 "Client metadata": connect's fourth param {name, url, image} (after an empty perms
// string) is kept, validated, with the session and in the audit log; malformed metadata never
// fails the connect, and what was dropped is noted.
func TestConnectClientMetadata(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name     string
		params   func(pk, secret string) []string
		wantInfo session.ClientInfo
		audit    []string
	}{
		{"metadata after an empty perms string", func(pk, s string) []string {
			return []string{pk, s, "", `{"name":"Primal","url":"https://primal.net","image":"https://primal.net/logo.png"}`}
		}, session.ClientInfo{Name: "Primal", URL: "https://primal.net", Image: "https://primal.net/logo.png"},
			[]string{`name="Primal"`, `url="https://primal.net"`, "unverified"}},
		{"no metadata", func(pk, s string) []string { return []string{pk, s} },
			session.ClientInfo{}, []string{"client says (unverified): nothing"}},
		{"bad JSON", func(pk, s string) []string { return []string{pk, s, "", `{"name":`} },
			session.ClientInfo{Note: "client metadata ignored: not a JSON object {name, url, image}"},
			[]string{"not a JSON object"}},
		{"a javascript: url and a good name", func(pk, s string) []string {
			return []string{pk, s, "sign_psbt", `{"name":"Wallet","url":"javascript:alert(1)"}`}
		}, session.ClientInfo{Name: "Wallet", Note: "client metadata ignored: url is not an http:// or https:// URL"},
			[]string{`name="Wallet"`, "url is not an http"}},
		{"metadata in the perms place", func(pk, s string) []string { return []string{pk, s, `{"name":"Misplaced"}`} },
			session.ClientInfo{Note: "the perms param (third) holds JSON; NIP-46 puts client metadata fourth, after an empty perms string"},
			[]string{"perms param (third) holds JSON"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHarness(t)
			secret := "s-" + h.clientPK[:8]
			if err := h.db.AddConnectSecretPerms(ctx, secret, "sign_psbt"); err != nil {
				t.Fatal(err)
			}
			if r := h.one(h.request("c", "connect", c.params(h.rs.PublicKey(), secret)...)); r.Result != "ack" || r.Error != "" {
				t.Fatalf("connect: %+v", r)
			}
			s := sessionOf(t, h.db, h.clientPK)
			if s.Info != c.wantInfo {
				t.Fatalf("stored %+v, want %+v", s.Info, c.wantInfo)
			}
			a := lastAudit(t, h.db, h.clientPK)
			for _, w := range c.audit {
				if a.Decision != "connected" || !strings.Contains(a.Reason, w) {
					t.Fatalf("audit %q (%s) lacks %q", a.Reason, a.Decision, w)
				}
			}
		})
	}
}

// The metadata is never used to authorize: a client that names itself exactly like another
// client (name, url, image) gets only what its own secret grants, and a reconnect without a
// secret carrying another's metadata changes nothing.
func TestClientMetadataGrantsNothing(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t)
	meta := `{"name":"Primal","url":"https://primal.net","image":"https://primal.net/logo.png"}`
	if err := h.db.AddConnectSecretPerms(ctx, "trusted", "sign_event:1,nip44_decrypt,sign_psbt"); err != nil {
		t.Fatal(err)
	}
	if r := h.one(h.request("1", "connect", h.rs.PublicKey(), "trusted", "", meta)); r.Result != "ack" {
		t.Fatalf("trusted connect: %+v", r)
	}
	if r := h.one(h.request("2", "sign_event", template(1, "by the trusted app"))); r.Error != "" {
		t.Fatalf("trusted sign_event: %+v", r)
	}

	impostor := h.asClient()
	if err := h.db.AddConnectSecretPerms(ctx, "weak", "get_wallet"); err != nil {
		t.Fatal(err)
	}
	// The impostor asks for everything the trusted app has, under the same name.
	if r := impostor.one(impostor.request("1", "connect", h.rs.PublicKey(), "weak", "sign_event:1,nip44_decrypt,sign_psbt", meta)); r.Result != "ack" {
		t.Fatalf("impostor connect: %+v", r)
	}
	if got := sessionOf(t, h.db, impostor.clientPK); got.Perms != "" || got.Info.Name != "Primal" {
		t.Fatalf("impostor session %+v: want no permissions (get_wallet ∩ what it asked) and its claimed name kept as a hint", got)
	}
	for _, c := range []struct{ method, param string }{
		{"sign_event", template(1, "as Primal")},
		{"sign_psbt", "cHNidP8"},
		{"nip44_decrypt", strings.Repeat("a", 64)},
	} {
		if r := impostor.one(impostor.request("x", c.method, c.param)); !strings.HasPrefix(r.Error, nip46.CodeUnauthorized+": ") {
			t.Fatalf("impostor %s: %+v", c.method, r)
		}
	}
	// A reconnect without a secret, with the metadata: answered, nothing changes.
	if r := impostor.one(impostor.request("2", "connect", h.rs.PublicKey(), "", "sign_event", meta)); r.Result != "ack" {
		t.Fatalf("impostor reconnect: %+v", r)
	}
	if got := sessionOf(t, h.db, impostor.clientPK); got.Perms != "" {
		t.Fatalf("reconnect changed the impostor's permissions: %+v", got)
	}
	if got := sessionOf(t, h.db, h.clientPK); got.Perms != "nip44_decrypt,sign_event:1,sign_psbt" {
		t.Fatalf("the trusted app's permissions changed: %+v", got)
	}
}

// A nostrconnect:// URI's name, url and image go through the same validation; rust-nostr's
// older metadata= JSON param is read when none of them is given.
func TestAcceptNostrConnectMetadata(t *testing.T) {
	pk := strings.Repeat("ab", 32)
	for _, c := range []struct {
		query string
		want  session.ClientInfo
		json  string
	}{
		{"&name=App&url=https%3A%2F%2Fapp.example&image=https%3A%2F%2Fapp.example%2Fi.png",
			session.ClientInfo{Name: "App", URL: "https://app.example", Image: "https://app.example/i.png"},
			`{"name":"App","url":"https://app.example","image":"https://app.example/i.png"}`},
		{"&name=App&url=ftp%3A%2F%2Fapp.example", session.ClientInfo{Name: "App", Note: "client metadata ignored: url is not an http:// or https:// URL"}, `{"name":"App"}`},
		{"&metadata=" + "%7B%22name%22%3A%22Rusty%22%2C%22url%22%3A%22https%3A%2F%2Fr.example%22%7D",
			session.ClientInfo{Name: "Rusty", URL: "https://r.example"}, `{"name":"Rusty","url":"https://r.example"}`},
		{"&metadata=nope", session.ClientInfo{Note: "metadata= param: client metadata ignored: not a JSON object {name, url, image}"}, ""},
	} {
		u, err := nip46.ParseNostrConnectURI("nostrconnect://" + pk + "?relay=wss%3A%2F%2Fr&secret=s" + c.query)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := AcceptNostrConnect(u, "sign_psbt")
		if err != nil || nc.Info != c.want || nc.Name != c.want.Name || nc.Metadata != c.json {
			t.Errorf("%s: %+v %q %v; want %+v", c.query, nc.Info, nc.Metadata, err, c.want)
		}
	}
}

// NIP-46 (nips PR #2375): requests with unknown or unsupported methods MUST be answered with an
// error. Methods of older NIP-46 texts (get_relays, describe, create_account), other spellings
// and names that cannot be methods all get unknown_method, and change nothing.
func TestUnknownMethodsAnswered(t *testing.T) {
	h := newHarness(t)
	h.connectWith("sign_psbt", "")
	before := h.perms()
	for _, m := range []string{"get_relays", "describe", "create_account", "disconnect", "Sign_PSBT", "sign-psbt",
		"nip44v3_encrypt", strings.Repeat("m", 200), "sign_message"} {
		r := h.one(h.request("u", m, "x"))
		if r.Result != "" || !strings.HasPrefix(r.Error, nip46.CodeUnknownMethod+": ") || r.ID != "u" {
			t.Errorf("%.40s: %+v", m, r)
		}
	}
	if h.perms() != before {
		t.Fatalf("permissions changed: %q -> %q", before, h.perms())
	}
}
