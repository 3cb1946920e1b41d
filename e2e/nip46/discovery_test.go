package nip46e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/nip46"
)

// TestDiscoveryNIP89 publishes the remote signer's NIP-89 handler event with `cosigner announce`
// on the network's relays, reads it back from them, and has nostr-tools discover the bunker the
// way apps do (fetchBunkerProviders: kind 31990 with #k 24133, then the content's nip05 checked
// against the nostr.json that `cosigner announce --nostr-json` prints, served through
// nostr-tools' fetch hook): the pubkey is cosigner's, the relays are COSIGNER_RELAYS.
func TestDiscoveryNIP89(t *testing.T) {
	env := setup(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := env.Cosigner(ctx, "announce", "--nip05", "_@cosigner.test", "--website", "https://cosigner.test", "--timeout", "20s")
	if err != nil {
		t.Fatalf("announce: %v\n%s", err, out)
	}
	for _, u := range env.Net.RelayURLs() {
		if !strings.Contains(out, u+": ok") && !strings.Contains(out, u+"/: ok") {
			t.Fatalf("relay %s did not accept the announcement:\n%s", u, out)
		}
	}
	doc, err := env.Cosigner(ctx, "announce", "--nostr-json", "--nip05", "_@cosigner.test")
	if err != nil {
		t.Fatal(err)
	}
	args := []string{filepath.Join("e2e", "clients", "nip46_discover.mjs"), "--nostr-json", writeFile(t, "nostr.json", doc)}
	for _, u := range env.Net.RelayURLs() {
		args = append(args, "--relay", u)
	}
	cmd := exec.CommandContext(ctx, "node", args...)
	cmd.Dir = env.Root
	var stderr strings.Builder
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("nip46_discover.mjs: %v\n%s", err, stderr.String())
	}
	var res struct {
		Providers []struct {
			PubKey string   `json:"pubkey"`
			Relays []string `json:"relays"`
			NIP05  string   `json:"nip05"`
			Name   string   `json:"name"`
		} `json:"providers"`
		Events []nostr.Event `json:"events"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("discover output %q: %v", raw, err)
	}
	t.Run("event read back", func(t *testing.T) {
		var ours []nostr.Event
		for _, ev := range res.Events {
			if ev.PubKey == env.KeyA.NostrPubKey {
				ours = append(ours, ev)
			}
		}
		if len(ours) == 0 {
			t.Fatalf("no kind-31990 event by %s on the relays: %+v", env.KeyA.NostrPubKey, res.Events)
		}
		ev := ours[0]
		if ok, err := ev.CheckSignature(); !ok || err != nil || ev.Kind != nip46.KindHandlerInformation ||
			ev.Tags.GetFirst([]string{"k", "24133"}) == nil || ev.Tags.GetFirst([]string{"d", nip46.AnnouncementDTag}) == nil {
			t.Fatalf("announcement %+v (signature %v %v)", ev, ok, err)
		}
		var tagged []string
		for _, tg := range ev.Tags.GetAll([]string{"relay"}) {
			tagged = append(tagged, tg.Value())
		}
		for _, u := range env.Net.RelayURLs() {
			if !slices.Contains(tagged, u) {
				t.Fatalf("relay tags %v lack %s", tagged, u)
			}
		}
	})
	t.Run("nostr-tools fetchBunkerProviders", func(t *testing.T) {
		for _, p := range res.Providers {
			if p.PubKey != env.KeyA.NostrPubKey {
				continue
			}
			if p.NIP05 != "_@cosigner.test" || p.Name != "cosigner" {
				t.Fatalf("provider %+v", p)
			}
			for _, u := range env.Net.RelayURLs() {
				if !slices.Contains(p.Relays, u) {
					t.Fatalf("discovered relays %v lack %s", p.Relays, u)
				}
			}
			return
		}
		t.Fatalf("nostr-tools did not discover the bunker: %+v", res.Providers)
	})
}
