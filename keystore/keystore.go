package keystore

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/bech32"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"
	"github.com/nbd-wtf/go-nostr/nip49"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/scrypt"

	"github.com/custodyagents/cosigner/descriptor"
)

// scrypt parameters for the seed in the key file (N=2^16, r=8, p=1: 64 MiB and a few hundred
// ms per unlock; files record their own parameters). The Nostr key is a NIP-49 ncryptsec with
// log2(N) = nostrLogN.
var (
	// Variables only so that tests can make them cheap; production uses these values.
	scryptN                = 1 << 16
	nostrLogN        uint8 = 16
	minNcryptsecLogN       = 16
)

const (
	scryptR      = 8
	scryptP      = 1
	keyFileV1    = 1 // seed and Nostr key in one scrypt + XChaCha20-Poly1305 box
	keyFileV2    = 2 // seed in that box, Nostr key as NIP-49 ncryptsec
	seedLen      = 32
	hardened     = hdkeychain.HardenedKeyStart
	bip48P2WSH   = 2 // BIP48 script type 2' = native segwit multisig (P2WSH)
	bip48Purpose = 48
)

// KeyFile is the on-disk JSON form (mode 0600). Public fields are in clear so that
// `cosigner bunker-uri` and `cosigner init`'s summary need no passphrase. Version 2: the BIP32
// seed is in Ciphertext (scrypt N,R,P over the passphrase and Salt → XChaCha20-Poly1305 key,
// Nonce, the network name as associated data); the Nostr secret key is NostrNcryptsec (NIP-49,
// same passphrase). Version 1 files (both secrets in Ciphertext) are refused with ErrOldKeyFile
// until UpgradeKeyFile rewrites them.
type KeyFile struct {
	Version        int    `json:"version"`
	Network        string `json:"network"`
	KDF            string `json:"kdf"` // "scrypt"
	N, R, P        int
	Salt           []byte     `json:"salt"`
	Nonce          []byte     `json:"nonce"`
	Ciphertext     []byte     `json:"ciphertext"`
	NostrNcryptsec string     `json:"nostr_ncryptsec,omitempty"`
	Public         PublicInfo `json:"public"`
}

// PublicInfo is what a key file tells without its passphrase.
type PublicInfo struct {
	// Fingerprint is the BIP32 master key fingerprint, 8 hex characters.
	Fingerprint string `json:"fingerprint"`
	// OriginPath is the account path in descriptor notation without "m/", e.g. "48h/1h/0h/2h".
	OriginPath string `json:"origin_path"`
	// AccountXPub is the account extended public key (tpub… on test networks).
	AccountXPub string `json:"account_xpub"`
	// NostrPubKey is the remote-signer (and user) pubkey, 64 hex characters.
	NostrPubKey string `json:"nostr_pubkey"`
}

// KeyOrigin returns "[fingerprint/origin]xpub", the key expression for a descriptor (BIP-380).
func (p PublicInfo) KeyOrigin() string {
	return "[" + p.Fingerprint + "/" + p.OriginPath + "]" + p.AccountXPub
}

// NPub returns the Nostr pubkey in NIP-19 form.
func (p PublicInfo) NPub() string {
	npub, err := nip19.EncodePublicKey(p.NostrPubKey)
	if err != nil {
		return p.NostrPubKey
	}
	return npub
}

type secretPayload struct {
	Seed    string `json:"seed"`               // BIP32 seed, hex
	NostrSK string `json:"nostr_sk,omitempty"` // hex; version 1 only (version 2: NostrNcryptsec)
}

// Keys are the decrypted keys of one co-signer. Never log or print them.
type Keys struct {
	Public   PublicInfo
	Params   *chaincfg.Params
	account  *hdkeychain.ExtendedKey // private account key at OriginPath
	masterFP [4]byte
	path     []uint32
	nostrSK  string
	seed     []byte
	// cache holds the key pairs SigningKey derived (cache.go: bounds and safety argument).
	cache *keyCache
}

// String hides the secrets from fmt and slog.
func (k *Keys) String() string { return "keystore.Keys{" + k.Public.KeyOrigin() + "}" }

// NostrSecretKey returns the Nostr identity secret key (hex) for signing events and NIP-44.
func (k *Keys) NostrSecretKey() string { return k.nostrSK }

// MasterFingerprint is the BIP32 fingerprint of the master key, as in PSBT BIP32 derivations.
func (k *Keys) MasterFingerprint() [4]byte { return k.masterFP }

