package psbtnostr

// keys.go — the channel's keys, derived from the wallet's keystore strings as Electrum does.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/btcsuite/btcd/btcec/v2"
	"github.com/btcsuite/btcd/btcec/v2/schnorr"

	"github.com/custodyagents/cosigner/descriptor"
)

// KeyPrefix is what Electrum hashes before the keystore string: sha256("nostr_psbt:" + xpub).
const KeyPrefix = "nostr_psbt:"

// ChannelKey returns the psbt_nostr Nostr secret key of the keystore string xpub (as Electrum
// stores it: SLIP-132 for the script type) and its x-only public key, both hex:
// sk = sha256(utf8("nostr_psbt:" + xpub)), pk = BIP-340 x-only of sk·G. Source: Electrum's
// CosignerWallet.__init__ (plugins/psbt_nostr). The secret is as public as the xpub.
func ChannelKey(xpub string) (sk, pk string) {
	h := sha256.Sum256([]byte(KeyPrefix + xpub))
	priv, _ := btcec.PrivKeyFromBytes(h[:])
	return hex.EncodeToString(h[:]), hex.EncodeToString(schnorr.SerializePubKey(priv.PubKey()))
}

// Cosigner is another co-signer of the wallet: its keystore ("x2/"), keystore string and
// channel pubkey (hex).
type Cosigner struct {
	Keystore, XPub, PubKey string
}

// Wallet is the channel's view of the wallet: this co-signer's own channel key (secret and
// public, hex) and keystore string, and every other co-signer.
type Wallet struct {
	OwnXPub, OwnSecret, OwnPubKey string
	Cosigners                     []Cosigner
}

// IsCosigner reports whether pk (hex) is another co-signer's channel pubkey.
func (w *Wallet) IsCosigner(pk string) bool {
	for _, c := range w.Cosigners {
		if c.PubKey == pk {
			return true
		}
	}
	return false
}

// NewWallet derives the channel's keys from the registered descriptor: the keystore strings
// are descriptor.ElectrumWallet's (what `cosigner export --format electrum` writes, so
// Electrum opening that file derives the same keys); own is this co-signer's account xpub (in
// the descriptor's own encoding, keystore.Keys.AccountXPub). Errors: a descriptor Electrum's
// multisig wallets cannot hold (descriptor.ElectrumWallet's), or own not among its keys.
func NewWallet(d *descriptor.Descriptor, own string) (*Wallet, error) {
	ew, err := descriptor.ElectrumWallet(d)
	if err != nil {
		return nil, err
	}
	w := &Wallet{}
	for i, k := range d.Keys() {
		name := fmt.Sprintf("x%d/", i+1)
		ks, ok := ew[name].(descriptor.ElectrumKeystore)
		if !ok {
			return nil, fmt.Errorf("psbtnostr: no keystore %s", name)
		}
		sk, pk := ChannelKey(ks.XPub)
		if k.XPub.String() == own && w.OwnXPub == "" {
			w.OwnXPub, w.OwnSecret, w.OwnPubKey = ks.XPub, sk, pk
			continue
		}
		w.Cosigners = append(w.Cosigners, Cosigner{Keystore: name, XPub: ks.XPub, PubKey: pk})
	}
	if w.OwnXPub == "" {
		return nil, fmt.Errorf("psbtnostr: this co-signer's xpub is not a key of the descriptor")
	}
	return w, nil
}
