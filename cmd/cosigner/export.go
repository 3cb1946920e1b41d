package main

// export.go — `cosigner export`: what a coordinator wallet imports to register this co-signer's
// wallet (the registered COSIGNER_DESCRIPTOR), in the formats wallets read.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/btcsuite/btcd/btcutil/hdkeychain"
	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custodyagents/cosigner/descriptor"
)

const exportUsage = "usage: cosigner export [--format descriptors|core|specter|electrum] [--label NAME]"

// SLIP-132 version bytes of extended public keys for multisig script types
// (https://github.com/satoshilabs/slips/blob/master/slip-0132.md): p2wsh → Zpub/Vpub,
// p2wsh-p2sh → Ypub/Upub; Electrum stores a multisig keystore's xpub in these forms.
var slip132 = map[descriptor.ScriptType]struct{ main, test [4]byte }{
	descriptor.P2WSH:     {main: [4]byte{0x02, 0xaa, 0x7e, 0xd3}, test: [4]byte{0x02, 0x57, 0x54, 0x83}},
	descriptor.P2SHP2WSH: {main: [4]byte{0x02, 0x95, 0xb4, 0x3f}, test: [4]byte{0x02, 0x42, 0x89, 0xef}},
}

// electrumKeystore is one co-signer's keystore in an Electrum multisig wallet file ("x1/", …).
type electrumKeystore struct {
	Type            string  `json:"type"` // "bip32"
	XPub            string  `json:"xpub"` // SLIP-132 (Vpub/Zpub, Upub/Ypub)
	XPrv            *string `json:"xprv"` // always null: watch-only
	RootFingerprint string  `json:"root_fingerprint"`
	Derivation      string  `json:"derivation"` // m/48h/1h/0h/2h
	Label           string  `json:"label"`
}

// electrumWallet builds an Electrum multisig wallet file (watch-only: every keystore an xpub)
// for d: wallet_type "MofN" and keystores "x1/"…"xN/" in SLIP-132 form, written at seed version
// 18 so that Electrum upgrades it to its own format when it opens it. Electrum's multisig
// wallets are sortedmulti over /0/* (receive) and /1/* (change) below each xpub, in P2WSH or
// P2SH-P2WSH; any other descriptor is refused with an error saying why.
func electrumWallet(d *descriptor.Descriptor) (map[string]any, error) {
	versions, ok := slip132[d.Type()]
	if !ok {
		return nil, fmt.Errorf("export: Electrum's multisig wallets are P2WSH or P2SH-P2WSH; this descriptor is %s", d.Type())
	}
	if !d.Sorted() {
		return nil, errors.New("export: Electrum's multisig wallets sort the keys (sortedmulti); this descriptor uses multi, whose addresses Electrum cannot reproduce")
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
			return nil, fmt.Errorf("export: key %d does not derive receive and change as /<0;1>/* below its xpub, as Electrum does", i+1)
		}
		if !k.HasOrigin {
			return nil, fmt.Errorf("export: key %d has no key origin [fingerprint/path]; Electrum needs it to sign with hardware and to match keys", i+1)
		}
		xpub, err := slip132String(k.XPub, ver)
		if err != nil {
			return nil, fmt.Errorf("export: key %d: %w", i+1, err)
		}
		w[fmt.Sprintf("x%d/", i+1)] = electrumKeystore{Type: "bip32", XPub: xpub, RootFingerprint: hex.EncodeToString(k.Fingerprint[:]),
			Derivation: pathString(k.OriginPath)}
	}
	return w, nil
}

// slip132String re-encodes the extended public key k with the version bytes ver.
func slip132String(k *hdkeychain.ExtendedKey, ver [4]byte) (string, error) {
	if k.IsPrivate() {
		return "", errors.New("a private extended key in the descriptor")
	}
	c, err := k.CloneWithVersion(ver[:])
	if err != nil {
		return "", err
	}
	return c.String(), nil
}

// pathString writes a BIP-32 path as "m/48h/1h/0h/2h".
func pathString(p []uint32) string {
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

// cmdExport prints the registered wallet for a coordinator to import:
//   - descriptors (default): the receive and change descriptors, with checksums (BDK takes the
//     pair; Sparrow and Bitcoin Core take either);
//   - core: a JSON array for Bitcoin Core's importdescriptors (watch-only, active, range 0–999);
//   - specter: Specter's wallet JSON ({label, blockheight, descriptor}), which Sparrow imports;
//   - electrum: an Electrum multisig wallet file (watch-only, SLIP-132 keystores).
func cmdExport(_ context.Context, cfg *Config, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	format := fs.String("format", "descriptors", "")
	label := fs.String("label", "cosigner", "")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return usageError{exportUsage}
	}
	if cfg.Descriptor == "" {
		return errors.New("export: COSIGNER_DESCRIPTOR is empty: it is the wallet to export")
	}
	params, _ := cfg.Params()
	d, err := descriptor.Parse(cfg.Descriptor, params, descriptor.RequireChecksum())
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_DESCRIPTOR: %w", err)
	}
	branches := make([]string, d.Branches())
	for b := range branches {
		if branches[b], err = d.BranchString(uint32(b)); err != nil {
			return err
		}
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	switch *format {
	case "descriptors":
		fmt.Fprintf(out, "# %s, %d-of-%d, %s (receive, then change)\n", *label, d.Threshold(), len(d.Keys()), params.Name)
		for _, b := range branches {
			fmt.Fprintln(out, b)
		}
		return nil
	case "core":
		type importReq struct {
			Desc      string `json:"desc"`
			Active    bool   `json:"active"`
			Internal  bool   `json:"internal"`
			Timestamp string `json:"timestamp"`
			Range     [2]int `json:"range"`
		}
		var reqs []importReq
		for i, b := range branches {
			reqs = append(reqs, importReq{Desc: b, Active: true, Internal: i == 1, Timestamp: "now", Range: [2]int{0, 999}})
		}
		return enc.Encode(reqs)
	case "specter":
		return enc.Encode(map[string]any{"label": *label, "blockheight": 0, "descriptor": branches[0]})
	case "electrum":
		w, err := electrumWallet(d)
		if err != nil {
			return err
		}
		return enc.Encode(w)
	}
	return usageError{fmt.Sprintf("export: unknown --format %q\n%s", *format, exportUsage)}
}