// AccountPath is the full account path from the master key (hardened steps flagged).
func (k *Keys) AccountPath() []uint32 { return append([]uint32(nil), k.path...) }

// AccountXPub is the account's extended public key at AccountPath (Public.AccountXPub).
func (k *Keys) AccountXPub() string { return k.Public.AccountXPub }

// KeyOrigin is the key with its origin, "[fingerprint/path]xpub" (Public.KeyOrigin).
func (k *Keys) KeyOrigin() string { return k.Public.KeyOrigin() }

// DeriveRelative returns the private key at AccountPath/steps… (all unhardened), for signing an
// input whose script was derived from the registered descriptor (steps = the branch's steps and
// the index); the caller's own copy, served from the derived-key cache after the first time
// (SigningKey, cache.go). Errors: ErrNotOurKey for a hardened step.
func (k *Keys) DeriveRelative(steps ...uint32) (*btcec.PrivateKey, error) {
	priv, _, err := k.SigningKey(steps...)
	return priv, err
}

// AccountPathFor returns the BIP48 account path m/48'/coin'/0'/2' for net (coin 0 on mainnet,
// 1 on every test network).
func AccountPathFor(net *chaincfg.Params) []uint32 {
	coin := uint32(1)
	if net.Net == chaincfg.MainNetParams.Net {
		coin = 0
	}
	return []uint32{bip48Purpose + hardened, coin + hardened, 0 + hardened, bip48P2WSH + hardened}
}

// CreateKeyFile generates a fresh BIP32 seed and Nostr secret key from crypto/rand, encrypts them
// under passphrase, and writes path (mode 0600, never overwriting). It returns the public info.
// Errors: ErrKeyFileExists, ErrNoPassphrase, or I/O errors.
func CreateKeyFile(path, passphrase string, net *chaincfg.Params) (PublicInfo, error) {
	if passphrase == "" {
		return PublicInfo{}, ErrNoPassphrase
	}
	if _, err := os.Stat(path); err == nil {
		return PublicInfo{}, fmt.Errorf("%w: %s", ErrKeyFileExists, path)
	}
	seed, err := hdkeychain.GenerateSeed(seedLen)
	if err != nil {
		return PublicInfo{}, fmt.Errorf("keystore: generate seed: %w", err)
	}
	payload := secretPayload{Seed: hex.EncodeToString(seed), NostrSK: nostr.GeneratePrivateKey()}
	keys, err := keysFrom(payload, net)
	if err != nil {
		return PublicInfo{}, err
	}
	kf, err := seal(payload, passphrase, net, keys.Public)
	if err != nil {
		return PublicInfo{}, err
	}
	if err := writeKeyFile(path, kf, false); err != nil {
		return PublicInfo{}, err
	}
	return keys.Public, nil
}

// writeKeyFile writes kf to path with mode 0600: a new file (O_EXCL) or, with replace, a
// temporary file renamed over path after fsync.
func writeKeyFile(path string, kf *KeyFile, replace bool) error {
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return err
	}
	target := path
	if replace {
		target = path + ".new"
		_ = os.Remove(target)
	}
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%w: %s", ErrKeyFileExists, path)
		}
		return fmt.Errorf("keystore: write key file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("keystore: write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("keystore: write key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("keystore: write key file: %w", err)
	}
	if replace {
		if err := os.Rename(target, path); err != nil {
			return fmt.Errorf("keystore: replace key file: %w", err)
		}
	}
	return nil
}

// ReadPublic reads a key file's public half without decrypting it.
func ReadPublic(path string) (PublicInfo, *KeyFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PublicInfo{}, nil, fmt.Errorf("keystore: read key file: %w", err)
	}
	var kf KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return PublicInfo{}, nil, fmt.Errorf("keystore: key file %s is not valid JSON: %w", path, err)
	}
	if (kf.Version != keyFileV1 && kf.Version != keyFileV2) || kf.KDF != "scrypt" {
		return PublicInfo{}, nil, fmt.Errorf("keystore: key file %s: unsupported version %d / kdf %q", path, kf.Version, kf.KDF)
	}
	return kf.Public, &kf, nil
}

