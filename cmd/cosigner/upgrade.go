package main

import (
	"fmt"
	"io"

	"github.com/custodyagents/cosigner/keystore"
)

// cmdInitUpgrade rewrites a version 1 key file in the current format (Nostr key as NIP-49
// ncryptsec); `cosigner run` refuses version 1 files until then.
func cmdInitUpgrade(cfg *Config, out io.Writer) error {
	params, _ := cfg.Params()
	pass, err := cfg.passphrase()
	if err != nil {
		return err
	}
	upgraded, err := keystore.UpgradeKeyFile(cfg.KeyFile, pass, params)
	if err != nil {
		return fmt.Errorf("init --upgrade: %w", err)
	}
	if !upgraded {
		fmt.Fprintf(out, "%s is already in the current format; nothing to do\n", cfg.KeyFile)
		return nil
	}
	fmt.Fprintf(out, "%s rewritten: the Nostr key is now a NIP-49 ncryptsec, the seed re-encrypted (same passphrase)\n", cfg.KeyFile)
	return nil
}
