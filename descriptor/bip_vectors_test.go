package descriptor

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
)

// Key expression vectors of BIP-380, "Test Vectors":
// https://github.com/bitcoin/bips/blob/master/bip-0380.mediawiki#test-vectors
//
// This package accepts only ranged extended public keys with unhardened
// derivation, so most "valid" vectors are refused; the test checks that
// they are refused for that policy reason and never as a syntax error, and
// that the "invalid" vectors are refused as syntax errors.
func TestKeyExpressionsBIP380(t *testing.T) {
	const (
		xpub  = "xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL"
		xprv  = "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc"
		pub   = "0260b2003c386519fc9eadf2b5cf124dd8eea4c4e68d5e154050a9346ea98ce600"
		xprv2 = "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U"
	)
	valid := []struct {
		name, key string
		want      error // nil: accepted by this package
	}{
		{"compressed public key", pub, ErrUnsupported},
		{"uncompressed public key", "04a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd5b8dec5235a0fa8722476c7709c02559e3aa73aa03918ba2d492eea75abea235", ErrUnsupported},
		{"public key with key origin", "[deadbeef/0h/0h/0h]" + pub, ErrUnsupported},
		{"public key with key origin (')", "[deadbeef/0'/0'/0']" + pub, ErrUnsupported},
		{"public key with key origin (mixed)", "[deadbeef/0'/0h/0']" + pub, ErrUnsupported},
		{"WIF uncompressed private key", "5KYZdUEo39z3FPrtuX2QbbwGnNP5zTd7yyr2SC1j299sBCnWjss", ErrPrivateKey},
		{"WIF compressed private key", "L4rK1yDtCWekvXuE6oXD9jCYfFNV2cWRpVuPLBcCU2z8TrisoyY1", ErrPrivateKey},
		{"extended public key", xpub, ErrNotRanged},
		{"extended public key with key origin", "[deadbeef/0h/1h/2h]" + xpub, ErrNotRanged},
		{"extended public key with derivation", "[deadbeef/0h/1h/2h]" + xpub + "/3/4/5", ErrNotRanged},
		{"extended public key with derivation and children", "[deadbeef/0h/1h/2h]" + xpub + "/3/4/5/*", nil},
		{"extended public key with hardened derivation and unhardened children", xpub + "/3h/4h/5h/*", ErrHardenedDerivation},
		{"extended public key with hardened derivation and children", xpub + "/3h/4h/5h/*h", ErrHardenedDerivation},
		{"extended public key with key origin, hardened derivation and children", "[deadbeef/0h/1h/2]" + xpub + "/3h/4h/5h/*h", ErrHardenedDerivation},
		{"extended private key", xprv, ErrPrivateKey},
		{"extended private key with key origin", "[deadbeef/0h/1h/2h]" + xprv, ErrPrivateKey},
		{"extended private key with derivation", "[deadbeef/0h/1h/2h]" + xprv + "/3/4/5", ErrPrivateKey},
		{"extended private key with derivation and children", "[deadbeef/0h/1h/2h]" + xprv + "/3/4/5/*", ErrPrivateKey},
		{"extended private key with hardened derivation and unhardened children", xprv + "/3h/4h/5h/*", ErrHardenedDerivation},
		{"extended private key with hardened derivation and children", xprv + "/3h/4h/5h/*h", ErrHardenedDerivation},
		{"extended private key with key origin, hardened derivation and children", "[deadbeef/0h/1h/2]" + xprv + "/3h/4h/5h/*h", ErrHardenedDerivation},
	}
	for _, tt := range valid {
		t.Run("valid/"+tt.name, func(t *testing.T) {
			k, err := parseKey(tt.key, 0, &chaincfg.MainNetParams)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (k != nil) {
				t.Fatalf("parseKey error = %v, want %v", err, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), xprv) {
				t.Fatal("error repeats the private key")
			}
			if k != nil && k.string(-1) != tt.key {
				t.Fatalf("canonical form %s", k.string(-1))
			}
		})
	}

	invalid := []struct{ name, key string }{
		{"children indicator in key origin", "[deadbeef/0h/0h/0h/*]" + pub},
		{"trailing slash in key origin", "[deadbeef/0h/0h/0h/]" + pub},
		{"too short fingerprint", "[deadbef/0h/0h/0h]" + pub},
		{"too long fingerprint", "[deadbeeef/0h/0h/0h]" + pub},
		{"invalid hardened indicators f", "[deadbeef/0f/0f/0f]" + pub},
		{"invalid hardened indicators -", "[deadbeef/-0/-0/-0]" + pub},
		{"derivation index out of range", xprv2 + "/2147483648"},
		{"invalid derivation index", xprv2 + "/1aa"},
		{"multiple key origins", "[aaaaaaaa][aaaaaaaa]" + xprv2 + "/2147483647'/0"},
		{"missing key origin start", "aaaaaaaa]" + xprv2 + "/2147483647'/0"},
		{"non hex fingerprint", "[gaaaaaaa]" + xprv2 + "/2147483647'/0"},
		{"key origin with no public key", "[deadbeef]"},
	}
	for _, tt := range invalid {
		t.Run("invalid/"+tt.name, func(t *testing.T) {
			if _, err := parseKey(tt.key, 0, &chaincfg.MainNetParams); !errors.Is(err, ErrSyntax) {
				t.Fatalf("parseKey error = %v, want ErrSyntax", err)
			}
		})
	}
	// Deviation, on purpose: BIP-380 lists "[deadbeef/0H/0H/0H]…" as invalid,
	// but its specification text (and BIP-389's) allows H as a hardened
	// marker; we follow the text, as current Bitcoin Core and
	// rust-miniscript do.
	k, err := parseKey("[deadbeef/0H/0H/0H]"+xpub+"/*", 0, &chaincfg.MainNetParams)
	if err != nil || k.string(-1) != "[deadbeef/0h/0h/0h]"+xpub+"/*" {
		t.Fatalf("H marker: %v", err)
	}
	// The two private-key-with-derivation vectors are invalid for any reason.
	for _, key := range []string{
		"L4rK1yDtCWekvXuE6oXD9jCYfFNV2cWRpVuPLBcCU2z8TrisoyY1/0",
		"L4rK1yDtCWekvXuE6oXD9jCYfFNV2cWRpVuPLBcCU2z8TrisoyY1/*",
	} {
		if _, err := parseKey(key, 0, &chaincfg.MainNetParams); err == nil {
			t.Errorf("parseKey(%s) accepted", key)
		}
	}
}

