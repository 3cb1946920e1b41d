package descriptor

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2/schnorr"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/txscript"
)

// The ranged sortedmulti_a vector of BIP-387, "Test Vectors"
// (https://github.com/bitcoin/bips/blob/master/bip-0387.mediawiki#test-vectors):
// NUMS internal key, two xpubs, scripts at indexes 0, 1 and 2.
func TestSortedMultiABIP387(t *testing.T) {
	d := mustParse(t, "tr("+NUMSKey+",sortedmulti_a(2,xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/*,xpub68NZiKmJWnxxS6aaHmn81bvJeTESw724CRDs6HbuccFQN9Ku14VQrADWgqbhhTHBaohPX4CjNLf9fq9MYo6oDaPPLPxSb7gwQN3ih19Zm4Y/0/0/*))", &chaincfg.MainNetParams)
	want := []string{
		"5120abd47468515223f58a1a18edfde709a7a2aab2b696d59ecf8c34f0ba274ef772",
		"5120fe62e7ed20705bd1d3678e072bc999acb014f07795fa02cb8f25a7aa787e8cbd",
		"51201311093750f459039adaa2a5ed23b0f7a8ae2c2ffb07c5390ea37e2fb1050b41",
	}
	for i, w := range want {
		s, err := d.PkScript(0, uint32(i))
		if err != nil {
			t.Fatal(err)
		}
		if hex.EncodeToString(s) != w {
			t.Errorf("index %d: %x, BIP-387 says %s", i, s, w)
		}
	}
	if d.Type() != P2TR || d.Threshold() != 2 || !d.Sorted() || d.KeyPathSpendable() {
		t.Fatalf("Type %s Threshold %d Sorted %v KeyPathSpendable %v", d.Type(), d.Threshold(), d.Sorted(), d.KeyPathSpendable())
	}
}

// The invalid descriptors of BIP-387, "Test Vectors": every one is refused.
func TestMultiAInvalidBIP387(t *testing.T) {
	for name, s := range map[string]string{
		"unsupported top level":      "multi_a(1,03669b8afcec803a0d323e9a17f3ea8e68e8abe5a278020a929adbec52421adbd0)",
		"unsupported sh() context":   "sh(multi_a(1,03669b8afcec803a0d323e9a17f3ea8e68e8abe5a278020a929adbec52421adbd0))",
		"unsupported wsh() context":  "wsh(multi_a(1,03669b8afcec803a0d323e9a17f3ea8e68e8abe5a278020a929adbec52421adbd0))",
		"invalid threshold":          "tr(" + NUMSKey + ",multi_a(a,03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd))",
		"threshold of 0":             "tr(" + NUMSKey + ",multi_a(0,03a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd))",
		"uncompressed pubkey":        "tr(" + NUMSKey + ",multi_a(1,04a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd5b8dec5235a0fa8722476c7709c02559e3aa73aa03918ba2d492eea75abea235))",
		"threshold larger than keys": "tr(" + NUMSKey + ",multi_a(3,L4rK1yDtCWekvXuE6oXD9jCYfFNV2cWRpVuPLBcCU2z8TrisoyY1,5KYZdUEo39z3FPrtuX2QbbwGnNP5zTd7yyr2SC1j299sBCnWjss))",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(s, &chaincfg.MainNetParams); err == nil {
				t.Fatal("accepted")
			} else if strings.Contains(err.Error(), "L4rK1yDt") {
				t.Fatal("error repeats a private key")
			}
		})
	}
}

func trTree(k [3]string) string {
	mp := "/<0;1>/*"
	return fmt.Sprintf("tr(%s,{multi_a(2,%s,%s),{sortedmulti_a(2,%s,%s),multi_a(2,%s,%s)}})",
		NUMSKey, k[0]+mp, k[1]+mp, k[0]+mp, k[2]+mp, k[1]+mp, k[2]+mp)
}

