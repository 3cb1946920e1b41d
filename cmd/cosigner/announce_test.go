package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/keystore"
)

func TestAnnounceCommand(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	t.Setenv("COSIGNER_PASSPHRASE", "pw")
	t.Setenv("COSIGNER_RELAYS", "ws://127.0.0.1:1,wss://relay.example")
	if _, err := cli(t, "init"); err != nil {
		t.Fatal(err)
	}
	pub, _, err := keystore.ReadPublic(dir + "/key.json")
	if err != nil {
		t.Fatal(err)
	}
	pk := pub.NostrPubKey

	out, err := cli(t, "announce", "--nostr-json", "--nip05", "Bob@co.example")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Names map[string]string          `json:"names"`
		NIP46 map[string]json.RawMessage `json:"nip46"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.Names["bob"] != pk {
		t.Fatalf("nostr.json: %s %v", out, err)
	}
	for _, k := range []string{"relays", pk} {
		var rs []string
		if err := json.Unmarshal(doc.NIP46[k], &rs); err != nil || strings.Join(rs, ",") != "ws://127.0.0.1:1,wss://relay.example" {
			t.Fatalf("nostr.json nip46.%s: %s", k, out)
		}
	}

	out, err = cli(t, "announce", "--dry-run", "--nip05", "bob@co.example", "--website", "https://co.example")
	if err != nil {
		t.Fatal(err)
	}
	var ev nostr.Event
	if err := json.Unmarshal([]byte(out), &ev); err != nil {
		t.Fatalf("dry run: %q %v", out, err)
	}
	if ok, _ := ev.CheckSignature(); !ok || ev.PubKey != pk || ev.Kind != 31990 || ev.Tags.GetFirst([]string{"k", "24133"}) == nil ||
		len(ev.Tags.GetAll([]string{"relay"})) != 2 || !strings.Contains(ev.Content, `"nip05":"bob@co.example"`) {
		t.Fatalf("dry run event: %s", out)
	}

	for _, bad := range [][]string{
		{"announce", "--picture", "javascript:alert(1)", "--dry-run"},
		{"announce", "--nip05", "not a name", "--nostr-json"},
		{"announce", "--nostrconnect-url", "https://co.example/no-placeholder", "--dry-run"},
		{"announce", "extra-arg"},
	} {
		if _, err := cli(t, bad...); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
