package psbt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/btcsuite/btcd/wire"
	lru "github.com/hashicorp/golang-lru/v2"
)

// btcdDecode is what decodeRaw did before the key pre-pass: btcd parses the whole v0 stream
// (a panic inside btcd counted as a refusal).
func btcdDecode(raw []byte) (p *psbt.Packet, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("btcd panicked: %v", r)
		}
	}()
	return psbt.NewFromRawBytes(bytes.NewReader(raw), false)
}

// checkSameAsBtcd fails unless decodeRaw and btcd agree on a v0 PSBT: both refuse it, or both
// accept it with deeply equal packets.
func checkSameAsBtcd(t *testing.T, raw []byte) {
	t.Helper()
	if len(raw) < 5 || !bytes.Equal(raw[:5], []byte("psbt\xff")) {
		return
	}
	r := bytes.NewReader(raw[5:])
	global, err := readMap(r)
	if err != nil {
		return
	}
	if v, err := globalVersionOf(global); err != nil || v != 0 {
		return
	}
	want, werr := btcdDecode(raw)
	if werr == nil {
		werr = checkV0(want) // decodeRaw applies the same v0 check after parsing
	}
	got, gerr := decodeRaw(raw)
	switch {
	case werr != nil && gerr != nil:
	case werr != nil:
		t.Fatalf("decodeRaw accepts %x, btcd refuses it: %v", raw, werr)
	case gerr != nil:
		t.Fatalf("decodeRaw refuses %x (%v), btcd accepts it", raw, gerr)
	case !reflect.DeepEqual(got, want):
		t.Fatalf("decodeRaw and btcd decode %x differently:\n got %+v\nwant %+v", raw, got, want)
	}
}

// TestDecodeMatchesBtcd: on every seed (BIP-174/370/371 vectors, valid and invalid, and PSBTs of
// every wallet kind, signed and unsigned) the key pre-pass gives btcd's packet or btcd's
// refusal, whether the keys are already in validKeys or not.
func TestDecodeMatchesBtcd(t *testing.T) {
	seeds := decodeSeeds(t)
	if len(seeds) < 20 {
		t.Fatalf("only %d seeds", len(seeds))
	}
	validKeys.Purge()
	for pass := 0; pass < 2; pass++ { // first with a cold key set, then warm
		for _, raw := range seeds {
			checkSameAsBtcd(t, raw)
		}
	}
}

// FuzzDecodeMatchesBtcd is TestDecodeMatchesBtcd on mutated inputs.
func FuzzDecodeMatchesBtcd(f *testing.F) {
	for _, raw := range decodeSeeds(f) {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkSameAsBtcd(t, raw) })
}

// TestValidKeysNeverAdmitsAnInvalidKey: an encoding that is not a point is refused however often
// it is asked, and is not remembered; a valid one is remembered under its kind only (an x-only
// key accepted by schnorr is not thereby a valid compressed key, and the other way round).
func TestValidKeysNeverAdmitsAnInvalidKey(t *testing.T) {
	validKeys.Purge()
	priv, _ := btcec.NewPrivateKey()
	comp := priv.PubKey().SerializeCompressed()
	bad := append([]byte(nil), comp...)
	bad[0] = 0x05 // not a compressed-key prefix
	for i := 0; i < 3; i++ {
		if validPubKey(bad) {
			t.Fatal("an invalid encoding was accepted")
		}
	}
	if validKeys.Len() != 0 {
		t.Fatalf("an invalid encoding was remembered (%d entries)", validKeys.Len())
	}
	if !validPubKey(comp) || !validPubKey(comp) {
		t.Fatal("a valid compressed key was refused")
	}
	if validXOnlyKey(comp) { // 33 bytes are never an x-only key
		t.Fatal("a 33-byte key was accepted as x-only after being cached as compressed")
	}
	xonly := comp[1:]
	if validPubKey(xonly) {
		t.Fatal("a 32-byte x-only key was accepted as an ECDSA public key")
	}
	if !validXOnlyKey(xonly) {
		t.Fatal("a valid x-only key was refused")
	}
	if validPubKey(xonly) {
		t.Fatal("caching the x-only key made it a valid ECDSA encoding")
	}
}

