package keystore

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/bech32"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/nbd-wtf/go-nostr"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/scrypt"
)

func TestMain(m *testing.M) {
	// Cheap KDF parameters for tests; TestKeyFileProductionParams checks the real ones once.
	scryptN, nostrLogN, minNcryptsecLogN = 1<<10, 10, 10
	os.Exit(m.Run())
}

func TestKeyFileProductionParams(t *testing.T) {
	n, l, m := scryptN, nostrLogN, minNcryptsecLogN
	scryptN, nostrLogN, minNcryptsecLogN = 1<<16, 16, 16
	defer func() { scryptN, nostrLogN, minNcryptsecLogN = n, l, m }()
	path := filepath.Join(t.TempDir(), "key.json")
	if _, err := CreateKeyFile(path, "pw", &chaincfg.RegressionNetParams); err != nil {
		t.Fatal(err)
	}
	_, kf, _ := ReadPublic(path)
	prefix, data5, _ := bech32.DecodeNoLimit(kf.NostrNcryptsec)
	data, _ := bech32.ConvertBits(data5, 5, 8, false)
	if kf.N != 1<<16 || kf.R != 8 || kf.P != 1 || prefix != "ncryptsec" || data[1] != 16 {
		t.Fatalf("scrypt N=%d r=%d p=%d, ncryptsec log2(N)=%d", kf.N, kf.R, kf.P, data[1])
	}
}

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

func TestKeyFileV2HoldsNcryptsec(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.json")
	net := &chaincfg.RegressionNetParams
	if _, err := CreateKeyFile(path, "pw", net); err != nil {
		t.Fatal(err)
	}
	_, kf, err := ReadPublic(path)
	if err != nil {
		t.Fatal(err)
	}
	if kf.Version != 2 || !strings.HasPrefix(kf.NostrNcryptsec, "ncryptsec1") || kf.N != scryptN {
		t.Fatalf("key file v%d, ncryptsec %q, N %d", kf.Version, kf.NostrNcryptsec[:12], kf.N)
	}
	keys, err := LoadKeyFile(path, "pw", net)
	if err != nil {
		t.Fatal(err)
	}
	// The ncryptsec is a standard NIP-49 one: any NIP-49 implementation opens it.
	if sk, err := DecryptNcryptsec(kf.NostrNcryptsec, "pw"); err != nil || sk != keys.NostrSecretKey() {
		t.Fatalf("ncryptsec: %v", err)
	}
	// Too-open modes are refused before anything is decrypted.
	os.Chmod(path, 0o644)
	if _, err := LoadKeyFile(path, "pw", net); !errors.Is(err, ErrKeyFileMode) {
		t.Fatalf("mode 0644: %v", err)
	}
	os.Chmod(path, 0o600)
	if _, err := LoadKeyFile(path, "pw", net); err != nil {
		t.Fatal(err)
	}
}

// The NIP-49 spec's own example ("Test Data"): https://github.com/nostr-protocol/nips/blob/master/49.md
func TestNcryptsecSpecVector(t *testing.T) { // log2(N) = 16
	const ncryptsec = "ncryptsec1qgg9947rlpvqu76pj5ecreduf9jxhselq2nae2kghhvd5g7dgjtcxfqtd67p9m0w57lspw8gsq6yphnm8623nsl8xn9j4jdzz84zm3frztj3z7s35vpzmqf6ksu8r89qk5z2zxfmu5gv8th8wclt0h4p"
	sk, err := DecryptNcryptsec(ncryptsec, "nostr")
	if err != nil || sk != "3501454135014541350145413501453fefb02227e449e57cf4d3a3ce05378683" {
		t.Fatalf("spec vector: %q %v", sk, err)
	}
}

