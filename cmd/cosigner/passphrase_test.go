package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPassphraseLeavesEnvironment (issue 11, finding 8): COSIGNER_PASSPHRASE is removed from
// the process environment once read; a command run again in the process still has it.
func TestPassphraseLeavesEnvironment(t *testing.T) {
	t.Setenv("COSIGNER_PASSPHRASE", "pw-env")
	for i := range 2 {
		c, err := loadConfig()
		if err != nil {
			t.Fatal(err)
		}
		if p, err := c.passphrase(); err != nil || p != "pw-env" {
			t.Fatalf("load %d: passphrase = %q, %v", i, p, err)
		}
		if _, ok := os.LookupEnv("COSIGNER_PASSPHRASE"); ok {
			t.Fatalf("load %d: COSIGNER_PASSPHRASE is still in the environment", i)
		}
		for _, kv := range os.Environ() {
			if strings.Contains(kv, "pw-env") {
				t.Fatal("the passphrase is still in os.Environ")
			}
		}
	}
}

// TestPassphraseFileMode (issue 11, finding 8): a passphrase file that group or others may
// read is refused, naming the file and the fix.
func TestPassphraseFileMode(t *testing.T) {
	f := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(f, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Config{PassphraseFile: f}
	if _, err := c.passphrase(); err == nil || !strings.Contains(err.Error(), f) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("group-readable passphrase file: %v", err)
	}
	os.Chmod(f, 0o600)
	if p, err := c.passphrase(); err != nil || p != "s3cret" {
		t.Fatalf("private passphrase file: %q, %v", p, err)
	}
}
