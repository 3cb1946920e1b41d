package main

// export.go — `cosigner export`: what a coordinator wallet imports to register this co-signer's
// wallet (the registered COSIGNER_DESCRIPTOR), in the formats wallets read.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/signer/psbtnostr"
)

const exportUsage = "usage: cosigner export [--format descriptors|core|specter|electrum|electrum-keystore] [--label NAME]"

// cmdExport prints the registered wallet for a coordinator to import:
//   - descriptors (default): the receive and change descriptors, with checksums (BDK takes the
//     pair; Sparrow and Bitcoin Core take either);
//   - core: a JSON array for Bitcoin Core's importdescriptors (watch-only, active, range 0–999);
//   - specter: Specter's wallet JSON ({label, blockheight, descriptor}), which Sparrow imports;
//   - electrum: an Electrum multisig wallet file (watch-only, SLIP-132 keystores);
//   - electrum-keystore: this co-signer's keystore string as Electrum stores it (SLIP-132), to
//     enter as a co-signer's master public key when making the multisig wallet in Electrum, and
//     every keystore's Nostr pubkey of Electrum's "Send to cosigner" (psbtnostr.ChannelKey).
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
		w, err := descriptor.ElectrumWallet(d)
		if err != nil {
			return fmt.Errorf("export: %w", err)
		}
		return enc.Encode(w)
	case "electrum-keystore":
		return exportElectrumKeystore(cfg, d, out)
	}
	return usageError{fmt.Sprintf("export: unknown --format %q\n%s", *format, exportUsage)}
}

// exportElectrumKeystore prints this co-signer's Electrum keystore string (from the key file's
// public part: no passphrase needed) with its key origin, then every keystore of the wallet with
// its "Send to cosigner" Nostr pubkey. Errors: a wallet Electrum cannot hold, a key file that
// cannot be read, a key that is not in the descriptor.
func exportElectrumKeystore(cfg *Config, d *descriptor.Descriptor, out io.Writer) error {
	pub, _, err := keystore.ReadPublic(cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("export: %w (run `cosigner init` first)", err)
	}
	w, err := psbtnostr.NewWallet(d, pub.AccountXPub)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	_, own := psbtnostr.ChannelKey(w.OwnXPub)
	fmt.Fprintf(out, "# cosigner's keystore for Electrum: in the new multisig wallet, add a co-signer with\n")
	fmt.Fprintf(out, "# \"Enter cosigner key\" and paste this master public key (origin [%s/%s])\n", pub.Fingerprint, pub.OriginPath)
	fmt.Fprintln(out, w.OwnXPub)
	fmt.Fprintf(out, "# Send to cosigner (Electrum's psbt_nostr plugin): cosigner listens as %s when the\n", own)
	fmt.Fprintf(out, "# policy lists {channel: electrum_nostr}; anyone who knows these xpubs can send as any of them.\n")
	fmt.Fprintf(out, "# co-signers (keystore, Nostr pubkey):\n")
	for _, c := range w.Cosigners {
		fmt.Fprintf(out, "#   %s %s  %s\n", c.Keystore, c.PubKey, c.XPub)
	}
	return nil
}
