package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodyagents/cosigner/store"
)

// TestEveryCommandAnswersHelp: `cosigner COMMAND --help` (and -h, and `cosigner help COMMAND`)
// prints the command's usage on stdout and returns no error, for every command, without reading
// the configuration (COSIGNER_NETWORK is invalid here) and without running it (`run --help`
// would otherwise start the daemon; `policy check --help` would open a file named --help).
func TestEveryCommandAnswersHelp(t *testing.T) {
	t.Setenv("COSIGNER_NETWORK", "not-a-network")
	t.Setenv("COSIGNER_DATA_DIR", t.TempDir())
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "--help"}, {c.name, "-h"}, {"help", c.name}} {
			var out bytes.Buffer
			if err := runCommand(context.Background(), args, &out); err != nil {
				t.Errorf("%q: %v", args, err)
				continue
			}
			if !strings.Contains(out.String(), "usage: cosigner "+c.name) {
				t.Errorf("%q printed %q", args, out.String())
			}
		}
	}
	for _, args := range [][]string{{"policy", "check", "--help"}, {"clients", "grant", "-h"}, {"proposals", "show", "--help"}} {
		var out bytes.Buffer
		if err := runCommand(context.Background(), args, &out); err != nil || !strings.Contains(out.String(), "usage: cosigner "+args[0]) {
			t.Errorf("%q: %v %q", args, err, out.String())
		}
	}
	var out bytes.Buffer
	if err := runCommand(context.Background(), []string{"--help"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, c := range commands {
		if !strings.Contains(out.String(), c.usage) {
			t.Errorf("cosigner --help lacks %q", c.usage)
		}
	}
}

// TestUnexpectedArgumentsRefused: commands that take no arguments refuse them with a usage error
// (exit 2) instead of ignoring them.
func TestUnexpectedArgumentsRefused(t *testing.T) {
	t.Setenv("COSIGNER_DATA_DIR", t.TempDir())
	for _, args := range [][]string{{"run", "extra"}, {"status", "extra"}, {"status", "--jsn"}, {"health", "x"}, {"config", "x"},
		{"version", "x"}, {"init", "x"}, {"audit", "x"}, {"audit", "--limit", "0"}, {"bunker-uri", "x"}} {
		err := runCommand(context.Background(), args, &bytes.Buffer{})
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%q: want a usage error, got %v", args, err)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var out bytes.Buffer
		if err := runCommand(context.Background(), args, &out); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), "cosigner ") || !strings.Contains(out.String(), "go1.") {
			t.Errorf("%q printed %q", args, out.String())
		}
	}
}

// TestConfigMasksSecrets: `cosigner config` lists every variable with its default, meaning and
// effective value; the passphrase is masked.
func TestConfigMasksSecrets(t *testing.T) {
	t.Setenv("COSIGNER_DATA_DIR", t.TempDir())
	t.Setenv("COSIGNER_PASSPHRASE", "correct horse battery staple")
	t.Setenv("COSIGNER_LOOKAHEAD", "33")
	var out bytes.Buffer
	if err := runCommand(context.Background(), []string{"config"}, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	if strings.Contains(text, "correct horse") {
		t.Fatalf("the passphrase reached the output:\n%s", text)
	}
	for _, want := range []string{"COSIGNER_PASSPHRASE=(set, masked)", "COSIGNER_LOOKAHEAD=33", "default 20; from the environment",
		"COSIGNER_NETWORK=regtest", "unused scripts watched past the last used one"} {
		if !strings.Contains(text, want) {
			t.Errorf("config output lacks %q", want)
		}
	}
	out.Reset()
	if err := runCommand(context.Background(), []string{"config", "--json"}, &out); err != nil {
		t.Fatal(err)
	}
	var vars []configVar
	if err := json.Unmarshal(out.Bytes(), &vars); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range vars {
		if v.Description == "" {
			t.Errorf("%s has no description", v.Variable)
		}
		if strings.Contains(v.Value, "correct horse") {
			t.Errorf("%s leaks the passphrase", v.Variable)
		}
		n++
	}
	if n < 15 {
		t.Errorf("only %d variables listed", n)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"36h":                  now.Add(-36 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
		"2026-12-01":           time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC),
		"2026-12-01T10:00:00Z": time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"yesterday", "-3h", "7x"} {
		if _, err := parseSince(bad, now); err == nil {
			t.Errorf("parseSince(%q): want an error", bad)
		}
	}
}

// TestAudit writes decisions into a database and reads them back with `cosigner audit`.
func TestAudit(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("COSIGNER_DATA_DIR", dir)
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(dir, "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	old := store.AuditEntry{At: time.Now().Add(-48 * time.Hour), Client: strings.Repeat("a", 64), RequestID: "r-old", Method: "sign_psbt", Decision: "signed", OutflowSat: 1000}
	recent := store.AuditEntry{At: time.Now().Add(-time.Hour), Client: strings.Repeat("b", 64), RequestID: "r-new", Method: "sign_psbt", Decision: "denied",
		Rule: "max_per_tx", Reason: "policy_denied: max_per_tx: 1.5 BTC > 1 BTC", OutflowSat: 150_000_000, Analysis: `{"inputs":1}`}
	for _, a := range []store.AuditEntry{old, recent} {
		if err := db.AppendDecisionAudit(ctx, a, "hash", `[{"rule":"max_per_tx"}]`); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	var out bytes.Buffer
	if err := runCommand(ctx, []string{"audit"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "r-old") || !strings.Contains(out.String(), "max_per_tx") || strings.Index(out.String(), "r-old") > strings.Index(out.String(), "r-new") {
		t.Fatalf("audit (oldest first):\n%s", out.String())
	}
	out.Reset()
	if err := runCommand(ctx, []string{"audit", "--since", "24h", "--json"}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("--since 24h: %d entries:\n%s", len(lines), out.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	if got["request_id"] != "r-new" || got["outflow_sat"].(float64) != 150_000_000 || got["analysis"].(map[string]any)["inputs"].(float64) != 1 {
		t.Fatalf("entry %v", got)
	}
}

// TestBunkerURIQR draws the URI as a QR code and still prints the URI itself.
func TestBunkerURIQR(t *testing.T) {
	t.Setenv("COSIGNER_DATA_DIR", t.TempDir())
	t.Setenv("COSIGNER_PASSPHRASE", "pw")
	t.Setenv("COSIGNER_RELAYS", "ws://127.0.0.1:7001")
	ctx := context.Background()
	if err := runCommand(ctx, []string{"init"}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runCommand(ctx, []string{"bunker-uri", "--qr"}, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "bunker://") {
		t.Fatalf("last line %q", last)
	}
	if len(lines) < 20 || !strings.ContainsAny(out.String(), "▀▄█") {
		t.Fatalf("no QR code drawn:\n%s", out.String())
	}
}