func TestNcryptsecHostileInput(t *testing.T) {
	short, _ := bech32.ConvertBits([]byte{0x02, 16, 1, 2, 3}, 8, 5, true)
	shortEnc, _ := bech32.Encode("ncryptsec", short)
	huge := make([]byte, 91)
	huge[0], huge[1] = 0x02, 64 // log2(N) = 64 would never finish
	hugeBits, _ := bech32.ConvertBits(huge, 8, 5, true)
	hugeEnc, _ := bech32.Encode("ncryptsec", hugeBits)
	for _, in := range []string{"", "nsec1xyz", "ncryptsec1qqqq", shortEnc, hugeEnc} {
		if _, err := DecryptNcryptsec(in, "pw"); err == nil {
			t.Errorf("accepted %q", in)
		} else if in != "" && strings.Contains(err.Error(), in) {
			t.Errorf("error echoes the input: %v", err)
		}
	}
}

// writeV1 writes a key file in the old (version 1) format: both secrets in one scrypt box.
func writeV1(t *testing.T, path, pass string, net *chaincfg.Params) *Keys {
	t.Helper()
	seed := make([]byte, 32)
	seed[0] = 7
	keys, err := NewKeys(seed, nostr.GeneratePrivateKey(), net)
	if err != nil {
		t.Fatal(err)
	}
	salt, nonce := make([]byte, 16), make([]byte, 24)
	dk, _ := scrypt.Key([]byte(pass), salt, 1<<10, 8, 1, 32)
	aead, _ := chacha20poly1305.NewX(dk)
	plain, _ := json.Marshal(secretPayload{Seed: hex.EncodeToString(seed), NostrSK: keys.NostrSecretKey()})
	kf := &KeyFile{Version: 1, Network: net.Name, KDF: "scrypt", N: 1 << 10, R: 8, P: 1, Salt: salt, Nonce: nonce,
		Ciphertext: aead.Seal(nil, nonce, plain, []byte(net.Name)), Public: keys.Public}
	if err := writeKeyFile(path, kf, false); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestKeyFileV1RefusedThenUpgraded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "key.json")
	net := &chaincfg.RegressionNetParams
	want := writeV1(t, path, "pw", net)
	if _, err := LoadKeyFile(path, "pw", net); !errors.Is(err, ErrOldKeyFile) {
		t.Fatalf("v1 file: %v", err)
	}
	if _, err := UpgradeKeyFile(path, "wrong", net); !errors.Is(err, ErrBadPassphrase) {
		t.Fatalf("upgrade with a wrong passphrase: %v", err)
	}
	if _, kf, _ := ReadPublic(path); kf.Version != 1 {
		t.Fatal("failed upgrade changed the file")
	}
	if up, err := UpgradeKeyFile(path, "pw", net); err != nil || !up {
		t.Fatalf("upgrade: %v %v", up, err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("upgraded file mode %v", st.Mode().Perm())
	}
	got, err := LoadKeyFile(path, "pw", net)
	if err != nil || got.Public != want.Public || got.NostrSecretKey() != want.NostrSecretKey() {
		t.Fatalf("after upgrade: %v", err)
	}
	if up, err := UpgradeKeyFile(path, "pw", net); err != nil || up {
		t.Fatalf("second upgrade: %v %v", up, err)
	}
}

func FuzzDecryptNcryptsec(f *testing.F) {
	f.Add("ncryptsec1qgg9947rlpvqu76pj5ecreduf9jxhselq2nae2kghhvd5g7dgjtcxfqtd67p9m0w57lspw8gsq6yphnm8623nsl8xn9j4jdzz84zm3frztj3z7s35vpzmqf6ksu8r89qk5z2zxfmu5gv8th8wclt0h4p")
	f.Add("ncryptsec1qqqq")
	f.Add("nsec1")
	f.Fuzz(func(t *testing.T, s string) {
		sk, err := DecryptNcryptsec(s, "pw")
		if err == nil && len(sk) != 64 {
			t.Fatalf("accepted %q giving %q", s, sk)
		}
	})
}
