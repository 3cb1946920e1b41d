package signer

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
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/scrypt"

	"github.com/custodyagents/cosigner/descriptor"
)

// scrypt parameters for the key file (N=2^15, r=8, p=1: about 100 ms and 32 MiB per unlock).
const (
	scryptN      = 1 << 15
	scryptR      = 8
	scryptP      = 1
	keyFileV1    = 1
	seedLen      = 32
	hardened     = hdkeychain.HardenedKeyStart
	bip48P2WSH   = 2 // BIP48 script type 2' = native segwit multisig (P2WSH)
	bip48Purpose = 48
)

// KeyFile is the on-disk JSON form. Public fields are in clear so that `cosigner bunker-uri` and
// `cosigner init`'s summary need no passphrase; the seed and the Nostr secret key are only in
// Ciphertext.
type KeyFile struct {
	Version    int    `json:"version"`
	Network    string `json:"network"`
	KDF        string `json:"kdf"` // "scrypt"
	N, R, P    int
	Salt       []byte     `json:"salt"`
	Nonce      []byte     `json:"nonce"`
	Ciphertext []byte     `json:"ciphertext"`
	Public     PublicInfo `json:"public"`
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
	Seed    string `json:"seed"`     // BIP32 seed, hex
	NostrSK string `json:"nostr_sk"` // hex
}

// Keys are the decrypted keys of one co-signer. Never log or print them.
type Keys struct {
	Public   PublicInfo
	Params   *chaincfg.Params
	account  *hdkeychain.ExtendedKey // private account key at OriginPath
	masterFP [4]byte
	path     []uint32
	nostrSK  string
}

// String hides the secrets from fmt and slog.
func (k *Keys) String() string { return "signer.Keys{" + k.Public.KeyOrigin() + "}" }

// NostrSecretKey returns the Nostr identity secret key (hex) for signing events and NIP-44.
func (k *Keys) NostrSecretKey() string { return k.nostrSK }

// MasterFingerprint is the BIP32 fingerprint of the master key, as in PSBT BIP32 derivations.
func (k *Keys) MasterFingerprint() [4]byte { return k.masterFP }

// AccountPath is the full account path from the master key (hardened steps flagged).
func (k *Keys) AccountPath() []uint32 { return append([]uint32(nil), k.path...) }

// DeriveRelative returns the private key at AccountPath/steps… (all unhardened), for signing an
// input whose script was derived from the registered descriptor (steps = the branch's steps and
// the index). Errors: ErrNotOurKey for a hardened step.
func (k *Keys) DeriveRelative(steps ...uint32) (*btcec.PrivateKey, error) {
	key := k.account
	for _, s := range steps {
		if s >= hardened {
			return nil, fmt.Errorf("signer: hardened step after the account key: %w", ErrNotOurKey)
		}
		var err error
		if key, err = key.Derive(s); err != nil {
			return nil, fmt.Errorf("signer: derive step %d: %w", s, err)
		}
	}
	return key.ECPrivKey()
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
		return PublicInfo{}, fmt.Errorf("signer: generate seed: %w", err)
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
	b, err := json.MarshalIndent(kf, "", "  ")
	if err != nil {
		return PublicInfo{}, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return PublicInfo{}, fmt.Errorf("%w: %s", ErrKeyFileExists, path)
		}
		return PublicInfo{}, fmt.Errorf("signer: write key file: %w", err)
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return PublicInfo{}, fmt.Errorf("signer: write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return PublicInfo{}, fmt.Errorf("signer: write key file: %w", err)
	}
	return keys.Public, f.Close()
}

// ReadPublic reads a key file's public half without decrypting it.
func ReadPublic(path string) (PublicInfo, *KeyFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return PublicInfo{}, nil, fmt.Errorf("signer: read key file: %w", err)
	}
	var kf KeyFile
	if err := json.Unmarshal(b, &kf); err != nil {
		return PublicInfo{}, nil, fmt.Errorf("signer: key file %s is not valid JSON: %w", path, err)
	}
	if kf.Version != keyFileV1 || kf.KDF != "scrypt" {
		return PublicInfo{}, nil, fmt.Errorf("signer: key file %s: unsupported version %d / kdf %q", path, kf.Version, kf.KDF)
	}
	return kf.Public, &kf, nil
}

// LoadKeyFile decrypts the key file at path. The file's network must be net.
// Errors: ErrBadPassphrase, a network mismatch, or I/O and format errors.
func LoadKeyFile(path, passphrase string, net *chaincfg.Params) (*Keys, error) {
	_, kf, err := ReadPublic(path)
	if err != nil {
		return nil, err
	}
	if kf.Network != net.Name {
		return nil, fmt.Errorf("signer: key file %s is for network %q, not %q", path, kf.Network, net.Name)
	}
	if kf.N < 2 || kf.N > 1<<22 || kf.R < 1 || kf.R > 32 || kf.P < 1 || kf.P > 16 {
		return nil, fmt.Errorf("signer: key file %s: scrypt parameters out of range", path)
	}
	dk, err := scrypt.Key([]byte(passphrase), kf.Salt, kf.N, kf.R, kf.P, chacha20poly1305.KeySize)
	if err != nil {
		return nil, fmt.Errorf("signer: derive key: %w", err)
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
	keys, err := keysFrom(payload, net)
	if err != nil {
		return nil, err
	}
	if keys.Public != kf.Public {
		return nil, fmt.Errorf("signer: key file %s: public part does not match its secret part", path)
	}
	return keys, nil
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
	plain, err := json.Marshal(payload)
	if err != nil {
		return nil, err
	}
	return &KeyFile{
		Version: keyFileV1, Network: net.Name, KDF: "scrypt", N: scryptN, R: scryptR, P: scryptP,
		Salt: salt, Nonce: nonce, Ciphertext: aead.Seal(nil, nonce, plain, []byte(net.Name)), Public: pub,
	}, nil
}

func keysFrom(p secretPayload, net *chaincfg.Params) (*Keys, error) {
	seed, err := hex.DecodeString(p.Seed)
	if err != nil || len(seed) != seedLen {
		return nil, errors.New("signer: key file holds a malformed seed")
	}
	master, err := hdkeychain.NewMaster(seed, net)
	if err != nil {
		return nil, fmt.Errorf("signer: master key: %w", err)
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
			return nil, fmt.Errorf("signer: derive account: %w", err)
		}
	}
	xpub, err := acct.Neuter()
	if err != nil {
		return nil, err
	}
	npk, err := nostr.GetPublicKey(p.NostrSK)
	if err != nil {
		return nil, errors.New("signer: key file holds a malformed Nostr secret key")
	}
	return &Keys{
		Public: PublicInfo{
			Fingerprint: hex.EncodeToString(fp[:]),
			OriginPath:  strings.TrimPrefix(descriptor.FormatPath(path), "m/"),
			AccountXPub: xpub.String(),
			NostrPubKey: npk,
		},
		Params: net, account: acct, masterFP: fp, path: path, nostrSK: p.NostrSK,
	}, nil
}

// NewKeys builds Keys from a 32-byte BIP32 seed and a Nostr secret key (hex) without a key file,
// for tests and tooling that hold throwaway keys. Production keys come from LoadKeyFile.
func NewKeys(seed []byte, nostrSK string, net *chaincfg.Params) (*Keys, error) {
	return keysFrom(secretPayload{Seed: hex.EncodeToString(seed), NostrSK: nostrSK}, net)
}
