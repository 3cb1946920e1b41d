package descriptor

// electrum.go — the descriptor as Electrum's multisig wallet file holds it: watch-only keystores
// with SLIP-132 extended public keys (Electrum's wallet_db format; `cosigner export --format
// electrum`).

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"
)

// SLIP-132 version bytes of extended public keys for multisig script types
// (https://github.com/satoshilabs/slips/blob/master/slip-0132.md): p2wsh → Zpub/Vpub,
// p2wsh-p2sh → Ypub/Upub; Electrum stores a multisig keystore's xpub in these forms.
var slip132 = map[ScriptType]struct{ main, test [4]byte }{
	P2WSH:     {main: [4]byte{0x02, 0xaa, 0x7e, 0xd3}, test: [4]byte{0x02, 0x57, 0x54, 0x83}},
	P2SHP2WSH: {main: [4]byte{0x02, 0x95, 0xb4, 0x3f}, test: [4]byte{0x02, 0x42, 0x89, 0xef}},
}

// ElectrumKeystore is one co-signer's keystore in an Electrum multisig wallet file ("x1/", …).
type ElectrumKeystore struct {
	Type            string  `json:"type"` // "bip32"
	XPub            string  `json:"xpub"` // SLIP-132 (Vpub/Zpub, Upub/Ypub)
	XPrv            *string `json:"xprv"` // always null: watch-only
	RootFingerprint string  `json:"root_fingerprint"`
	Derivation      string  `json:"derivation"` // m/48h/1h/0h/2h
	Label           string  `json:"label"`
}

// ElectrumWallet builds an Electrum multisig wallet file (watch-only: every keystore an xpub)
// for d: wallet_type "MofN" and keystores "x1/"…"xN/" in SLIP-132 form, written at seed version
// 18 so that Electrum upgrades it to its own format when it opens it. Electrum's multisig
// wallets are sortedmulti over /0/* (receive) and /1/* (change) below each xpub, in P2WSH or
// P2SH-P2WSH; any other descriptor is refused with an error saying why.
func ElectrumWallet(d *Descriptor) (map[string]any, error) {
	versions, ok := slip132[d.Type()]
	if !ok {
		return nil, fmt.Errorf("descriptor: Electrum's multisig wallets are P2WSH or P2SH-P2WSH; this descriptor is %s", d.Type())
	}
	if !d.Sorted() {
		return nil, errors.New("descriptor: Electrum's multisig wallets sort the keys (sortedmulti); this descriptor uses multi, whose addresses Electrum cannot reproduce")
	}
	keys := d.Keys()
	ver := versions.test
	if d.Network().Net == chaincfg.MainNetParams.Net {
		ver = versions.main
	}
	w := map[string]any{
		"wallet_type":    fmt.Sprintf("%dof%d", d.Threshold(), len(keys)),
		"seed_version":   18,
		"use_encryption": false,
	}
	for i, k := range keys {
		if len(k.Steps) != 2 || len(k.Steps[0]) != 1 || k.Steps[0][0] != 0 || len(k.Steps[1]) != 1 || k.Steps[1][0] != 1 {
			return nil, fmt.Errorf("descriptor: key %d does not derive receive and change as /<0;1>/* below its xpub, as Electrum does", i+1)
		}
		if !k.HasOrigin {
			return nil, fmt.Errorf("descriptor: key %d has no key origin [fingerprint/path]; Electrum needs it to sign with hardware and to match keys", i+1)
		}
		xpub, err := SLIP132String(k.XPub, ver)
		if err != nil {
			return nil, fmt.Errorf("descriptor: key %d: %w", i+1, err)
		}
		w[fmt.Sprintf("x%d/", i+1)] = ElectrumKeystore{Type: "bip32", XPub: xpub, RootFingerprint: hex.EncodeToString(k.Fingerprint[:]),
			Derivation: PathString(k.OriginPath)}
	}
	return w, nil
}

// SLIP132String re-encodes the extended public key k with the version bytes ver.
func SLIP132String(k *hdkeychain.ExtendedKey, ver [4]byte) (string, error) {
	if k.IsPrivate() {
		return "", errors.New("a private extended key in the descriptor")
	}
	c, err := k.CloneWithVersion(ver[:])
	if err != nil {
		return "", err
	}
	return c.String(), nil
}

// PathString writes a BIP-32 path as "m/48h/1h/0h/2h".
func PathString(p []uint32) string {
	var b strings.Builder
	b.WriteString("m")
	for _, s := range p {
		if s >= hdkeychain.HardenedKeyStart {
			fmt.Fprintf(&b, "/%dh", s-hdkeychain.HardenedKeyStart)
		} else {
			fmt.Fprintf(&b, "/%d", s)
		}
	}
	return b.String()
}
