package nip46

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil/bech32"
)

// ParsePubKey reads a Nostr public key written as an npub (NIP-19, bech32) or as 64 hex
// characters, and returns it as lower-case hex. The key must be a valid x-only secp256k1 point
// (BIP-340). Errors say which form was expected.
func ParsePubKey(s string) (string, error) {
	if strings.HasPrefix(s, "npub1") {
		hrp, data, err := bech32.Decode(s)
		if err != nil || hrp != "npub" {
			return "", fmt.Errorf("%q is not a valid npub", s)
		}
		raw, err := bech32.ConvertBits(data, 5, 8, false)
		if err != nil || len(raw) != 32 {
			return "", fmt.Errorf("%q is not a valid npub", s)
		}
		if _, err := schnorr.ParsePubKey(raw); err != nil {
			return "", fmt.Errorf("%q is not a valid npub", s)
		}
		return hex.EncodeToString(raw), nil
	}
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != 32 {
		return "", fmt.Errorf("%q is neither an npub nor a 64-character hex pubkey", s)
	}
	if _, err := schnorr.ParsePubKey(raw); err != nil {
		return "", fmt.Errorf("%q is neither an npub nor a 64-character hex pubkey", s)
	}
	return strings.ToLower(s), nil
}
