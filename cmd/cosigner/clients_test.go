package main

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/nip46/session"
	"github.com/custodyagents/cosigner/store"
)

func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := runCommand(context.Background(), args, &out)
	return out.String(), err
}

func TestClientsConnectAndBunkerPerms(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	t.Setenv("COSIGNER_PASSPHRASE", "pw")
	t.Setenv("COSIGNER_RELAYS", "ws://127.0.0.1:1")
	if _, err := cli(t, "init"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli(t, "bunker-uri", "--perms", "sign_event:x"); err == nil || !strings.Contains(err.Error(), "--perms") {
		t.Fatalf("bad --perms: %v", err)
	}
	out, err := cli(t, "bunker-uri", "--perms", "sign_event:1,sign_psbt,sign_event:1")
	if err != nil {
		t.Fatal(err)
	}
	bp, err := nip46.ParseBunkerURI(strings.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(context.Background(), filepath.Join(dir, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The secret carries the canonical perms: a client asking for nothing gets exactly them.
	client := strings.Repeat("c", 64)
	g, err := db.UseConnectSecret(context.Background(), bp.Secret, client, "", session.ClientInfo{Name: "WebApp", URL: "https://web.example"}, func(p string, has bool) (string, error) {
		perms, err := nip46.GrantAtConnect(p, has, "")
		return perms.String(), err
	})
	if err != nil || g != "sign_event:1,sign_psbt" {
		t.Fatalf("granted %q, %v", g, err)
	}

	npub, _ := nip19.EncodePublicKey(client)
	if out, err := cli(t, "clients", "grant", npub, "nip44_encrypt"); err != nil || !strings.Contains(out, "nip44_encrypt,sign_event:1,sign_psbt") {
		t.Fatalf("grant: %q %v", out, err)
	}
	if out, err := cli(t, "clients", "revoke", client, "sign_event"); err != nil || !strings.Contains(out, client+": nip44_encrypt,sign_psbt") {
		t.Fatalf("revoke perm: %q %v", out, err)
	}
	if _, err := cli(t, "clients", "grant", client, "Bad Perm"); err == nil {
		t.Fatal("malformed perm granted")
	}
	if _, err := cli(t, "clients", "grant", "nobody", "ping"); err == nil {
		t.Fatal("grant to a malformed pubkey")
	}
	if _, err := cli(t, "clients", "grant", strings.Repeat("d", 64), "sign_psbt"); err == nil || !strings.Contains(err.Error(), "no session") {
		t.Fatalf("grant without a session: %v", err)
	}

	// nostrconnect: accepted into the queue; no daemon runs, so it stays queued.
	appSK := nostr.GeneratePrivateKey()
	appPK, _ := nostr.GetPublicKey(appSK)
	uri := "nostrconnect://" + appPK + "?relay=" + url.QueryEscape("wss://app.example") + "&secret=abc&perms=" + url.QueryEscape("sign_psbt,nip44_decrypt") + "&name=" + url.QueryEscape("My\x1bApp") + "&url=" + url.QueryEscape("https://my.example")
	out, err = cli(t, "connect", "--wait", "0s", uri)
	if err != nil || !strings.Contains(out, "permissions: sign_psbt") || !strings.Contains(out, "queued") ||
		!strings.Contains(out, "note: client metadata ignored: name has control characters") {
		t.Fatalf("connect: %q %v", out, err)
	}
	if _, err := cli(t, "connect", "nostrconnect://"+appPK+"?relay=wss%3A%2F%2Fa"); err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("connect without secret: %v", err)
	}
	seen := time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)
	if err := db.RecordActivity(context.Background(), map[string]session.Activity{client: {Requests: 7, LastSeen: seen}}); err != nil {
		t.Fatal(err)
	}
	out, err = cli(t, "clients", "list")
	if err != nil || !strings.Contains(out, appPK) || !strings.Contains(out, "wss://app.example [pending]") || strings.Contains(out, "My?App") ||
		!strings.Contains(out, appPK[:16]+"…: client metadata ignored: name has control characters") ||
		!strings.Contains(out, "nip44_encrypt,sign_psbt") || !strings.Contains(out, "sign_psbt,nip44_decrypt") ||
		!strings.Contains(out, "WebApp") || !strings.Contains(out, "https://web.example") || !strings.Contains(out, "https://my.example") || !strings.Contains(out, "display hints") {
		t.Fatalf("list: %q %v", out, err)
	}
	var clientLine string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, client) {
			clientLine = l
		}
	}
	if f := strings.Fields(clientLine); len(f) < 2 || f[len(f)-1] != "7" || !strings.Contains(clientLine, "2030-01-02 03:04Z") {
		t.Fatalf("activity of %s: %q", client, clientLine)
	}
	if out, err := cli(t, "clients", "revoke", appPK); err != nil || !strings.Contains(out, "session ended") {
		t.Fatalf("revoke session: %q %v", out, err)
	}
	if out, _ := cli(t, "clients", "list"); strings.Contains(out, appPK) {
		t.Fatalf("revoked client still listed: %q", out)
	}
}

