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

// TestCKDChildrenBatch: children (one inversion for the batch) gives each key child gives.
func TestCKDChildrenBatch(t *testing.T) {
	master, err := hdkeychain.NewMaster(bytes.Repeat([]byte{3}, 32), &chaincfg.MainNetParams)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := master.Neuter()
	p, err := newCKDParent(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		from uint32
		n    int
	}{{0, 1}, {0, 2}, {5, 37}, {1<<31 - 3, 3}} {
		got, err := p.children(r.from, r.n)
		if err != nil || len(got) != r.n {
			t.Fatalf("children(%d, %d): %d keys, %v", r.from, r.n, len(got), err)
		}
		for i, k := range got {
			want, err := p.child(r.from + uint32(i))
			if err != nil {
				t.Fatal(err)
			}
			if !k.IsEqual(want) {
				t.Fatalf("children(%d, %d)[%d] = %x, want %x", r.from, r.n, i, k.SerializeCompressed(), want.SerializeCompressed())
			}
		}
	}
	if _, err := p.children(1<<31-2, 3); !errors.Is(err, hdkeychain.ErrDeriveHardFromPublic) {
		t.Fatalf("children into the hardened range: %v", err)
	}
}

// TestPkScriptsMatchesPkScript: PkScripts over a range is PkScript at each index, for every
// script type, on both branches, across a chunk boundary.
func TestPkScriptsMatchesPkScript(t *testing.T) {
	var xpubs []string
	for i := range 3 {
		m, err := hdkeychain.NewMaster(bytes.Repeat([]byte{byte(20 + i)}, 32), &chaincfg.TestNet3Params)
		if err != nil {
			t.Fatal(err)
		}
		pub, _ := m.Neuter()
		xpubs = append(xpubs, pub.String()+"/<0;1>/*")
	}
	for _, text := range []string{
		"wsh(sortedmulti(2," + xpubs[0] + "," + xpubs[1] + "," + xpubs[2] + "))",
		"sh(wsh(multi(2," + xpubs[0] + "," + xpubs[1] + "," + xpubs[2] + ")))",
		"tr(" + xpubs[0] + ",sortedmulti_a(2," + xpubs[1] + "," + xpubs[2] + "))",
	} {
		batch, err := Parse(text, &chaincfg.TestNet3Params)
		if err != nil {
			t.Fatal(err)
		}
		single, _ := Parse(text, &chaincfg.TestNet3Params) // its own cache
		for branch := range uint32(2) {
			from, n := uint32(3), pkScriptsChunk+5
			got, err := batch.PkScripts(branch, from, n)
			if err != nil || len(got) != n {
				t.Fatalf("%s: %d scripts, %v", text[:3], len(got), err)
			}
			for i, pk := range got {
				want, err := single.PkScript(branch, from+uint32(i))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(pk, want) {
					t.Fatalf("%s branch %d index %d: %x, want %x", text[:3], branch, from+uint32(i), pk, want)
				}
			}
		}
		if _, err := batch.PkScripts(2, 0, 1); !errors.Is(err, ErrBranch) {
			t.Fatalf("branch 2: %v", err)
		}
		if got, err := batch.PkScripts(0, 1<<31-2, 3); !errors.Is(err, ErrIndex) || len(got) != 2 {
			t.Fatalf("into the hardened range: %d scripts, %v", len(got), err)
		}
	}
}

func BenchmarkPkScripts(b *testing.B) {
	var xpubs []string
	for i := range 3 {
		m, _ := hdkeychain.NewMaster(bytes.Repeat([]byte{byte(20 + i)}, 32), &chaincfg.TestNet3Params)
		pub, _ := m.Neuter()
		xpubs = append(xpubs, pub.String()+"/<0;1>/*")
	}
	text := "wsh(sortedmulti(2," + xpubs[0] + "," + xpubs[1] + "," + xpubs[2] + "))"
	b.Run("PkScript", func(b *testing.B) {
		d, _ := Parse(text, &chaincfg.TestNet3Params)
		i := uint32(0)
		for b.Loop() {
			if _, err := d.PkScript(0, i); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("PkScripts-256", func(b *testing.B) {
		d, _ := Parse(text, &chaincfg.TestNet3Params)
		i := uint32(0)
		for b.Loop() {
			if _, err := d.PkScripts(0, i, 256); err != nil {
				b.Fatal(err)
			}
			i += 256
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/256, "ns/script")
	})
}
