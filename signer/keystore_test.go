package signer

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
)

func TestKeyFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.json")
	net := &chaincfg.RegressionNetParams
	pub, err := CreateKeyFile(path, "correct horse", net)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(pub.AccountXPub, "tpub") || pub.OriginPath != "48h/1h/0h/2h" || len(pub.Fingerprint) != 8 {
		t.Fatalf("public info = %+v", pub)
	}
	raw, _ := os.ReadFile(path)
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	keys, err := LoadKeyFile(path, "correct horse", net)
	if err != nil {
		t.Fatal(err)
	}
	if keys.Public != pub {
		t.Fatalf("loaded %+v, created %+v", keys.Public, pub)
	}
	if strings.Contains(string(raw), keys.NostrSecretKey()) {
		t.Fatal("Nostr secret key is stored in clear")
	}
	if strings.Contains(keys.String(), keys.NostrSecretKey()) {
		t.Fatal("Keys.String leaks the secret")
	}
	if _, err := LoadKeyFile(path, "wrong", net); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("wrong passphrase: err = %v", err)
	}
	if _, err := LoadKeyFile(path, "correct horse", &chaincfg.MainNetParams); err == nil {
		t.Fatal("key file for regtest loaded as mainnet")
	}
	if _, err := CreateKeyFile(path, "x", net); !errors.Is(err, ErrKeyFileExists) {
		t.Fatalf("overwrite: err = %v", err)
	}
	if _, err := CreateKeyFile(filepath.Join(t.TempDir(), "k"), "", net); !errors.Is(err, ErrNoPassphrase) {
		t.Fatalf("empty passphrase: err = %v", err)
	}
}
