package psbt

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"

	"github.com/btcsuite/btcd/btcutil/psbt"
)

// MaxPSBTBytes bounds a decoded PSBT. NIP-44 v2 carries at most 65,535 bytes of plaintext, so a
// larger PSBT cannot arrive over NIP-46 anyway.
const MaxPSBTBytes = 64 * 1024

// Encoding is how a PSBT was written in a request; the answer uses the same one.
type Encoding int

const (
	// Base64 is the BIP-174 text form ("cHNidP8…").
	Base64 Encoding = iota
	// Hex is raw hex ("70736274ff…"), as Amber sends it.
	Hex
)

// Decode reads a PSBT given as base64 or hex, told apart by the BIP-174 magic
// ("psbt" 0xff: "cHNidP8" in base64, "70736274ff" in hex), of version 0 (BIP-174) or 2
// (BIP-370). A v2 PSBT comes back in the v0 packet shape, its unsigned transaction rebuilt from
// the per-input and per-output fields (see v2.go); PSBTVersion tells it apart and Encode writes
// it as v2 again. Errors are *Refusal: TooLarge above MaxPSBTBytes, otherwise InvalidPSBT
// (including a v0 PSBT carrying v2-only fields, a v2 PSBT missing required ones, and lock time
// requirements no nLockTime satisfies). TX_MODIFIABLE is decoded, not judged: Analyze refuses it.
func Decode(s string) (*psbt.Packet, Encoding, error) {
	s = strings.TrimSpace(s)
	var raw []byte
	var enc Encoding
	switch {
	case strings.HasPrefix(s, "cHNidP8"):
		if len(s) > MaxPSBTBytes*4/3+4 {
			return nil, 0, refuse(TooLarge, "PSBT is larger than %d bytes", MaxPSBTBytes)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return nil, 0, refuse(InvalidPSBT, "not valid base64: %v", err)
		}
		raw, enc = b, Base64
	case strings.HasPrefix(strings.ToLower(s), "70736274ff"):
		if len(s) > MaxPSBTBytes*2 {
			return nil, 0, refuse(TooLarge, "PSBT is larger than %d bytes", MaxPSBTBytes)
		}
		b, err := hex.DecodeString(s)
		if err != nil {
			return nil, 0, refuse(InvalidPSBT, "not valid hex: %v", err)
		}
		raw, enc = b, Hex
	default:
		return nil, 0, refuse(InvalidPSBT, "not a PSBT: expected base64 starting with cHNidP8 or hex starting with 70736274ff")
	}
	p, err := decodeRaw(raw)
	if err != nil {
		return nil, 0, refuse(InvalidPSBT, "cannot parse PSBT (BIP-174 v0 or BIP-370 v2): %v", err)
	}
	return p, enc, nil
}

// Encode writes p in enc, as a v2 PSBT (BIP-370) when p was decoded from one (PSBTVersion 2),
// otherwise as v0 (BIP-174).
func Encode(p *psbt.Packet, enc Encoding) (string, error) {
	var raw []byte
	if isV2(p) {
		b, err := encodeV2(p)
		if err != nil {
			return "", err
		}
		raw = b
	} else {
		var buf bytes.Buffer
		if err := p.Serialize(&buf); err != nil {
			return "", err
		}
		raw = buf.Bytes()
	}
	if enc == Hex {
		return hex.EncodeToString(raw), nil
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}
