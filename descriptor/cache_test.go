package descriptor

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"

	lru "github.com/hashicorp/golang-lru/v2"
)

// cacheDescriptors returns descriptors of every output type over the same three keys, and a
// second wsh descriptor that differs only in its threshold.
func cacheDescriptors(t *testing.T) map[string]*Descriptor {
	_, k := threeKeys(t)
	return map[string]*Descriptor{
		"wsh":     mustParse(t, fmt.Sprintf("wsh(sortedmulti(2,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*))", k[0], k[1], k[2]), regtest),
		"wsh-1of": mustParse(t, fmt.Sprintf("wsh(sortedmulti(1,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*))", k[0], k[1], k[2]), regtest),
		"sh-wsh":  mustParse(t, fmt.Sprintf("sh(wsh(multi(2,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*)))", k[0], k[1], k[2]), regtest),
		"tr":      mustParse(t, fmt.Sprintf("tr(%s,{multi_a(2,%s/<0;1>/*,%s/<0;1>/*),sortedmulti_a(2,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*)})", NUMSKey, k[0], k[1], k[0], k[1], k[2]), regtest),
		"tr-xpub": mustParse(t, fmt.Sprintf("tr(%s/<0;1>/*,multi_a(2,%s/<0;1>/*,%s/<0;1>/*))", k[2], k[0], k[1]), regtest),
	}
}

// TestDeriveCacheRightEntry: for every descriptor kind, cold and warm, interleaved across
// descriptors sharing keys, Derive(b, i) is exactly the uncached derivation at (b, i), and each
// key in it is its slot's key at the slot's (fingerprint, path) for (b, i).
func TestDeriveCacheRightEntry(t *testing.T) {
	ds := cacheDescriptors(t)
	for round := 0; round < 2; round++ {
		for i := uint32(0); i < 12; i++ {
			for b := uint32(0); b < 2; b++ {
				for name, d := range ds {
					got, err := d.Derive(b, i)
					if err != nil {
						t.Fatal(err)
					}
					want, err := d.out.derive(d.net, int(b), i)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, want) {
						t.Fatalf("%s: Derive(%d, %d) differs from the uncached derivation", name, b, i)
					}
					slots := d.Keys()
					for _, k := range got.Keys {
						s := slots[k.Slot]
						if k.Fingerprint != s.Fingerprint || !slices.Equal(k.Path, s.Path(b, i)) {
							t.Fatalf("%s: key of slot %d at %d/%d carries %x %v", name, k.Slot, b, i, k.Fingerprint, k.Path)
						}
					}
				}
			}
		}
	}
	a, _ := ds["wsh"].Derive(0, 3)
	c, _ := ds["wsh-1of"].Derive(0, 3)
	if slices.Equal(a.PkScript, c.PkScript) {
		t.Fatal("two descriptors over the same keys share a derivation")
	}
}

// TestDeriveCacheReturnsCopies: changing what Derive returned does not change what the next
// caller gets.
func TestDeriveCacheReturnsCopies(t *testing.T) {
	for name, d := range cacheDescriptors(t) {
		want, _ := d.out.derive(d.net, 1, 5)
		for n := 0; n < 2; n++ { // the first result comes from a miss, the second from a hit
			scribble(d.Derive(1, 5))
			pk, _ := d.PkScript(1, 5)
			pk[2] ^= 0xff
		}
		again, _ := d.Derive(1, 5)
		if !reflect.DeepEqual(again, want) {
			t.Fatalf("%s: a caller's change reached the cache", name)
		}
	}
}

// scribble changes every slice of a derivation in place.
func scribble(got *Derived, _ error) {
	got.PkScript[3] ^= 0xff
	got.Keys[0].Path[0] = 7
	got.Keys = got.Keys[:1]
	if got.WitnessScript != nil {
		got.WitnessScript[0] ^= 0xff
	}
	if got.Taproot != nil {
		got.Taproot.MerkleRoot[0] ^= 0xff
		got.Taproot.Leaves[0].ControlBlock[0] ^= 0xff
		got.Taproot.Leaves[0].Script[0] ^= 0xff
		got.Taproot.Leaves[0].Keys[0].Path[0] = 7
		if len(got.Keys) > 0 && len(got.Keys[0].LeafHashes) > 0 {
			got.Keys[0].LeafHashes[0][0] ^= 0xff
		}
	}
}

// TestDeriveCacheBound: the cache never holds more than MaxCachedDerivations results; an evicted
// (branch, index) derives again to the same result.
func TestDeriveCacheBound(t *testing.T) {
	d := cacheDescriptors(t)["wsh"]
	first, _ := d.Derive(0, 0)
	for i := uint32(1); i < MaxCachedDerivations+20; i++ {
		if _, err := d.Derive(1, i); err != nil {
			t.Fatal(err)
		}
	}
	if n := d.derived.Len(); n != MaxCachedDerivations {
		t.Fatalf("cache holds %d results, bound %d", n, MaxCachedDerivations)
	}
	if d.derived.Contains(uint64(0)) {
		t.Fatal("the least recently used result was not evicted")
	}
	again, _ := d.Derive(0, 0)
	if !reflect.DeepEqual(first, again) {
		t.Fatal("an evicted result derives differently")
	}
}

// TestDeriveCacheConcurrent: goroutines deriving overlapping indexes through a cache small
// enough to evict constantly (run with -race) always get the uncached result.
func TestDeriveCacheConcurrent(t *testing.T) {
	for name, d := range cacheDescriptors(t) {
		small, _ := lru.New[uint64, *Derived](3)
		d.derived = small
		want := map[uint32]*Derived{}
		for i := uint32(0); i < 10; i++ {
			want[i], _ = d.out.derive(d.net, 1, i)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for g := 0; g < 6; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for n := 0; n < 40; n++ {
					i := uint32((g*3 + n) % 10)
					got, err := d.Derive(1, i)
					if err != nil || !reflect.DeepEqual(got, want[i]) {
						errs <- fmt.Errorf("%s: goroutine %d got a wrong derivation at 1/%d (%v)", name, g, i, err)
						return
					}
					got.PkScript[0] ^= 0xff // callers may scribble on their copy
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	}
}

// BenchmarkDeriveCold: a (branch, index) not derived before (the child keys and the script).
func BenchmarkDeriveCold(b *testing.B) {
	_, k := threeKeys(b)
	d := mustParse(b, fmt.Sprintf("wsh(sortedmulti(2,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*))", k[0], k[1], k[2]), regtest)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Derive(0, uint32(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeriveCached: the same (branch, index) again (a copy of the cached result).
func BenchmarkDeriveCached(b *testing.B) {
	_, k := threeKeys(b)
	d := mustParse(b, fmt.Sprintf("wsh(sortedmulti(2,%s/<0;1>/*,%s/<0;1>/*,%s/<0;1>/*))", k[0], k[1], k[2]), regtest)
	for i := uint32(0); i < 20; i++ {
		_, _ = d.Derive(0, i) // warm
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := d.Derive(0, uint32(i%20)); err != nil {
			b.Fatal(err)
		}
	}
}