// Every leaf's control block proves the leaf against the output key
// (BIP-341 script-path verification, txscript's implementation), keys are
// one slot each across leaves, and each key lists exactly its leaves.
func TestTaprootTreeCommitments(t *testing.T) {
	masters, k := threeKeys(t)
	d := mustParse(t, trTree(k), regtest)
	if len(d.Keys()) != 3 || d.Branches() != 2 || d.Threshold() != 2 || d.Sorted() {
		t.Fatalf("keys %d branches %d threshold %d sorted %v", len(d.Keys()), d.Branches(), d.Threshold(), d.Sorted())
	}
	if again := mustParse(t, d.String(), regtest); again.String() != d.String() {
		t.Fatal("String() does not round-trip")
	}
	for _, br := range []uint32{0, 1} {
		der, err := d.Derive(br, 7)
		if err != nil {
			t.Fatal(err)
		}
		tr := der.Taproot
		if tr == nil || len(tr.Leaves) != 3 || der.Type != P2TR {
			t.Fatalf("taproot %+v", tr)
		}
		program := der.PkScript[2:]
		if der.PkScript[0] != txscript.OP_1 || len(program) != 32 {
			t.Fatalf("pkScript %x", der.PkScript)
		}
		for i, l := range tr.Leaves {
			cb, err := txscript.ParseControlBlock(l.ControlBlock)
			if err != nil {
				t.Fatal(err)
			}
			if err := txscript.VerifyTaprootLeafCommitment(cb, program, l.Script); err != nil {
				t.Fatalf("leaf %d: %v", i, err)
			}
			if want := []int{1, 2, 2}[i]; l.Depth != want || len(cb.InclusionProof) != 32*want {
				t.Fatalf("leaf %d depth %d proof %d", i, l.Depth, len(cb.InclusionProof))
			}
			if l.LeafHash != txscript.NewBaseTapLeaf(l.Script).TapHash() {
				t.Fatalf("leaf %d hash", i)
			}
		}
		if len(der.Keys) != 3 {
			t.Fatalf("%d derived keys", len(der.Keys))
		}
		for _, dk := range der.Keys {
			if len(dk.LeafHashes) != 2 || dk.Internal {
				t.Fatalf("slot %d in %d leaves (internal %v)", dk.Slot, len(dk.LeafHashes), dk.Internal)
			}
			// The key derives from the slot's master along Path.
			if pub := derivePath(t, masters[dk.Slot], dk.Path); !pub.IsEqual(dk.PubKey) {
				t.Fatalf("slot %d key does not derive from its master along %s", dk.Slot, FormatPath(dk.Path))
			}
			if !strings.Contains(hex.EncodeToString(tr.Leaves[0].Script)+hex.EncodeToString(tr.Leaves[1].Script)+hex.EncodeToString(tr.Leaves[2].Script),
				hex.EncodeToString(schnorr.SerializePubKey(dk.PubKey))) {
				t.Fatal("derived key not in any leaf")
			}
		}
		// The script tree is "ours" at (br, 7).
		gb, gi, ok := d.Match(der.PkScript, 10)
		if !ok || gb != br || gi != 7 {
			t.Fatalf("Match = %d/%d %v", gb, gi, ok)
		}
	}
	if _, _, ok := d.Match([]byte{0x51, 0x20}, 10); ok {
		t.Fatal("Match accepted a foreign script")
	}
	// Witness: the largest leaf (2-of-2 at depth 2) costs 1+2·66+71+(1+33+64).
	if got := d.MaxWitnessSize(); got != 1+2*66+71+98 {
		t.Fatalf("MaxWitnessSize %d", got)
	}
}

