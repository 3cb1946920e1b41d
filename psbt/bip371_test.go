package psbt

import (
	"encoding/json"
	"os"
	"testing"
)

// TestDecodeBIP371Vectors: the taproot PSBT fields of BIP-371, "Test Vectors"
// (https://github.com/bitcoin/bips/blob/master/bip-0371.mediawiki#test-vectors, copied into
// testdata/bip371_vectors.json): the valid PSBTs decode and re-encode to the same bytes, the
// invalid ones (wrong key, signature and control block lengths) are invalid_psbt.
func TestDecodeBIP371Vectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/bip371_vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v struct {
		Vectors []struct {
			Case   string `json:"case"`
			Base64 string `json:"base64"`
			Valid  bool   `json:"valid"`
		} `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &v); err != nil || len(v.Vectors) < 15 {
		t.Fatalf("%v, %d vectors", err, len(v.Vectors))
	}
	for _, vec := range v.Vectors {
		t.Run(vec.Case, func(t *testing.T) {
			p, enc, err := Decode(vec.Base64)
			if !vec.Valid {
				if err == nil {
					t.Fatal("decoded an invalid PSBT")
				}
				if me := AsRefusal(err); me == nil || me.Code != InvalidPSBT {
					t.Fatalf("refusal %v, want InvalidPSBT", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out, err := Encode(p, enc)
			if err != nil || out != vec.Base64 {
				t.Fatalf("re-encoded differently (%v):\n%s\n%s", err, out, vec.Base64)
			}
		})
	}
}
