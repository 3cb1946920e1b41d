package descriptor

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
)

var regtest = &chaincfg.RegressionNetParams

// account derives a BIP-48 P2WSH account (m/48'/1'/0'/2') from a fixed
// test seed and returns the master key and the key expression
// "[fp/48h/1h/0h/2h]tpub…" (without derivation steps).
func account(t testing.TB, seed byte, net *chaincfg.Params) (*hdkeychain.ExtendedKey, string) {
	t.Helper()
	master, err := hdkeychain.NewMaster(bytes.Repeat([]byte{seed}, 32), net)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := master.ECPubKey()
	if err != nil {
		t.Fatal(err)
	}
	xk := master
	for _, s := range []uint32{48, 1, 0, 2} {
		if xk, err = xk.Derive(hdkeychain.HardenedKeyStart + s); err != nil {
			t.Fatal(err)
		}
	}
	xpub, err := xk.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	fp := hex.EncodeToString(hash160(pub.SerializeCompressed())[:4])
	return master, fmt.Sprintf("[%s/48h/1h/0h/2h]%s", fp, xpub.String())
}

func mustParse(t testing.TB, s string, net *chaincfg.Params) *Descriptor {
	t.Helper()
	d, err := Parse(s, net)
	if err != nil {
		t.Fatalf("Parse(%q): %v", s, err)
	}
	return d
}

func threeKeys(t testing.TB) (masters [3]*hdkeychain.ExtendedKey, exprs [3]string) {
	for i := range masters {
		masters[i], exprs[i] = account(t, byte(i+1), regtest)
	}
	return
}

func TestParseWSHSortedMulti(t *testing.T) {
	masters, k := threeKeys(t)
	in := fmt.Sprintf("wsh(sortedmulti(2,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*))", k[0], k[1], k[2])
	d := mustParse(t, in, regtest)

	if d.Threshold() != 2 || !d.Sorted() || d.Branches() != 2 || len(d.Keys()) != 3 {
		t.Fatalf("Threshold=%d Sorted=%v Branches=%d keys=%d", d.Threshold(), d.Sorted(), d.Branches(), len(d.Keys()))
	}
	if want := in + "#" + checksum(in); d.String() != want {
		t.Fatalf("String() = %s\nwant        %s", d.String(), want)
	}
	again := mustParse(t, d.String(), regtest)
	if again.String() != d.String() {
		t.Fatal("String() does not round-trip")
	}

	// Apostrophes and H are accepted and printed as h.
	quoted := strings.ReplaceAll(in, "h/", "'/")
	quoted = strings.ReplaceAll(quoted, "h]", "H]")
	if got := mustParse(t, quoted, regtest).String(); got != d.String() {
		t.Fatalf("hardened markers not canonicalized: %s", got)
	}

	for i, key := range d.Keys() {
		if !key.HasOrigin || FormatPath(key.OriginPath) != "m/48h/1h/0h/2h" {
			t.Errorf("key %d origin %v %s", i, key.HasOrigin, FormatPath(key.OriginPath))
		}
		if len(key.Steps) != 2 || len(key.Steps[0]) != 1 || key.Steps[0][0] != 0 || key.Steps[1][0] != 1 {
			t.Errorf("key %d steps %v", i, key.Steps)
		}
		if got, idx, ok := d.FindKey(key.Fingerprint); !ok || idx != i || got.XPub.String() != key.XPub.String() {
			t.Errorf("FindKey(key %d) = %d, %v", i, idx, ok)
		}
	}
	if _, _, ok := d.FindKey([4]byte{1, 2, 3, 4}); ok {
		t.Error("FindKey found an unknown fingerprint")
	}

	for branch := uint32(0); branch < 2; branch++ {
		for index := uint32(0); index < 4; index++ {
			der, err := d.Derive(branch, index)
			if err != nil {
				t.Fatal(err)
			}
			// Each key re-derived from its master private key along
			// DerivedKey.Path appears in the script, sorted.
			var prev []byte
			for j, dk := range der.Keys {
				want := derivePath(t, masters[dk.Slot], dk.Path)
				if !want.IsEqual(dk.PubKey) {
					t.Fatalf("b%d i%d key %d: pubkey differs from master derivation", branch, index, j)
				}
				if FormatPath(dk.Path) != fmt.Sprintf("m/48h/1h/0h/2h/%d/%d", branch, index) {
					t.Fatalf("path %s", FormatPath(dk.Path))
				}
				ser := dk.PubKey.SerializeCompressed()
				if prev != nil && bytes.Compare(prev, ser) >= 0 {
					t.Fatal("sortedmulti keys not sorted")
				}
				prev = ser
				b, i, ok := d.MatchPath(dk.Fingerprint, dk.Path)
				if !ok || b != branch || i != index {
					t.Fatalf("MatchPath(%s) = %d, %d, %v", FormatPath(dk.Path), b, i, ok)
				}
			}
			// The witness script is 2 <k1> <k2> <k3> 3 CHECKMULTISIG.
			wantScript, _ := txscript.NewScriptBuilder().AddOp(txscript.OP_2).
				AddData(der.Keys[0].PubKey.SerializeCompressed()).
				AddData(der.Keys[1].PubKey.SerializeCompressed()).
				AddData(der.Keys[2].PubKey.SerializeCompressed()).
				AddOp(txscript.OP_3).AddOp(txscript.OP_CHECKMULTISIG).Script()
			if !bytes.Equal(der.WitnessScript, wantScript) {
				t.Fatalf("witness script %x", der.WitnessScript)
			}
			cls, addrs, _, err := txscript.ExtractPkScriptAddrs(der.PkScript, regtest)
			if err != nil || cls != txscript.WitnessV0ScriptHashTy || addrs[0].EncodeAddress() != der.Address.EncodeAddress() {
				t.Fatalf("pkScript %x class %v", der.PkScript, cls)
			}
			if !strings.HasPrefix(der.Address.EncodeAddress(), "bcrt1q") {
				t.Fatalf("address %s", der.Address)
			}
			pk, err := d.PkScript(branch, index)
			if err != nil || !bytes.Equal(pk, der.PkScript) {
				t.Fatal("PkScript differs from Derive")
			}
		}
	}
	r0, _ := d.Derive(0, 0)
	c0, _ := d.Derive(1, 0)
	if bytes.Equal(r0.PkScript, c0.PkScript) {
		t.Fatal("receive and change branch derive the same script")
	}

	if _, err := d.Derive(2, 0); !errors.Is(err, ErrBranch) {
		t.Errorf("Derive(2,0) = %v, want ErrBranch", err)
	}
	if _, err := d.Derive(0, hdkeychain.HardenedKeyStart); !errors.Is(err, ErrIndex) {
		t.Errorf("Derive hardened = %v, want ErrIndex", err)
	}
	if d.MaxWitnessSize() != 1+1+2*73+1+105 {
		t.Errorf("MaxWitnessSize = %d", d.MaxWitnessSize())
	}
}

