package descriptor

import (
	"testing"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/btcutil/hdkeychain"
)

func hash160(b []byte) []byte { return btcutil.Hash160(b) }

// derivePath derives the public key at path from a master private key.
func derivePath(t testing.TB, master *hdkeychain.ExtendedKey, path []uint32) *btcec.PublicKey {
	t.Helper()
	xk := master
	var err error
	for _, s := range path {
		if xk, err = xk.Derive(s); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := xk.ECPubKey()
	if err != nil {
		t.Fatal(err)
	}
	return pub
}