// TestValidKeysBound: the set never holds more than its bound (a small bound here; the
// production one is MaxValidKeys), and a key evicted from it is still accepted (parsed again).
func TestValidKeysBound(t *testing.T) {
	saved := validKeys
	defer func() { validKeys = saved }()
	validKeys, _ = lru.New[string, struct{}](16)
	var first []byte
	for i := 0; i < 40; i++ {
		priv, _ := btcec.NewPrivateKey()
		k := priv.PubKey().SerializeCompressed()[1:]
		if i == 0 {
			first = k
		}
		if !validXOnlyKey(k) {
			t.Fatal("valid key refused")
		}
		if n := validKeys.Len(); n > 16 {
			t.Fatalf("validKeys holds %d entries, bound 16", n)
		}
	}
	if validKeys.Contains("x" + string(first)) {
		t.Fatal("the least recently used key was not evicted")
	}
	if !validXOnlyKey(first) {
		t.Fatal("an evicted valid key is refused")
	}
	if saved.Len() > MaxValidKeys {
		t.Fatalf("the production set holds %d entries, bound %d", saved.Len(), MaxValidKeys)
	}
}

func decodeSeeds(tb testing.TB) [][]byte {
	var out [][]byte
	add := func(s string) {
		if b, err := base64.StdEncoding.DecodeString(s); err == nil {
			out = append(out, b)
		} else if b, err := hex.DecodeString(s); err == nil {
			out = append(out, b)
		}
	}
	raw, err := os.ReadFile("testdata/bip371_vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var v struct {
		Vectors []struct {
			Base64 string `json:"base64"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		tb.Fatal(err)
	}
	for _, vec := range v.Vectors {
		add(vec.Base64)
	}
	for _, s := range fuzzSeeds(tb) {
		add(s)
	}
	return out
}

// TestDecodeShortBip32DerivationRefused: a BIP32 derivation value shorter than its 4-byte
// fingerprint is refused as invalid_psbt. btcd v1.1.8 panics on it (found by
// FuzzDecodeMatchesBtcd), so before this a client's PSBT could crash the process; both the key
// pre-pass and the plain btcd path (taken when a map repeats a key) refuse it.
func TestDecodeShortBip32DerivationRefused(t *testing.T) {
	fx := newFixture(t)
	op := fx.addCoin(t, 0, 1, 100_000)
	p := fx.build(t, []wire.OutPoint{op}, 50_000, 49_000, 1)
	priv, _ := btcec.NewPrivateKey()
	short := append([]byte{byte(psbt.Bip32DerivationOutputType)}, priv.PubKey().SerializeCompressed()...)
	p.Outputs[0].Unknowns = append(p.Outputs[0].Unknowns, &psbt.Unknown{Key: short, Value: nil})
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	raw := buf.Bytes()
	// The same with a repeated unknown key in the first input map, which the pre-pass leaves to btcd.
	p.Inputs[0].Unknowns = append(p.Inputs[0].Unknowns, &psbt.Unknown{Key: []byte{0xfc, 1}, Value: []byte{1}}, &psbt.Unknown{Key: []byte{0xfc, 1}, Value: []byte{2}})
	buf.Reset()
	if err := p.Serialize(&buf); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{raw, buf.Bytes()} {
		_, _, err := Decode(base64.StdEncoding.EncodeToString(b))
		var ref *Refusal
		if !errors.As(err, &ref) || ref.Code != InvalidPSBT {
			t.Fatalf("Decode = %v, want an invalid_psbt refusal", err)
		}
	}
}

// benchPSBT is a 2-in/2-out 2-of-3 wsh PSBT with every key's BIP32 derivation (9 public keys).
func benchPSBT(b *testing.B) []byte {
	fx := newFixture(b)
	op1 := fx.addCoin(b, 0, 1, 100_000)
	op2 := fx.addCoin(b, 1, 4, 60_000)
	p := fx.build(b, []wire.OutPoint{op1, op2}, 100_000, 59_000, 2)
	var buf bytes.Buffer
	if err := p.Serialize(&buf); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkDecodeBtcd: the decode as it was, btcd parsing (and decompressing) every key.
func BenchmarkDecodeBtcd(b *testing.B) {
	raw := benchPSBT(b)
	for b.Loop() {
		if _, err := btcdDecode(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeCold: decodeRaw with no key seen before (the set emptied each time).
func BenchmarkDecodeCold(b *testing.B) {
	raw := benchPSBT(b)
	for b.Loop() {
		validKeys.Purge()
		if _, err := decodeRaw(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeWarm: decodeRaw with the wallet's keys already in the set (a wallet's requests).
func BenchmarkDecodeWarm(b *testing.B) {
	raw := benchPSBT(b)
	if _, err := decodeRaw(raw); err != nil { // the wallet's keys enter the set
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := decodeRaw(raw); err != nil {
			b.Fatal(err)
		}
	}
}