func TestMatchPathRejects(t *testing.T) {
	_, k := threeKeys(t)
	d := mustParse(t, fmt.Sprintf("wsh(multi(2,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*))", k[0], k[1], k[2]), regtest)
	key := d.Keys()[0]
	h := uint32(hdkeychain.HardenedKeyStart)
	ok := key.Path(1, 7)
	if b, i, found := d.MatchPath(key.Fingerprint, ok); !found || b != 1 || i != 7 {
		t.Fatalf("MatchPath(valid) = %d %d %v", b, i, found)
	}
	for name, tc := range map[string]struct {
		fp   [4]byte
		path []uint32
	}{
		"other fingerprint": {[4]byte{0xde, 0xad, 0xbe, 0xef}, ok},
		"unknown branch":    {key.Fingerprint, []uint32{h + 48, h + 1, h, h + 2, 2, 7}},
		"hardened index":    {key.Fingerprint, []uint32{h + 48, h + 1, h, h + 2, 0, h + 7}},
		"other account":     {key.Fingerprint, []uint32{h + 48, h + 1, h + 1, h + 2, 0, 7}},
		"too short":         {key.Fingerprint, []uint32{h + 48, h + 1, h, h + 2, 0}},
		"too long":          {key.Fingerprint, []uint32{h + 48, h + 1, h, h + 2, 0, 7, 1}},
		"empty":             {key.Fingerprint, nil},
	} {
		if _, _, found := d.MatchPath(tc.fp, tc.path); found {
			t.Errorf("%s: MatchPath matched %v", name, tc.path)
		}
	}
}

