package psbt

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"github.com/btcsuite/btcd/wire"
)

// FuzzDecode: Decode never panics on any input; what it accepts (v0 or v2) encodes back in the
// same version and decodes again to the same unsigned transaction. Seeds: every BIP-370 vector
// and PSBTs of every wallet kind, v0 and v2.
func FuzzDecode(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, enc, err := Decode(s)
		if err != nil {
			return
		}
		out, err := Encode(p, enc)
		if err != nil {
			t.Fatalf("decoded PSBT does not encode: %v", err)
		}
		q, enc2, err := Decode(out)
		if err != nil {
			t.Fatalf("encoded PSBT does not decode: %v", err)
		}
		if enc2 != enc || PSBTVersion(q) != PSBTVersion(p) || q.UnsignedTx.TxHash() != p.UnsignedTx.TxHash() {
			t.Fatal("round trip changed the PSBT")
		}
	})
}

// FuzzAnalyze: for every wallet kind, Analyze never panics, and what it accepts satisfies the
// analysis invariants: outflow = inputs − change, fee = inputs − outputs ≤ outflow, change never
// above the inputs, and SignInputs then signs without error.
func FuzzAnalyze(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	fixtures := map[string]*fixture{}
	for _, kind := range walletKinds {
		fx := newKindFixture(f, kind)
		fx.addCoin(f, 0, 1, 100_000)
		fx.addCoin(f, 1, 4, 60_000)
		fixtures[kind] = fx
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, kind := range walletKinds {
			fx := fixtures[kind]
			p, _, err := Decode(s)
			if err != nil {
				return
			}
			a, err := Analyze(p, fx.desc, fx.chain)
			if err != nil {
				continue
			}
			var out int64
			for _, o := range p.UnsignedTx.TxOut {
				out += o.Value
			}
			if a.Outflow != a.InputTotal-a.ChangeTotal || int64(a.Fee) != int64(a.InputTotal)-out || a.Fee > a.Outflow || a.ChangeTotal > a.InputTotal {
				t.Fatalf("%s: inconsistent analysis %+v", kind, a)
			}
			if _, err := SignInputs(p, a, fx.desc, 0, fx.keys[0], fx.chain); err != nil {
				t.Fatalf("%s: accepted PSBT does not sign: %v", kind, err)
			}
		}
	})
}

func fuzzSeeds(f testing.TB) []string {
	var seeds []string
	raw, err := os.ReadFile("testdata/bip370_vectors.json")
	if err != nil {
		f.Fatal(err)
	}
	var v bip370Vectors
	if err := json.Unmarshal(raw, &v); err != nil {
		f.Fatal(err)
	}
	for _, vec := range v.Vectors {
		seeds = append(seeds, vec.Hex)
	}
	for _, kind := range walletKinds {
		fx := newKindFixture(f, kind)
		op1 := fx.addCoin(f, 0, 1, 100_000)
		op2 := fx.addCoin(f, 1, 4, 60_000)
		p := fx.build(f, []wire.OutPoint{op1, op2}, 100_000, 59_000, 2)
		s, _ := Encode(p, Base64)
		seeds = append(seeds, s, hex.EncodeToString(toV2(f, p, -1)), base64.StdEncoding.EncodeToString(toV2(f, p, 1)))
		a, err := Analyze(p, fx.desc, fx.chain)
		if err != nil {
			f.Fatal(err)
		}
		if _, err := SignInputs(p, a, fx.desc, 1, fx.keys[1], fx.chain); err != nil {
			f.Fatal(err)
		}
		s, _ = Encode(p, Hex)
		seeds = append(seeds, s)
	}
	return seeds
}
