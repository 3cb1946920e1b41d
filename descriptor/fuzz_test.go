package descriptor

import (
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
)

// FuzzParse: Parse never panics; what it accepts prints to a canonical
// string that parses back to itself and derives on every branch.
func FuzzParse(f *testing.F) {
	_, a := account(f, 1, regtest)
	_, b := account(f, 2, regtest)
	seeds := []string{
		"wsh(sortedmulti(2," + a + "/<0;1>/*," + b + "/<0;1>/*))",
		"wsh(multi(1," + a + "/0/*))",
		"wsh(multi(1," + a + "/<0;1;2>/5/*))#qqqqqqqq",
		"wsh(multi(2," + a + "/<0;1>/*h," + b + "/<0;1>/*))",
		"raw(deadbeef)#89f8spxm",
		"wsh(multi(1,[deadbeef/0'/1H]" + a[19:] + "/*))",
		"wsh(wsh(wsh(",
		"sh(wsh(sortedmulti(2," + a + "/<0;1>/*," + b + "/<0;1>/*)))",
		"tr(" + NUMSKey + ",{multi_a(1," + a + "/<0;1>/*),sortedmulti_a(2," + a + "/<0;1>/*," + b + "/<0;1>/*)})",
		"tr(" + a + "/0/*,multi_a(1," + b + "/0/*))",
		"tr(" + NUMSKey + ",{{multi_a(1," + a + "/*),multi_a(1," + b + "/*)},",
		"",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, net := range []*chaincfg.Params{regtest, &chaincfg.MainNetParams} {
			d, err := Parse(s, net)
			if err != nil {
				if _, ok := err.(*ParseError); !ok {
					t.Fatalf("error %v is not a *ParseError", err)
				}
				continue
			}
			canon := d.String()
			d2, err := Parse(canon, net, RequireChecksum())
			if err != nil {
				t.Fatalf("canonical form %q does not parse: %v", canon, err)
			}
			if d2.String() != canon {
				t.Fatalf("canonical form not stable: %q vs %q", canon, d2.String())
			}
			for br := 0; br < d.Branches(); br++ {
				if _, err := d.Derive(uint32(br), 0); err != nil {
					t.Fatalf("Derive(%d, 0): %v", br, err)
				}
				if _, err := d.BranchString(uint32(br)); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}