func TestParseErrors(t *testing.T) {
	_, k := threeKeys(t)
	_, mainKey := account(t, 9, &chaincfg.MainNetParams)
	masterPriv, _ := account(t, 1, regtest)
	tprv := masterPriv.String()
	mp := "/<0;1>/*"
	multi := func(th string, keys ...string) string {
		return "wsh(multi(" + th + "," + strings.Join(keys, ",") + "))"
	}
	good := multi("2", k[0]+mp, k[1]+mp, k[2]+mp)
	badSum := good + "#" + strings.Repeat("q", 8)

	tests := []struct {
		name, in string
		want     error
		col      int // expected column, 0 = don't check
	}{
		{"bad checksum", badSum, ErrChecksum, len(good) + 2},
		{"hardened wildcard", multi("2", k[0]+mp, k[1]+"/<0;1>/*h", k[2]+mp), ErrHardenedDerivation, 0},
		{"hardened wildcard apostrophe", multi("2", k[0]+mp, k[1]+"/0/*'", k[2]+mp), ErrHardenedDerivation, 0},
		{"hardened step after xpub", multi("2", k[0]+"/0h/*", k[1]+"/0/*", k[2]+"/0/*"), ErrHardenedDerivation, len("wsh(multi(2,"+k[0]+"/") + 1},
		{"hardened multipath value", multi("1", k[0]+"/<0h;1>/*"), ErrHardenedDerivation, 0},
		{"threshold above n", multi("4", k[0]+mp, k[1]+mp, k[2]+mp), ErrThreshold, len("wsh(multi(") + 1},
		{"threshold zero", multi("0", k[0]+mp, k[1]+mp), ErrThreshold, 0},
		{"threshold not a number", multi("a", k[0]+mp, k[1]+mp), ErrThreshold, 0},
		{"threshold negative", multi("-1", k[0]+mp, k[1]+mp), ErrThreshold, 0},
		{"duplicate key", multi("2", k[0]+mp, k[1]+mp, k[0]+mp), ErrDuplicateKey, len("wsh(multi(2,"+k[0]+mp+","+k[1]+mp+",") + 1},
		{"duplicate key other path", multi("2", k[0]+"/0/*", k[1]+"/0/*", k[0]+"/1/*"), ErrDuplicateKey, 0},
		{"mixed networks", multi("2", k[0]+mp, mainKey+mp, k[2]+mp), ErrNetwork, 0},
		{"mainnet key on regtest", multi("1", mainKey+mp), ErrNetwork, 0},
		{"missing wildcard", multi("2", k[0]+"/<0;1>", k[1]+mp, k[2]+mp), ErrNotRanged, len("wsh(multi(2,") + 1},
		{"missing wildcard no steps", multi("2", k[0], k[1]+"/0/*"), ErrNotRanged, 0},
		{"wildcard not last", multi("1", k[0]+"/*/0"), ErrSyntax, 0},
		{"extended private key", multi("1", tprv+mp), ErrPrivateKey, 0},
		{"WIF private key", multi("1", "cVt4o7BGAig1UXywgGSmARhxMdzP5qvQsxKkSsc1XEkw3tDTQFpy"), ErrPrivateKey, 0},
		{"hex public key", multi("1", "0260b2003c386519fc9eadf2b5cf124dd8eea4c4e68d5e154050a9346ea98ce600"), ErrUnsupported, 0},
		{"mismatched multipath", multi("2", k[0]+mp, k[1]+"/<0;1;2>/*"), ErrMultipath, len("wsh(multi(2,"+k[0]+mp+",") + 1},
		{"duplicate multipath value", multi("1", k[0]+"/<0;0>/*"), ErrMultipath, 0},
		{"one-element multipath", multi("1", k[0]+"/<0>/*"), ErrMultipath, 0},
		{"two multipath steps", multi("1", k[0]+"/<0;1>/<2;3>/*"), ErrMultipath, 0},
		{"too many keys", multi("1", manyKeys(t, 21)...), ErrTooManyKeys, 0},
		{"legacy sh(multi) unsupported", "sh(" + multi("1", k[0]+mp)[4:len(multi("1", k[0]+mp))-1] + ")", ErrUnsupported, 4},
		{"tr unsupported", "tr(" + k[0] + mp + ")", ErrUnsupported, 1},
		{"bare multi unsupported", "multi(1," + k[0] + mp + ")", ErrUnsupported, 1},
		{"unknown function", "wsh(foo(1," + k[0] + mp + "))", ErrUnsupported, 5},
		{"unknown top", "foo(1)", ErrSyntax, 1},
		{"missing paren", "wsh(multi(1," + k[0] + mp + ")", ErrSyntax, 0},
		{"trailing garbage", multi("1", k[0]+mp) + "x", ErrSyntax, len(multi("1", k[0]+mp)) + 1},
		{"empty key", "wsh(multi(1,,))", ErrSyntax, len("wsh(multi(1,") + 1},
		{"empty", "", ErrSyntax, 1},
		{"key origin not closed", multi("1", "[deadbeef/48h"+k[0][strings.Index(k[0], "]")+1:]+mp), ErrSyntax, 0},
		{"short fingerprint", multi("1", "[deadbee/48h]"+k[0][strings.Index(k[0], "]")+1:]+mp), ErrSyntax, len("wsh(multi(1,[") + 1},
		{"wsh without multi", "wsh(" + k[0] + mp + ")", ErrSyntax, 5},
		{"nested too deep", strings.Repeat("wsh(", 20) + strings.Repeat(")", 20), ErrSyntax, 0},
		{"too many steps", multi("1", k[0]+strings.Repeat("/0", 17)+"/*"), ErrUnsupported, len("wsh(multi(1,"+k[0]) + 2},
		{"step out of range", multi("1", k[0]+"/2147483648/*"), ErrSyntax, 0},
		{"corrupt xpub", multi("1", k[0][:len(k[0])-1]+"x"+mp), ErrSyntax, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse(tt.in, regtest)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error = %v, want %v (descriptor %v)", err, tt.want, d)
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not a *ParseError", err)
			}
			if tt.col != 0 && pe.Col != tt.col {
				t.Fatalf("column %d, want %d: %v", pe.Col, tt.col, err)
			}
			if strings.Contains(err.Error(), tprv) {
				t.Fatal("error message repeats a private key")
			}
		})
	}
}

