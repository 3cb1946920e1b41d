package keystore

import (
	"encoding/binary"
	"fmt"
	"sync"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Derived-key cache: what a signing request would otherwise pay for on every input.
//
// Deriving the private key of an input (BIP32 CKDpriv from the account key along the branch's
// steps and the index) costs two EC multiplications per step, and recomputing its public key one
// more; for a 2-input request that is most of the pipeline's CPU while the signatures
// themselves are a small part. The same few (branch, index) pairs are signed again and again
// (a coin is usually asked for by several requests: a retry, a fee bump, a second co-signer's
// round), so each Keys keeps the pairs it derived.
//
// Bounds: at most MaxCachedKeys leaf key pairs (least recently used evicted first, ~200 bytes
// each: under 1 MiB at the bound) and MaxCachedBranches parent (branch) extended keys. An
// evicted leaf private key is zeroed (btcec's PrivateKey.Zero) as it leaves the cache, under
// the cache's write lock; a reader copies a key under the read lock and treats an all-zero copy
// (an evicted entry; zero is never a valid private key) as a miss. Callers get their own copy of
// the key, so their zeroing or keeping it never touches the cached one. Branch keys are not
// zeroed on eviction (a concurrent derivation may still be reading one; a descriptor uses two
// branches, far below the bound, so they are evicted only by a caller walking other paths).
// The cache is never logged (Keys.String prints only the public key origin). Holding child keys
// adds no exposure beyond the account private key the same Keys already holds for the life of
// the process: every cached key is derivable from it.
//
// Why a cache cannot make the co-signer sign with a wrong key:
//   - Scope: the cache is a field of one Keys, filled only from that Keys' own account key. No
//     other account, seed, descriptor or network can reach it, so an entry can only ever be a
//     key of this account.
//   - Key: an entry is keyed by the whole relative path (every step, in order, length included),
//     and its value is what CKDpriv gives for exactly that path: a lookup for another path can
//     only miss. A hardened step is refused before the cache is consulted, exactly as without it.
//   - Value: the cache is a pure memo of a deterministic function of (account key, path); it
//     holds no decision. Whether an input may be signed at all is still decided by psbt.Analyze
//     and the policy on every request; psbt.SignInputs asks for keys only for inputs the
//     analysis approved, and compares the returned public key against the descriptor's key at
//     that (branch, index) before signing (ErrNotOurKey otherwise), so even a corrupted entry
//     could not produce a signature for a script the descriptor does not make.
//   - Concurrency: the LRU is goroutine-safe; a key derived twice by two racing misses is
//     stored once (the loser's copy is zeroed and the stored pair returned).

// MaxCachedKeys bounds the leaf key pairs one Keys caches (the indexes of inputs being signed).
const MaxCachedKeys = 4096

// MaxCachedBranches bounds the cached parent extended private keys (one per branch of the
// descriptor: two for /<0;1>/*).
const MaxCachedBranches = 64

// keyPair is a derived private key with its public key.
type keyPair struct {
	priv *btcec.PrivateKey
	pub  *btcec.PublicKey
}

// keyCache holds derived keys of one account (see the comment above).
type keyCache struct {
	// mu orders zeroing an evicted private key (write) against copying a cached one (read).
	mu       sync.RWMutex
	leaves   *lru.Cache[string, keyPair]
	branches *lru.Cache[string, *hdkeychain.ExtendedKey]
}

func newKeyCache(maxKeys, maxBranches int) *keyCache {
	c := &keyCache{}
	// golang-lru calls the eviction callback after releasing its own lock, so taking c.mu here
	// cannot deadlock against a reader holding c.mu while inside Get.
	leaves, err := lru.NewWithEvict(maxKeys, func(_ string, kp keyPair) {
		c.mu.Lock()
		kp.priv.Zero()
		c.mu.Unlock()
	})
	if err != nil {
		panic(err) // only for a size ≤ 0, a programming error
	}
	branches, err := lru.New[string, *hdkeychain.ExtendedKey](maxBranches)
	if err != nil {
		panic(err)
	}
	c.leaves, c.branches = leaves, branches
	return c
}

// get returns a copy of the cached pair at id, if present and not zeroed by an eviction.
func (c *keyCache) get(id string) (btcec.PrivateKey, *btcec.PublicKey, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	kp, ok := c.leaves.Get(id)
	if !ok {
		return btcec.PrivateKey{}, nil, false
	}
	cp := *kp.priv
	if cp.Key.IsZero() {
		return btcec.PrivateKey{}, nil, false
	}
	return cp, kp.pub, true
}

// pathKey encodes steps as the cache key: 4 bytes per step, big-endian, so that two different
// paths (including paths of different lengths) never share a key.
func pathKey(steps []uint32) string {
	b := make([]byte, 4*len(steps))
	for i, s := range steps {
		binary.BigEndian.PutUint32(b[4*i:], s)
	}
	return string(b)
}

// SigningKey returns the private key at AccountPath/steps… (all unhardened) and its public key,
// deriving it once per path and caching the pair (bounded, see MaxCachedKeys). The private key
// returned is the caller's own copy. Errors: ErrNotOurKey for a hardened step, or a BIP32
// derivation error (an invalid child, probability below 2^-127).
func (k *Keys) SigningKey(steps ...uint32) (*btcec.PrivateKey, *btcec.PublicKey, error) {
	for _, s := range steps {
		if s >= hardened {
			return nil, nil, fmt.Errorf("keystore: hardened step after the account key: %w", ErrNotOurKey)
		}
	}
	if k.cache == nil { // Keys built by hand (a zero Keys has no account key either)
		priv, err := k.deriveUncached(steps)
		if err != nil {
			return nil, nil, err
		}
		return priv, priv.PubKey(), nil
	}
	id := pathKey(steps)
	if priv, pub, ok := k.cache.get(id); ok {
		return &priv, pub, nil
	}
	parent := k.account
	if len(steps) > 1 {
		var err error
		if parent, err = k.branchKey(steps[:len(steps)-1]); err != nil {
			return nil, nil, err
		}
	}
	child := parent
	if len(steps) > 0 {
		var err error
		if child, err = parent.Derive(steps[len(steps)-1]); err != nil {
			return nil, nil, fmt.Errorf("keystore: derive step %d: %w", steps[len(steps)-1], err)
		}
	}
	priv, err := child.ECPrivKey()
	if err != nil {
		return nil, nil, err
	}
	pub := priv.PubKey()
	mine := *priv // the caller's copy; priv itself goes into the cache
	if _, found, _ := k.cache.leaves.PeekOrAdd(id, keyPair{priv: priv, pub: pub}); found {
		priv.Zero() // a racing request stored the same pair first; this one is not kept
	}
	return &mine, pub, nil
}

// branchKey returns the extended private key at AccountPath/steps…, cached.
func (k *Keys) branchKey(steps []uint32) (*hdkeychain.ExtendedKey, error) {
	id := pathKey(steps)
	if xk, ok := k.cache.branches.Get(id); ok {
		return xk, nil
	}
	xk := k.account
	for _, s := range steps {
		var err error
		if xk, err = xk.Derive(s); err != nil {
			return nil, fmt.Errorf("keystore: derive step %d: %w", s, err)
		}
	}
	// Memoize the public key inside the extended key now, before it is shared: hdkeychain
	// computes it lazily on the first child derivation, which would be a write under readers.
	if _, err := xk.ECPubKey(); err != nil {
		return nil, err
	}
	k.cache.branches.Add(id, xk)
	return xk, nil
}

// deriveUncached is CKDpriv along steps from the account key, without the cache.
func (k *Keys) deriveUncached(steps []uint32) (*btcec.PrivateKey, error) {
	key := k.account
	for _, s := range steps {
		var err error
		if key, err = key.Derive(s); err != nil {
			return nil, fmt.Errorf("keystore: derive step %d: %w", s, err)
		}
	}
	return key.ECPrivKey()
}