func TestTaprootInternalKeys(t *testing.T) {
	_, k := threeKeys(t)
	mp := "/<0;1>/*"
	// A ranged internal key: key path spendable, and the key is in Keys().
	d := mustParse(t, "tr("+k[0]+mp+",multi_a(2,"+k[1]+mp+","+k[2]+mp+"))", regtest)
	if !d.KeyPathSpendable() || len(d.Keys()) != 3 {
		t.Fatalf("KeyPathSpendable %v keys %d", d.KeyPathSpendable(), len(d.Keys()))
	}
	der, _ := d.Derive(0, 0)
	if !der.Keys[0].Internal || len(der.Keys[0].LeafHashes) != 0 || !schnorrEqual(der.Keys[0].PubKey, der.Taproot.InternalKey) {
		t.Fatal("internal key not reported first")
	}
	// The internal key repeated in a leaf is one slot.
	d = mustParse(t, "tr("+k[0]+mp+",multi_a(2,"+k[0]+mp+","+k[2]+mp+"))", regtest)
	if len(d.Keys()) != 2 {
		t.Fatalf("%d slots", len(d.Keys()))
	}
	// A fixed key other than NUMS is spendable by whoever holds it; the
	// compressed form of NUMS is NUMS.
	other := "02a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd"
	if !mustParse(t, "tr("+other+",multi_a(1,"+k[1]+mp+"))", regtest).KeyPathSpendable() {
		t.Fatal("foreign fixed key reported unspendable")
	}
	if mustParse(t, "tr(02"+NUMSKey+",multi_a(1,"+k[1]+mp+"))", regtest).KeyPathSpendable() {
		t.Fatal("NUMS reported spendable")
	}
	// wsh and sh(wsh) have no key path; sh(wsh) pays to P2SH.
	sh := mustParse(t, "sh(wsh(sortedmulti(2,"+k[0]+mp+","+k[1]+mp+")))", regtest)
	sd, _ := sh.Derive(1, 3)
	if sh.KeyPathSpendable() || sh.Type() != P2SHP2WSH || sh.MaxScriptSigSize() != 35 || len(sd.RedeemScript) != 34 ||
		txscript.GetScriptClass(sd.PkScript) != txscript.ScriptHashTy {
		t.Fatalf("sh(wsh): %s %d %x", sh.Type(), sh.MaxScriptSigSize(), sd.PkScript)
	}
}

func schnorrEqual(a, b interface{ SerializeCompressed() []byte }) bool {
	return hex.EncodeToString(a.SerializeCompressed()[1:]) == hex.EncodeToString(b.SerializeCompressed()[1:])
}

func TestTaprootParseErrors(t *testing.T) {
	_, k := threeKeys(t)
	mp := "/<0;1>/*"
	tests := []struct {
		name, in string
		want     error
	}{
		{"tr without tree", "tr(" + k[0] + mp + ")", ErrUnsupported},
		{"multi in a leaf", "tr(" + NUMSKey + ",multi(1," + k[0] + mp + "))", ErrUnsupported},
		{"pk leaf", "tr(" + NUMSKey + ",pk(" + k[0] + mp + "))", ErrUnsupported},
		{"three subtrees", "tr(" + NUMSKey + ",{multi_a(1," + k[0] + mp + "),multi_a(1," + k[1] + mp + "),multi_a(1," + k[2] + mp + ")})", ErrSyntax},
		{"one subtree", "tr(" + NUMSKey + ",{multi_a(1," + k[0] + mp + ")})", ErrSyntax},
		{"unclosed brace", "tr(" + NUMSKey + ",{multi_a(1," + k[0] + mp + "),multi_a(1," + k[1] + mp + "))", ErrSyntax},
		{"internal key not on curve", "tr(" + strings.Repeat("ff", 32) + ",multi_a(1," + k[0] + mp + "))", ErrSyntax},
		{"internal key a script", "tr(multi_a(1," + k[0] + mp + ")," + "multi_a(1," + k[1] + mp + "))", ErrSyntax},
		{"same xpub, other path", "tr(" + NUMSKey + ",{multi_a(1," + k[0] + mp + "),multi_a(1," + k[0] + "/<2;3>/*)})", ErrDuplicateKey},
		{"duplicate key in a leaf", "tr(" + NUMSKey + ",multi_a(2," + k[0] + mp + "," + k[0] + mp + "))", ErrDuplicateKey},
		{"threshold above n", "tr(" + NUMSKey + ",multi_a(3," + k[0] + mp + "," + k[1] + mp + "))", ErrThreshold},
		{"sh(wsh(multi_a))", "sh(wsh(multi_a(1," + k[0] + mp + ")))", ErrUnsupported},
		{"sh(multi)", "sh(multi(1," + k[0] + mp + "))", ErrUnsupported},
		{"tree too deep", "tr(" + NUMSKey + "," + strings.Repeat("{multi_a(1,"+k[0]+mp+"),", 45) + "multi_a(1," + k[0] + mp + ")" + strings.Repeat("}", 45) + ")", ErrSyntax},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in, regtest)
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
}