func manyKeys(t *testing.T, n int) []string {
	out := make([]string, n)
	for i := range out {
		_, k := account(t, byte(100+i), regtest)
		out[i] = k + "/0/*"
	}
	return out
}

func TestTwentyKeysAndThresholdAbove16(t *testing.T) {
	keys := manyKeys(t, 20)
	d := mustParse(t, "wsh(sortedmulti(17,"+strings.Join(keys, ",")+"))", regtest)
	der, err := d.Derive(0, 3)
	if err != nil {
		t.Fatal(err)
	}
	// 17 and 20 are pushed as numbers (BIP-383: "if k is greater than 16").
	if der.WitnessScript[0] != 0x01 || der.WitnessScript[1] != 17 {
		t.Fatalf("script starts %x", der.WitnessScript[:2])
	}
	n := len(der.WitnessScript)
	if der.WitnessScript[n-3] != 0x01 || der.WitnessScript[n-2] != 20 || der.WitnessScript[n-1] != txscript.OP_CHECKMULTISIG {
		t.Fatalf("script ends %x", der.WitnessScript[n-3:])
	}
	if d.MaxWitnessSize() != 1+1+17*73+3+len(der.WitnessScript) {
		t.Fatalf("MaxWitnessSize %d, script %d", d.MaxWitnessSize(), len(der.WitnessScript))
	}
}

func TestKeyWithoutOrigin(t *testing.T) {
	_, k := account(t, 1, regtest)
	bare := k[strings.Index(k, "]")+1:]
	d := mustParse(t, "wsh(multi(1,"+bare+"/0/*))", regtest)
	key := d.Keys()[0]
	pub, _ := key.XPub.ECPubKey()
	if key.HasOrigin || len(key.OriginPath) != 0 || !bytes.Equal(key.Fingerprint[:], hash160(pub.SerializeCompressed())[:4]) {
		t.Fatalf("key without origin: %+v", key)
	}
	der, _ := d.Derive(0, 5)
	if FormatPath(der.Keys[0].Path) != "m/0/5" {
		t.Fatalf("path %s", FormatPath(der.Keys[0].Path))
	}
	if _, _, ok := d.MatchPath(key.Fingerprint, []uint32{0, 5}); !ok {
		t.Fatal("MatchPath on key without origin")
	}
	if d.Branches() != 1 {
		t.Fatal("branches")
	}
	if _, err := d.BranchString(1); !errors.Is(err, ErrBranch) {
		t.Fatal("BranchString(1) on single-path descriptor")
	}
}

func TestConcurrentDerive(t *testing.T) {
	_, k := threeKeys(t)
	d := mustParse(t, fmt.Sprintf("wsh(sortedmulti(2,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*))", k[0], k[1], k[2]), regtest)
	want, _ := d.Derive(1, 9)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				got, err := d.Derive(1, 9)
				if err != nil || !bytes.Equal(got.PkScript, want.PkScript) {
					t.Error("concurrent Derive differs")
					return
				}
				_ = d.Keys()
				_ = d.String()
			}
		}()
	}
	wg.Wait()
}