// The ranged sortedmulti vector of BIP-383, "Test Vectors", inside wsh():
// the witness scripts at indexes 0, 1, 2 are the vector's scripts.
// https://github.com/bitcoin/bips/blob/master/bip-0383.mediawiki#test-vectors
func TestSortedMultiBIP383(t *testing.T) {
	d := mustParse(t, "wsh(sortedmulti(2,xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/*,xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y/0/0/*))", &chaincfg.MainNetParams)
	want := []string{
		"5221025d5fc65ebb8d44a5274b53bac21ff8307fec2334a32df05553459f8b1f7fe1b62102fbd47cc8034098f0e6a94c6aeee8528abf0a2153a5d8e46d325b7284c046784652ae",
		"52210264fd4d1f5dea8ded94c61e9641309349b62f27fbffe807291f664e286bfbe6472103f4ece6dfccfa37b211eb3d0af4d0c61dba9ef698622dc17eecdf764beeb005a652ae",
		"5221022ccabda84c30bad578b13c89eb3b9544ce149787e5b538175b1d1ba259cbb83321024d902e1a2fc7a8755ab5b694c575fce742c48d9ff192e63df5193e4c7afe1f9c52ae",
	}
	for i, w := range want {
		der, err := d.Derive(0, uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(der.WitnessScript); got != w {
			t.Errorf("index %d: witness script %s, want %s", i, got, w)
		}
	}
	// The same keys unsorted (multi) give a different script at some index,
	// so the test above would notice a missing sort.
	u := mustParse(t, strings.Replace(d.String()[:len(d.String())-9], "sortedmulti", "multi", 1), &chaincfg.MainNetParams)
	differ := false
	for i := range want {
		der, _ := u.Derive(0, uint32(i))
		differ = differ || hex.EncodeToString(der.WitnessScript) != want[i]
	}
	if !differ {
		t.Fatal("multi() and sortedmulti() agree on every index; vector does not test sorting")
	}
}

// BIP-383 invalid descriptors, "Test Vectors". The threshold vectors use a
// hex key which this package does not accept, so the threshold must be
// checked before the keys for these to test what they mean.
func TestMultiInvalidBIP383(t *testing.T) {
	for name, in := range map[string]string{
		"invalid threshold":          "wsh(multi(a,03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd,04a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd5b8dec5235a0fa8722476c7709c02559e3aa73aa03918ba2d492eea75abea235))",
		"threshold of 0":             "wsh(multi(0,03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd,04a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd5b8dec5235a0fa8722476c7709c02559e3aa73aa03918ba2d492eea75abea235))",
		"threshold larger than keys": "wsh(multi(3,L4rK1yDtCWekvXuE6oXD9jCYfFNV2cWRpVuPLBcCU2z8TrisoyY1,5KYZdUEo39z3FPrtuX2QbbwGnNP5zTd7yyr2SC1j299sBCnWjss))",
	} {
		if _, err := Parse(in, &chaincfg.MainNetParams); !errors.Is(err, ErrThreshold) {
			t.Errorf("%s: %v, want ErrThreshold", name, err)
		}
	}
}

// neuter replaces every xprv in s by its xpub, so that BIP vectors written
// with private keys can be used with this public-key-only package.
func neuter(t *testing.T, s string) string {
	t.Helper()
	for {
		i := strings.Index(s, "xprv")
		if i < 0 {
			return s
		}
		j := i + strings.IndexAny(s[i:], "/,)")
		xk, err := hdkeychain.NewKeyFromString(s[i:j])
		if err != nil {
			t.Fatal(err)
		}
		pub, err := xk.Neuter()
		if err != nil {
			t.Fatal(err)
		}
		s = s[:i] + pub.String() + s[j:]
	}
}

// Multipath vectors of BIP-389, "Test Vectors", wrapped in wsh() where the
// vector is a bare multi() or sh(multi()):
// https://github.com/bitcoin/bips/blob/master/bip-0389.mediawiki#test-vectors
func TestMultipathBIP389(t *testing.T) {
	tests := []struct {
		in        string
		expansion []string
	}{
		{
			"wsh(multi(2,xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/<1;2>/*,xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y/<3;4>/0/*))",
			[]string{
				"wsh(multi(2,xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/1/*,xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y/3/0/*))",
				"wsh(multi(2,xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/2/*,xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y/4/0/*))",
			},
		},
		{
			"wsh(multi(2,xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/<1;2;3>/0/*,xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y/0/*,xpub661MyMwAqRbcGDZQUKLqmWodYLcoBQnQH33yYkkF3jjxeLvY8qr2wWGEWkiKFaaQfJCoi3HeEq3Dc5DptfbCyjD38fNhSqtKc1UHaP4ba3t/0/0/<3;4;5>/*))",
			[]string{
				"wsh(multi(2,xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/1/0/*,xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y/0/*,xpub661MyMwAqRbcGDZQUKLqmWodYLcoBQnQH33yYkkF3jjxeLvY8qr2wWGEWkiKFaaQfJCoi3HeEq3Dc5DptfbCyjD38fNhSqtKc1UHaP4ba3t/0/0/3/*))",
				"wsh(multi(2,xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/2/0/*,xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y/0/*,xpub661MyMwAqRbcGDZQUKLqmWodYLcoBQnQH33yYkkF3jjxeLvY8qr2wWGEWkiKFaaQfJCoi3HeEq3Dc5DptfbCyjD38fNhSqtKc1UHaP4ba3t/0/0/4/*))",
				"wsh(multi(2,xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/3/0/*,xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y/0/*,xpub661MyMwAqRbcGDZQUKLqmWodYLcoBQnQH33yYkkF3jjxeLvY8qr2wWGEWkiKFaaQfJCoi3HeEq3Dc5DptfbCyjD38fNhSqtKc1UHaP4ba3t/0/0/5/*))",
			},
		},
	}
	for _, tt := range tests {
		d := mustParse(t, tt.in, &chaincfg.MainNetParams)
		if d.Branches() != len(tt.expansion) {
			t.Fatalf("Branches() = %d, want %d", d.Branches(), len(tt.expansion))
		}
		for b, exp := range tt.expansion {
			got, err := d.BranchString(uint32(b))
			if err != nil {
				t.Fatal(err)
			}
			if want := exp + "#" + checksum(exp); got != want {
				t.Errorf("branch %d:\n got %s\nwant %s", b, got, want)
			}
			single := mustParse(t, exp, &chaincfg.MainNetParams)
			for i := uint32(0); i < 3; i++ {
				a, _ := d.Derive(uint32(b), i)
				s, _ := single.Derive(0, i)
				if a.Address.EncodeAddress() != s.Address.EncodeAddress() {
					t.Errorf("branch %d index %d: multipath derives %s, expansion %s", b, i, a.Address, s.Address)
				}
			}
		}
	}

	invalid := []struct {
		name, in string
		want     error
	}{
		{"multiple multipath specifiers", "wsh(multi(1," + neuter(t, "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U/<0;1>/<2;3>") + "))", ErrMultipath},
		{"multipath specifier in origin", "wsh(multi(1,[deadbeef/<0;1>]xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB/0))", ErrMultipath},
		{"multipath specifiers of mismatched lengths", neuter(t, "wsh(multi(2,xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc/<1;2;3>/0/*,xprv9uPDJpEQgRQfDcW7BkF7eTya6RPxXeJCqCJGHuCJ4GiRVLzkTXBAJMu2qaMWPrS7AANYqdq6vcBcBUdJCVVFceUvJFjaPdGZ2y9WACViL4L/0/*,xprv9s21ZrQH143K3jUwNHoqQNrtzJnJmx4Yup8NkNLdVQCymYbPbJXnPhwkfTfxZfptcs3rLAPUXS39oDLgrNKQGwbGsEmJJ8BU3RzQuvShEG4/0/0/<3;4>/*))"), ErrMultipath},
		{"empty multipath specifier", "wsh(multi(1,xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB/<>/*))", nil},
		{"missing multipath start", "wsh(multi(1,xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB/0>/*))", ErrSyntax},
		{"missing multipath end", "wsh(multi(1,xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB/<0/*))", ErrSyntax},
		{"missing index in multipath specifier", "wsh(multi(1,xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB/<0;>/*))", ErrSyntax},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in, &chaincfg.MainNetParams)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Parse error = %v, want %v", err, tt.want)
			}
		})
	}
}
