package keystore

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
)

// testAccounts returns two co-signers' Keys (different seeds) on regtest.
func testAccounts(t *testing.T) (*Keys, *Keys) {
	t.Helper()
	a, err := NewKeys(bytes.Repeat([]byte{1}, 32), fmt.Sprintf("%064x", 2), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewKeys(bytes.Repeat([]byte{2}, 32), fmt.Sprintf("%064x", 3), &chaincfg.RegressionNetParams)
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// expectedPub is the oracle: the public key at AccountXPub/steps…, derived publicly from the
// account xpub (no private key, no cache).
func expectedPub(t testing.TB, k *Keys, steps []uint32) []byte {
	t.Helper()
	xk, err := hdkeychain.NewKeyFromString(k.Public.AccountXPub)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range steps {
		if xk, err = xk.Derive(s); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := xk.ECPubKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub.SerializeCompressed()
}

// checkPair fails unless priv and pub are the key pair of k (its fingerprint) at steps.
func checkPair(t testing.TB, k *Keys, steps []uint32, priv *btcec.PrivateKey, pub *btcec.PublicKey) {
	t.Helper()
	want := expectedPub(t, k, steps)
	if !bytes.Equal(pub.SerializeCompressed(), want) || !bytes.Equal(priv.PubKey().SerializeCompressed(), want) {
		t.Fatalf("key of %s at %v: got pub %x (priv's %x), want %x", k.Public.Fingerprint, steps,
			pub.SerializeCompressed(), priv.PubKey().SerializeCompressed(), want)
	}
}

// TestSigningKeyCacheRightKeyForPath: two accounts asked for the same and for different paths,
// interleaved, cold and then warm: every answer is the key of that account (fingerprint) at that
// path, never another path's or the other account's.
func TestSigningKeyCacheRightKeyForPath(t *testing.T) {
	a, b := testAccounts(t)
	if a.Public.Fingerprint == b.Public.Fingerprint {
		t.Fatal("test accounts share a fingerprint")
	}
	var paths [][]uint32
	for br := uint32(0); br < 2; br++ {
		for i := uint32(0); i < 6; i++ {
			paths = append(paths, []uint32{br, i})
		}
	}
	// Paths whose encodings could collide if the key were built carelessly: [0 1] vs [1],
	// [0] vs [0 0], a one-step and a three-step path.
	paths = append(paths, []uint32{1}, []uint32{0}, []uint32{0, 0}, []uint32{0, 1, 5}, []uint32{}, []uint32{256, 0}, []uint32{0, 256})
	for round := 0; round < 3; round++ {
		for _, p := range paths {
			for _, k := range []*Keys{a, b} {
				priv, pub, err := k.SigningKey(p...)
				if err != nil {
					t.Fatal(err)
				}
				checkPair(t, k, p, priv, pub)
				d, err := k.DeriveRelative(p...)
				if err != nil || !d.PubKey().IsEqual(pub) {
					t.Fatalf("DeriveRelative(%v) disagrees with SigningKey: %v", p, err)
				}
			}
		}
	}
	distinct := map[string]bool{}
	for _, p := range paths {
		distinct[pathKey(p)] = true
	}
	if n := a.cache.leaves.Len(); n != len(distinct) {
		t.Fatalf("account a caches %d pairs for %d paths", n, len(distinct))
	}
}

// TestSigningKeyCallerCopy: zeroing the key a caller got does not change the cached one.
func TestSigningKeyCallerCopy(t *testing.T) {
	a, _ := testAccounts(t)
	priv, _, err := a.SigningKey(0, 3)
	if err != nil {
		t.Fatal(err)
	}
	priv.Zero()
	priv2, pub2, err := a.SigningKey(0, 3)
	if err != nil {
		t.Fatal(err)
	}
	checkPair(t, a, []uint32{0, 3}, priv2, pub2)
}

// TestSigningKeyHardenedRefused: a hardened step is refused, before and after the path's
// unhardened neighbour is cached.
func TestSigningKeyHardenedRefused(t *testing.T) {
	a, _ := testAccounts(t)
	if _, _, err := a.SigningKey(0, 1); err != nil {
		t.Fatal(err)
	}
	for _, p := range [][]uint32{{0, 1 + hdkeychain.HardenedKeyStart}, {hdkeychain.HardenedKeyStart, 1}} {
		if _, _, err := a.SigningKey(p...); !errors.Is(err, ErrNotOurKey) {
			t.Fatalf("SigningKey(%v) = %v, want ErrNotOurKey", p, err)
		}
	}
}

// TestSigningKeyCacheBound: the cache never holds more than its bound; an evicted private key is
// zeroed in the cache, the copies callers hold are not, and an evicted path derives again
// correctly.
func TestSigningKeyCacheBound(t *testing.T) {
	a, _ := testAccounts(t)
	a.cache = newKeyCache(8, 2)
	first, _, err := a.SigningKey(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	stored, ok := a.cache.leaves.Peek(pathKey([]uint32{0, 0}))
	if !ok {
		t.Fatal("the first pair was not cached")
	}
	for i := uint32(1); i < 30; i++ {
		if _, _, err := a.SigningKey(i%2, i); err != nil {
			t.Fatal(err)
		}
		if n := a.cache.leaves.Len(); n > 8 {
			t.Fatalf("cache holds %d pairs, bound 8", n)
		}
	}
	if _, still := a.cache.leaves.Peek(pathKey([]uint32{0, 0})); still {
		t.Fatal("the least recently used pair was not evicted")
	}
	if !stored.priv.Key.IsZero() {
		t.Fatal("the evicted private key was not zeroed")
	}
	checkPair(t, a, []uint32{0, 0}, first, first.PubKey()) // the caller's copy is intact
	priv, pub, err := a.SigningKey(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	checkPair(t, a, []uint32{0, 0}, priv, pub)
	if a.cache.branches.Len() > 2 {
		t.Fatalf("branch cache holds %d keys, bound 2", a.cache.branches.Len())
	}
}

// TestSigningKeyConcurrent: many goroutines asking for overlapping paths on a cache small enough
// to evict all the time (run with -race): every answer is the right pair.
func TestSigningKeyConcurrent(t *testing.T) {
	a, _ := testAccounts(t)
	a.cache = newKeyCache(4, 1)
	want := map[[2]uint32][]byte{}
	for br := uint32(0); br < 2; br++ {
		for i := uint32(0); i < 8; i++ {
			want[[2]uint32{br, i}] = expectedPub(t, a, []uint32{br, i})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for n := 0; n < 60; n++ {
				br, i := uint32((g+n)%2), uint32((g*7+n)%8)
				priv, pub, err := a.SigningKey(br, i)
				if err != nil {
					errs <- err
					return
				}
				w := want[[2]uint32{br, i}]
				if !bytes.Equal(pub.SerializeCompressed(), w) || !bytes.Equal(priv.PubKey().SerializeCompressed(), w) {
					errs <- fmt.Errorf("goroutine %d got a wrong key for %d/%d", g, br, i)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// BenchmarkDeriveCold: deriving a fresh index's key pair (BIP32 CKDpriv from the cached branch
// key, plus its public key): what every request paid per input before the cache.
func BenchmarkDeriveCold(b *testing.B) {
	k, err := NewKeys(bytes.Repeat([]byte{1}, 32), fmt.Sprintf("%064x", 2), &chaincfg.RegressionNetParams)
	if err != nil {
		b.Fatal(err)
	}
	k.cache = newKeyCache(1<<20, 4)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := k.SigningKey(0, uint32(i)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeriveUncached: the derivation as it was (account → branch → index, no cache at all).
func BenchmarkDeriveUncached(b *testing.B) {
	k, err := NewKeys(bytes.Repeat([]byte{1}, 32), fmt.Sprintf("%064x", 2), &chaincfg.RegressionNetParams)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < b.N; i++ {
		priv, err := k.deriveUncached([]uint32{0, uint32(i % 20)})
		if err != nil {
			b.Fatal(err)
		}
		_ = priv.PubKey()
	}
}

// BenchmarkDeriveCached: the same key pair asked again (a coin signed before).
func BenchmarkDeriveCached(b *testing.B) {
	k, err := NewKeys(bytes.Repeat([]byte{1}, 32), fmt.Sprintf("%064x", 2), &chaincfg.RegressionNetParams)
	if err != nil {
		b.Fatal(err)
	}
	for i := uint32(0); i < 20; i++ {
		_, _, _ = k.SigningKey(0, i) // warm
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := k.SigningKey(0, uint32(i%20)); err != nil {
			b.Fatal(err)
		}
	}
}
