package descriptor

import (
	"bytes"
	"errors"
	"testing"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
)

// TestCKDBIP32Vector checks the cached-parent derivation against BIP-32's test vector 1
// (https://github.com/bitcoin/bips/blob/master/bip-0032.mediawiki#test-vector-1): the public
// child 1 of m/0H is the key of chain m/0H/1.
func TestCKDBIP32Vector(t *testing.T) {
	parent, err := hdkeychain.NewKeyFromString("xpub68Gmy5EdvgibQVfPdqkBBCHxA5htiqg55crXYuXoQRKfDBFA1WEjWgP6LHhwBZeNK1VTsfTFUHCdrfp1bgwQ9xv5ski8PX9rL2dZXvgGDnw")
	if err != nil {
		t.Fatal(err)
	}
	want, err := hdkeychain.NewKeyFromString("xpub6ASuArnXKPbfEwhqN6e3mwBcDTgzisQN1wXN9BJcM47sSikHjJf3UFHKkNAWbWMiGj7Wf5uMash7SyYq527Hqck2AxYysAA7xmALppuCkwQ")
	if err != nil {
		t.Fatal(err)
	}
	p, err := newCKDParent(parent)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p.child(1)
	if err != nil {
		t.Fatal(err)
	}
	wantPub, _ := want.ECPubKey()
	if !got.IsEqual(wantPub) {
		t.Fatalf("m/0H/1 = %x, want %x", got.SerializeCompressed(), wantPub.SerializeCompressed())
	}
}

// TestCKDMatchesHDKeychain derives the same children with hdkeychain's Derive and with the
// cached parent, for an xpub and an xprv (whose public key the parent takes).
func TestCKDMatchesHDKeychain(t *testing.T) {
	master, err := hdkeychain.NewMaster(bytes.Repeat([]byte{7}, 32), &chaincfg.MainNetParams)
	if err != nil {
		t.Fatal(err)
	}
	branch, err := master.Derive(1)
	if err != nil {
		t.Fatal(err)
	}
	pubBranch, err := branch.Neuter()
	if err != nil {
		t.Fatal(err)
	}
	for _, xk := range []*hdkeychain.ExtendedKey{pubBranch, branch} {
		p, err := newCKDParent(xk)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range []uint32{0, 1, 2, 19, 20, 1000, 65_535, 1<<31 - 1} {
			c, err := pubBranch.Derive(i)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := c.ECPubKey()
			got, err := p.child(i)
			if err != nil {
				t.Fatalf("child %d: %v", i, err)
			}
			if !got.IsEqual(want) {
				t.Fatalf("child %d = %x, want %x", i, got.SerializeCompressed(), want.SerializeCompressed())
			}
		}
	}
}

func TestCKDRefusals(t *testing.T) {
	master, err := hdkeychain.NewMaster(bytes.Repeat([]byte{9}, 32), &chaincfg.MainNetParams)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := master.Neuter()
	p, err := newCKDParent(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.child(hdkeychain.HardenedKeyStart); !errors.Is(err, hdkeychain.ErrDeriveHardFromPublic) {
		t.Fatalf("hardened child: %v, want ErrDeriveHardFromPublic", err)
	}
	deep := hdkeychain.NewExtendedKey(chaincfg.MainNetParams.HDPublicKeyID[:], p.ser[:], p.chainCode[:], []byte{0, 0, 0, 0}, 255, 0, false)
	dp, err := newCKDParent(deep)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dp.child(0); !errors.Is(err, hdkeychain.ErrDeriveBeyondMaxDepth) {
		t.Fatalf("child at depth 256: %v, want ErrDeriveBeyondMaxDepth", err)
	}
}

func BenchmarkChildPub(b *testing.B) {
	master, _ := hdkeychain.NewMaster(bytes.Repeat([]byte{7}, 32), &chaincfg.MainNetParams)
	pub, _ := master.Neuter()
	b.Run("hdkeychain", func(b *testing.B) {
		i := uint32(0)
		for b.Loop() {
			c, err := pub.Derive(i)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.ECPubKey(); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("cached-parent", func(b *testing.B) {
		p, _ := newCKDParent(pub)
		i := uint32(0)
		for b.Loop() {
			if _, err := p.child(i); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