// LoadKeyFile decrypts the key file at path. The file must be mode 0600 (or stricter) and for
// network net. Errors: ErrKeyFileMode, ErrOldKeyFile (version 1: run `cosigner init --upgrade`),
// ErrBadPassphrase, a network mismatch, or I/O and format errors. No error carries a secret.
func LoadKeyFile(path, passphrase string, net *chaincfg.Params) (*Keys, error) {
	if err := checkKeyFileMode(path); err != nil {
		return nil, err
	}
	_, kf, err := ReadPublic(path)
	if err != nil {
		return nil, err
	}
	if kf.Version == keyFileV1 {
		return nil, fmt.Errorf("%w: %s is version 1; run `cosigner init --upgrade` to rewrite it (the Nostr key becomes a NIP-49 ncryptsec)", ErrOldKeyFile, path)
	}
	return openKeyFile(path, kf, passphrase, net)
}

// checkKeyFileMode refuses a key file that group or others may read or write.
func checkKeyFileMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("keystore: read key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w: %s has mode %04o; run `chmod 600 %s`", ErrKeyFileMode, path, st.Mode().Perm(), path)
	}
	return nil
}

// openKeyFile decrypts a version 1 or 2 key file.
func openKeyFile(path string, kf *KeyFile, passphrase string, net *chaincfg.Params) (*Keys, error) {
	if kf.Network != net.Name {
		return nil, fmt.Errorf("keystore: key file %s is for network %q, not %q", path, kf.Network, net.Name)
	}
	if kf.N < 2 || kf.N > 1<<22 || kf.R < 1 || kf.R > 32 || kf.P < 1 || kf.P > 16 {
		return nil, fmt.Errorf("keystore: key file %s: scrypt parameters out of range", path)
	}
	dk, err := scrypt.Key([]byte(passphrase), kf.Salt, kf.N, kf.R, kf.P, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("keystore: key file %s: scrypt parameters: %v", path, err)
	}
	aead, err := chacha20poly1305.NewX(dk)
	if err != nil {
		return nil, err
	}
	if len(kf.Nonce) != aead.NonceSize() {
		return nil, ErrBadPassphrase
	}
	plain, err := aead.Open(nil, kf.Nonce, kf.Ciphertext, []byte(kf.Network))
	if err != nil {
		return nil, ErrBadPassphrase
	}
	var payload secretPayload
	if err := json.Unmarshal(plain, &payload); err != nil {
		return nil, ErrBadPassphrase
	}
	if kf.Version == keyFileV2 {
		if payload.NostrSK != "" {
			return nil, fmt.Errorf("keystore: key file %s: version 2 with the Nostr key in the seed box", path)
		}
		if payload.NostrSK, err = DecryptNcryptsec(kf.NostrNcryptsec, passphrase); err != nil {
			return nil, fmt.Errorf("keystore: key file %s: nostr_ncryptsec: %w", path, err)
		}
	}
	keys, err := keysFrom(payload, net)
	if err != nil {
		return nil, err
	}
	if keys.Public != kf.Public {
		return nil, fmt.Errorf("keystore: key file %s: public part does not match its secret part", path)
	}
	return keys, nil
}

// UpgradeKeyFile rewrites a version 1 key file at path as version 2 (the Nostr key as a NIP-49
// ncryptsec, the seed re-encrypted with a fresh salt and nonce), replacing it atomically with
// mode 0600. A version 2 file is left alone (upgraded = false). Errors: as LoadKeyFile.
func UpgradeKeyFile(path, passphrase string, net *chaincfg.Params) (upgraded bool, err error) {
	if err := checkKeyFileMode(path); err != nil {
		return false, err
	}
	_, kf, err := ReadPublic(path)
	if err != nil {
		return false, err
	}
	if kf.Version != keyFileV1 {
		return false, nil
	}
	keys, err := openKeyFile(path, kf, passphrase, net)
	if err != nil {
		return false, err
	}
	payload := secretPayload{Seed: hex.EncodeToString(keys.seed), NostrSK: keys.nostrSK}
	nkf, err := seal(payload, passphrase, net, keys.Public)
	if err != nil {
		return false, err
	}
	return true, writeKeyFile(path, nkf, true)
}

// EncryptNcryptsec encrypts a Nostr secret key (hex) as a NIP-49 ncryptsec (log2(N) = 16,
// key security byte 0x01: not known to have been handled insecurely).
func EncryptNcryptsec(sk, passphrase string) (string, error) {
	if passphrase == "" {
		return "", ErrNoPassphrase
	}
	out, err := nip49.Encrypt(sk, passphrase, nostrLogN, nip49.NotKnownToHaveBeenHandledInsecurely)
	if err != nil {
		return "", errors.New("keystore: cannot encrypt the Nostr key (malformed key)")
	}
	return out, nil
}

