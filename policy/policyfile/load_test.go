package policyfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Test fixtures shared with package policy's tests (a client's and a co-signer's pubkeys, a
// bunker URI quoted for YAML flow lists, a regtest address).
const (
	pkA     = "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798"
	pkB     = "c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5"
	bunkerB = "bunker://" + pkB + "?relay=wss://relay.example.com&secret=b-secret"
	qB      = `"` + bunkerB + `"`
	addrX   = "bcrt1qqvpsxqcrqvpsxqcrqvpsxqcrqvpsxqcruj60yu"
)

// TestExamplesLoad: every commented example policy in examples/ loads.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../../examples/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestReadFileBounds: a file over MaxFileBytes is refused with ErrTooLarge naming the file; one
// of exactly MaxFileBytes is read; a missing file is an I/O error.
func TestReadFileBounds(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), big) {
		t.Fatalf("Load(%d bytes) = %v, want ErrTooLarge naming the file", MaxFileBytes+1, err)
	}
	edge := filepath.Join(dir, "edge.yaml")
	if err := os.WriteFile(edge, make([]byte, MaxFileBytes), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadFile(edge); err != nil || len(b) != MaxFileBytes {
		t.Fatalf("ReadFile(%d bytes) = %d bytes, %v", MaxFileBytes, len(b), err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}
