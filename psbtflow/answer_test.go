package psbtflow

import (
	"testing"

	"github.com/btcsuite/btcd/btcutil/psbt"
)

// FuzzCheckAnswer feeds arbitrary sign_psbt answers to the check Ask applies: no panic, and an
// accepted answer always combines with the PSBT asked into one with more valid signatures on
// every input.
func FuzzCheckAnswer(f *testing.F) {
	fx, p := twoInputPSBT(f, "wsh")
	asked := signedBy(f, fx, p, 0)
	ins, err := resolveInputs(fx.desc, asked)
	if err != nil {
		f.Fatal(err)
	}
	for _, q := range []*psbt.Packet{signedBy(f, fx, asked, 2), asked, p} {
		for _, enc := range []Encoding{Base64, Hex} {
			s, err := Encode(q, enc)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(s)
		}
	}
	f.Add("cHNidP8BAA==")
	f.Add("")
	f.Fuzz(func(t *testing.T, answer string) {
		got, err := checkAnswer(asked, ins, answer)
		if err != nil {
			return
		}
		comb, err := Combine(asked, got)
		if err != nil {
			t.Fatalf("accepted answer does not combine: %v", err)
		}
		c, err := checkSigs(fx.desc, comb)
		if err != nil {
			t.Fatal(err)
		}
		for i := range c.valid {
			if len(c.valid[i]) < 2 {
				t.Fatalf("accepted answer: input %d has %d valid signatures", i, len(c.valid[i]))
			}
		}
	})
}