func TestInitUpgradeAndKeyFileMode(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	t.Setenv("COSIGNER_PASSPHRASE", "pw")
	if _, err := cli(t, "init"); err != nil {
		t.Fatal(err)
	}
	if out, err := cli(t, "init", "--upgrade"); err != nil || !strings.Contains(out, "already in the current format") {
		t.Fatalf("upgrade of a v2 file: %q %v", out, err)
	}
	os.Chmod(filepath.Join(dir, "key.json"), 0o640)
	if _, err := cli(t, "init", "--upgrade"); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable key file: %v", err)
	}
	if _, err := cli(t, "init", "--bogus"); err == nil {
		t.Fatal("unknown init flag accepted")
	}
}

func TestRequestClientKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "client.ncryptsec")
	sk, err := requestClientKey(path, "pw")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), sk) || !strings.HasPrefix(string(raw), "ncryptsec1") {
		t.Fatal("client key stored in clear")
	}
	if again, err := requestClientKey(path, "pw"); err != nil || again != sk {
		t.Fatalf("reload: %v", err)
	}
	if _, err := requestClientKey(path, "wrong"); err == nil {
		t.Fatal("wrong passphrase accepted")
	}
	if _, err := cli(t, "request", "bunker://x"); err == nil {
		t.Fatal("request without a method accepted")
	}
}

func TestPassphraseFromContainerSecret(t *testing.T) {
	old := containerSecret
	defer func() { containerSecret = old }()
	containerSecret = filepath.Join(t.TempDir(), "cosigner_passphrase")
	if _, err := (&Config{}).passphrase(); err == nil || !strings.Contains(err.Error(), containerSecret) {
		t.Fatalf("no secret anywhere: %v", err)
	}
	os.WriteFile(containerSecret, []byte("from-secret\n"), 0o400)
	if p, err := (&Config{}).passphrase(); err != nil || p != "from-secret" {
		t.Fatalf("container secret: %q %v", p, err)
	}
	if p, err := (&Config{Passphrase: "env"}).passphrase(); err != nil || p != "env" {
		t.Fatalf("the environment wins: %q %v", p, err)
	}
}

// A session stored before migration 0017 has only the metadata JSON as the client sent it:
// `clients list` shows it through the same validation (a javascript: url is dropped and noted).
func TestClientsListReadsOlderMetadata(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	t.Setenv("COSIGNER_PASSPHRASE", "pw")
	t.Setenv("COSIGNER_RELAYS", "ws://127.0.0.1:1")
	if _, err := cli(t, "init"); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(dir, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	client := strings.Repeat("e", 64)
	if err := db.AddConnectSecret(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.UseConnectSecret(ctx, "s", client, "", session.ClientInfo{}, func(string, bool) (string, error) { return "sign_psbt", nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := db.SQL.ExecContext(ctx, `UPDATE client_sessions SET metadata = ? WHERE client_pubkey = ?`,
		`{"name":"Legacy App","url":"javascript:alert(1)"}`, client); err != nil {
		t.Fatal(err)
	}
	out, err := cli(t, "clients", "list")
	if err != nil || !strings.Contains(out, "Legacy App") || strings.Contains(out, "javascript") ||
		!strings.Contains(out, client[:16]+"…: client metadata ignored: url is not an http:// or https:// URL") {
		t.Fatalf("list: %q %v", out, err)
	}
}
