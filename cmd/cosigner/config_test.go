package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigErrorsNameTheVariable(t *testing.T) {
	cases := []struct{ key, value, want string }{
		{"COSIGNER_NETWORK", "moon", "COSIGNER_NETWORK"},
		{"COSIGNER_LOOKAHEAD", "lots", "COSIGNER_LOOKAHEAD"},
		{"COSIGNER_LOOKAHEAD", "0", "COSIGNER_LOOKAHEAD"},
		{"COSIGNER_RELAY_QUORUM", "-1", "COSIGNER_RELAY_QUORUM"},
		{"COSIGNER_RELAY_QUORUM", "most", "COSIGNER_RELAY_QUORUM"},
		{"COSIGNER_LOG_LEVEL", "chatty", "COSIGNER_LOG_LEVEL"},
		{"COSIGNER_LOG_FORMAT", "xml", "COSIGNER_LOG_FORMAT"},
		{"COSIGNER_NOTIFY_NPUB", "npub1notanpub", "COSIGNER_NOTIFY_NPUB"},
		{"COSIGNER_PPROF_ADDR", "0.0.0.0:6060", "COSIGNER_PPROF_ADDR"},
		{"COSIGNER_PPROF_ADDR", ":6060", "COSIGNER_PPROF_ADDR"},
		{"COSIGNER_PPROF_ADDR", "6060", "COSIGNER_PPROF_ADDR"},
		{"COSIGNER_NOTIFY_NPUB", "44900586091b284416a0c001f677f9c49f7639a55c3f1e2ec130a8e1a7998e1b,bob", "COSIGNER_NOTIFY_NPUB"},
	}
	for _, c := range cases {
		t.Run(c.key+"="+c.value, func(t *testing.T) {
			t.Setenv(c.key, c.value)
			_, err := loadConfig()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("loadConfig error = %v, want it to name %s", err, c.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv("COSIGNER_DATA_DIR", "/d")
	t.Setenv("COSIGNER_RELAYS", " ws://a , ,ws://b")
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.KeyFile != "/d/key.json" || c.PolicyFile != "/d/policy.yaml" || c.Lookahead != 20 || c.ElectrumURL != "tcp://127.0.0.1:50001" ||
		strings.Join(c.Relays, "|") != "ws://a|ws://b" || c.PprofAddr != "" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestPassphraseSources(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "p")
	os.WriteFile(f, []byte("s3cret\nignored\n"), 0o600)
	c := &Config{PassphraseFile: f}
	if p, err := c.passphrase(); err != nil || p != "s3cret" {
		t.Fatalf("passphrase from file = %q, %v", p, err)
	}
	c.Passphrase = "x"
	if _, err := c.passphrase(); err == nil {
		t.Fatal("both sources set: want an error")
	}
	if _, err := (&Config{}).passphrase(); err == nil || !strings.Contains(err.Error(), "COSIGNER_PASSPHRASE_FILE") {
		t.Fatalf("no passphrase: %v", err)
	}
}

func TestInitBunkerURIAndPolicyCheck(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	t.Setenv("COSIGNER_PASSPHRASE", "pw")
	t.Setenv("COSIGNER_RELAYS", "ws://127.0.0.1:7001,ws://127.0.0.1:7002")
	ctx := context.Background()
	var out bytes.Buffer
	if err := runCommand(ctx, []string{"init"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "/48h/1h/0h/2h]tpub") || !strings.Contains(out.String(), "npub1") {
		t.Fatalf("init output:\n%s", out.String())
	}
	if err := runCommand(ctx, []string{"init"}, &out); err == nil {
		t.Fatal("second init overwrote the key file")
	}
	out.Reset()
	if err := runCommand(ctx, []string{"bunker-uri"}, &out); err != nil {
		t.Fatal(err)
	}
	if u := out.String(); !strings.HasPrefix(u, "bunker://") || strings.Count(u, "relay=") != 2 || !strings.Contains(u, "secret=") {
		t.Fatalf("bunker-uri printed %q", u)
	}
	pol := filepath.Join(dir, "p.yaml")
	os.WriteFile(pol, []byte("version: 1\nclients: []\nlimits:\n  max_per_tx: 1 BTC\n  daily: 2 BTC\n"), 0o600)
	err := runCommand(ctx, []string{"policy", "check", pol}, &out)
	if err == nil || !strings.Contains(err.Error(), "p.yaml:5:3: unknown key \"daily\"") {
		t.Fatalf("policy check error = %v", err)
	}
	if err := runCommand(ctx, []string{"frobnicate"}, &out); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("unknown command: %v", err)
	}
}

func TestConfigElectrumServersAndPins(t *testing.T) {
	fp := strings.Repeat("AB:", 31) + "AB"
	t.Setenv("COSIGNER_DATA_DIR", t.TempDir())
	t.Setenv("COSIGNER_ELECTRUM_URL", " ssl://e1.example:50002, tcp://127.0.0.1:50001 ,ssl://[::1]:50002")
	t.Setenv("COSIGNER_ELECTRUM_TLS_PINS", "e1.example:50002="+fp)
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.ElectrumServers, "|"); got != "ssl://e1.example:50002|tcp://127.0.0.1:50001|ssl://[::1]:50002" {
		t.Fatalf("servers = %s", got)
	}
	o, err := c.ElectrumTLS()
	if err != nil {
		t.Fatal(err)
	}
	if o.Fingerprints["e1.example:50002"] != strings.Repeat("ab", 32) || o.Pins == nil {
		t.Fatalf("tls options = %+v", o)
	}

	t.Setenv("COSIGNER_ELECTRUM_TLS_TOFU", "false")
	c, err = loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := c.ElectrumTLS(); o.Pins != nil {
		t.Fatal("trust on first use off, but a pin store is set")
	}
}

func TestConfigElectrumErrorsNameTheVariable(t *testing.T) {
	fp := strings.Repeat("ab", 32)
	cases := []struct{ url, pins, want string }{
		{"http://e.example:1", "", "COSIGNER_ELECTRUM_URL"},
		{"tcp://e.example", "", "COSIGNER_ELECTRUM_URL"},
		{" , ", "", "COSIGNER_ELECTRUM_URL is empty"},
		{"tcp://e.example:1,tcp://e.example:1", "", "listed twice"},
		{"ssl://e.example:2", "e.example:2", "host:port=fingerprint"},
		{"ssl://e.example:2", "e.example:2=abcd", "COSIGNER_ELECTRUM_TLS_PINS"},
		{"tcp://e.example:2", "e.example:2=" + fp, "not an ssl:// server"},
		{"ssl://e.example:2", "other.example:2=" + fp, "not an ssl:// server"},
		{"ssl://e.example:2", "e.example:2=" + fp + ",e.example:2=" + fp, "pinned twice"},
	}
	for _, c := range cases {
		t.Run(c.url+" "+c.pins, func(t *testing.T) {
			t.Setenv("COSIGNER_ELECTRUM_URL", c.url)
			t.Setenv("COSIGNER_ELECTRUM_TLS_PINS", c.pins)
			_, err := loadConfig()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("loadConfig error = %v, want it to contain %q", err, c.want)
			}
		})
	}
}

func TestConfigElectrumPinFileMustParse(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	os.WriteFile(filepath.Join(dir, "electrum-pins.json"), []byte("{not json"), 0o600)
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ElectrumTLS(); err == nil || !strings.Contains(err.Error(), "electrum-pins.json") {
		t.Fatalf("corrupt pin file: %v, want an error naming it", err)
	}
}