// DecryptNcryptsec decrypts a NIP-49 ncryptsec to the secret key (hex). It checks the shape
// (version 0x02, 91 bytes, log2(N) 16..22) before running scrypt, so a hostile file can neither
// crash the process nor make it allocate without bound. Errors: ErrBadPassphrase, or a format
// error that does not include the input.
func DecryptNcryptsec(ncryptsec, passphrase string) (string, error) {
	prefix, data5, err := bech32.DecodeNoLimit(ncryptsec)
	if err != nil || prefix != "ncryptsec" {
		return "", errors.New("not an ncryptsec (NIP-49 bech32)")
	}
	data, err := bech32.ConvertBits(data5, 5, 8, false)
	if err != nil || len(data) != 91 || data[0] != 0x02 {
		return "", errors.New("ncryptsec is not NIP-49 version 2 (91 bytes)")
	}
	if logN := int(data[1]); logN < minNcryptsecLogN || logN > 22 {
		return "", fmt.Errorf("ncryptsec log2(N) = %d is outside 16..22", logN)
	}
	sk, err := nip49.Decrypt(ncryptsec, passphrase)
	if err != nil {
		return "", ErrBadPassphrase
	}
	if _, err := nostr.GetPublicKey(sk); err != nil {
		return "", ErrBadPassphrase
	}
	return sk, nil
}

func seal(payload secretPayload, passphrase string, net *chaincfg.Params, pub PublicInfo) (*KeyFile, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	dk, err := scrypt.Key([]byte(passphrase), salt, scryptN, scryptR, scryptP, chacha20poly1305.KeySize)
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(dk)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	ncryptsec, err := EncryptNcryptsec(payload.NostrSK, passphrase)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(secretPayload{Seed: payload.Seed})
	if err != nil {
		return nil, err
	}
	return &KeyFile{
		Version: keyFileV2, Network: net.Name, KDF: "scrypt", N: scryptN, R: scryptR, P: scryptP,
		Salt: salt, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plain, []byte(net.Name)),
		NostrNcryptsec: ncryptsec, Public: pub,
	}, nil
}

func keysFrom(p secretPayload, net *chaincfg.Params) (*Keys, error) {
	seed, err := hex.DecodeString(p.Seed)
	if err != nil || len(seed) != seedLen {
		return nil, errors.New("keystore: key file holds a malformed seed")
	}
	master, err := hdkeychain.NewMaster(seed, net)
	if err != nil {
		return nil, fmt.Errorf("keystore: master key: %w", err)
	}
	mpub, err := master.ECPubKey()
	if err != nil {
		return nil, err
	}
	var fp [4]byte
	copy(fp[:], btcutil.Hash160(mpub.SerializeCompressed())[:4])
	path := AccountPathFor(net)
	acct := master
	for _, s := range path {
		if acct, err = acct.Derive(s); err != nil {
			return nil, fmt.Errorf("keystore: derive account: %w", err)
		}
	}
	xpub, err := acct.Neuter()
	if err != nil {
		return nil, err
	}
	npk, err := nostr.GetPublicKey(p.NostrSK)
	if err != nil {
		return nil, errors.New("keystore: key file holds a malformed Nostr secret key")
	}
	return &Keys{
		Public: PublicInfo{
			Fingerprint: hex.EncodeToString(fp[:]),
			OriginPath:  strings.TrimPrefix(descriptor.FormatPath(path), "m/"),
			AccountXPub: xpub.String(),
			NostrPubKey: npk,
		},
		Params: net, account: acct, masterFP: fp, path: path, nostrSK: p.NostrSK, seed: seed,
		cache: newKeyCache(MaxCachedKeys, MaxCachedBranches),
	}, nil
}

// NewKeys builds Keys from a 32-byte BIP32 seed and a Nostr secret key (hex) without a key file,
// for tests and tooling that hold throwaway keys. Production keys come from LoadKeyFile.
func NewKeys(seed []byte, nostrSK string, net *chaincfg.Params) (*Keys, error) {
	return keysFrom(secretPayload{Seed: hex.EncodeToString(seed), NostrSK: nostrSK}, net)
}
