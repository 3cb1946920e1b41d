package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

// cmdPSBT dispatches `cosigner psbt inspect FILE`.
func cmdPSBT(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	asJSON := len(args) == 3 && args[1] == "--json"
	if len(args) < 2 || args[0] != "inspect" || len(args) > 3 || (len(args) == 3 && !asJSON) {
		return usageError{"usage: cosigner psbt inspect [--json] FILE   (FILE: base64, hex or binary PSBT; - for stdin)"}
	}
	return cmdPSBTInspect(ctx, cfg, args[len(args)-1], asJSON, out)
}

// cmdPSBTInspect analyses the PSBT in file against the registered wallet (COSIGNER_DESCRIPTOR)
// exactly as sign_psbt would before asking the policy, and prints inputs, outputs, change, fee,
// feerate, outflow and every warning. The wallet view is the one `cosigner run` last stored in
// the data directory's database; without one, amounts are the PSBT's own claims (said so in the
// output). A PSBT the co-signer would refuse prints the refusal and exits with status 1. With
// asJSON the analysis is printed as the JSON the audit log stores, after the wallet view line.
func cmdPSBTInspect(ctx context.Context, cfg *Config, file string, asJSON bool, out io.Writer) error {
	if cfg.Descriptor == "" {
		return errors.New("configuration: COSIGNER_DESCRIPTOR is empty: psbt inspect needs the registered wallet descriptor")
	}
	params, _ := cfg.Params()
	desc, err := descriptor.Parse(cfg.Descriptor, params, descriptor.RequireChecksum())
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_DESCRIPTOR: %w", err)
	}
	text, err := readPSBTFile(file)
	if err != nil {
		return err
	}
	p, _, err := psbt.Decode(text)
	if err != nil {
		return fmt.Errorf("psbt inspect: %w", err)
	}

	var view psbt.ChainView
	if _, statErr := os.Stat(cfg.DBPath()); statErr == nil {
		db, err := store.Open(ctx, cfg.DBPath())
		if err != nil {
			return err
		}
		snap, err := chainwatch.ReadSnapshot(ctx, db)
		db.Close()
		if err != nil {
			return err
		}
		if !snap.HasTip {
			fmt.Fprintf(out, "wallet view: %s has no chain data yet (run `cosigner run` until synced)\n\n", cfg.DBPath())
		} else {
			fmt.Fprintf(out, "wallet view: %s (tip %d, %d UTXOs, %d scripts), as `cosigner run` last stored it\n\n",
				cfg.DBPath(), snap.Tip.Height, len(snap.UTXOs), snap.Scripts())
		}
		view = psbtflow.SnapshotView(snap)
	} else {
		fmt.Fprintf(out, "wallet view: none (%s not found). Input amounts and scripts are the PSBT's own claims,\n"+
			"NOT checked against the chain (no protection against the segwit fee attack or spent inputs);\n"+
			"scripts count as the wallet's within %d indexes of each branch.\n\n", cfg.DBPath(), cfg.Lookahead)
		view = psbt.PSBTView(p, desc, uint32(cfg.Lookahead))
	}

	a, err := psbt.Analyze(p, desc, view)
	if err != nil {
		fmt.Fprintf(out, "REFUSED: the co-signer would answer sign_psbt with\n  %v\n", psbtflow.WireError(err))
		return errors.New("psbt inspect: the PSBT would be refused")
	}
	if asJSON {
		b, err := json.MarshalIndent(a, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	return psbt.WriteTable(out, a)
}

// readPSBTFile reads a PSBT file ("-": stdin) of base64 or hex text, or raw binary (BIP-174
// "psbt" 0xff magic), and returns it as text for psbt.Decode.
func readPSBTFile(file string) (string, error) {
	var r io.Reader = os.Stdin
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("psbt inspect: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, 4*psbt.MaxPSBTBytes))
	if err != nil {
		return "", fmt.Errorf("psbt inspect: reading %s: %w", file, err)
	}
	if len(b) >= 5 && string(b[:5]) == "psbt\xff" {
		return base64.StdEncoding.EncodeToString(b), nil
	}
	return string(b), nil
}