// BIP-386 "Test Vectors" (https://github.com/bitcoin/bips/blob/master/bip-0386.mediawiki#test-vectors):
// the valid tr() descriptors there are single keys or pk()/pkh() leaves, which a multisig
// co-signer does not register: they are refused as unsupported (or for their private keys),
// never as syntax errors; the invalid ones are refused.
func TestTrBIP386(t *testing.T) {
	valid := []string{
		"tr(a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd)",
		"tr(L4rK1yDtCWekvXuE6oXD9jCYfFNV2cWRpVuPLBcCU2z8TrisoyY1)",
		"tr(a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd,pk(669b8afcec803a0d323e9a17f3ea8e68e8abe5a278020a929adbec52421adbd0))",
		"tr(a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd,pkh(L4rK1yDtCWekvXuE6oXD9jCYfFNV2cWRpVuPLBcCU2z8TrisoyY1))",
		"tr(xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/0/*,pk(xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/1/*))",
	}
	for _, s := range valid {
		_, err := Parse(s, &chaincfg.MainNetParams)
		if !errors.Is(err, ErrUnsupported) && !errors.Is(err, ErrPrivateKey) {
			t.Errorf("%.40s…: %v, want unsupported", s, err)
		}
	}
	invalid := []string{
		"tr(5KYZdUEo39z3FPrtuX2QbbwGnNP5zTd7yyr2SC1j299sBCnWjss)",
		"tr(04a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd5b8dec5235a0fa8722476c7709c02559e3aa73aa03918ba2d492eea75abea235)",
		"wsh(tr(a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd))",
		"sh(tr(a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd))",
		"tr(04a34b99f22c790c4e36b2b3c2c35a36db06226e41c692fc82b8b56ac1c540c5bd5b8dec5235a0fa8722476c7709c02559e3aa73aa03918ba2d492eea75abea235,multi_a(1,xpub6ERApfZwUNrhLCkDtcHTcxd75RbzS1ed54G1LkBUHQVHQKqhMkhgbmJbZRkrgZw4koxb5JaHWkY4ALHY2grBGRjaDMzQLcgJvLJuZZvRcEL/*))",
	}
	for _, s := range invalid {
		if _, err := Parse(s, &chaincfg.MainNetParams); err == nil {
			t.Errorf("%.40s… accepted", s)
		}
	}
}

// An unspendable ranged internal key: an extended public key whose key is the NUMS point H
// (any chain code). Its children are unspendable too, so the key path is reported unspendable;
// a ranged key of a co-signer is spendable.
func TestNUMSExtendedInternalKey(t *testing.T) {
	_, k := threeKeys(t)
	h, _ := hex.DecodeString("02" + NUMSKey)
	nums := hdkeychain.NewExtendedKey(regtest.HDPublicKeyID[:], h, bytes.Repeat([]byte{7}, 32), []byte{0, 0, 0, 0}, 0, 0, false)
	mp := "/<0;1>/*"
	d := mustParse(t, "tr("+nums.String()+mp+",multi_a(2,"+k[0]+mp+","+k[1]+mp+"))", regtest)
	if d.KeyPathSpendable() {
		t.Fatal("NUMS xpub internal key reported spendable")
	}
	if _, err := d.Derive(1, 3); err != nil {
		t.Fatal(err)
	}
	if !mustParse(t, "tr("+k[2]+mp+",multi_a(2,"+k[0]+mp+","+k[1]+mp+"))", regtest).KeyPathSpendable() {
		t.Fatal("co-signer internal key reported unspendable")
	}
}
