package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/policy/policyfile"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

const policyUsage = `usage:
  cosigner policy check FILE
  cosigner policy test FILE --psbt P [--client NAME|PUBKEY] [--at RFC3339]
  cosigner policy schema`

// cmdPolicy dispatches the policy subcommands.
func cmdPolicy(ctx context.Context, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError{policyUsage}
	}
	switch args[0] {
	case "check":
		if len(args) != 2 {
			return usageError{policyUsage}
		}
		return cmdPolicyCheck(args[1], out)
	case "schema":
		if len(args) != 1 {
			return usageError{policyUsage}
		}
		_, err := out.Write(policy.Schema())
		return err
	case "test":
		return cmdPolicyTest(ctx, args[1:], out)
	}
	return usageError{fmt.Sprintf("unknown policy command %q\n%s", args[0], policyUsage)}
}

func cmdPolicyCheck(path string, out io.Writer) error {
	p, err := policyfile.Load(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "%s: OK (%d client(s), %d approver(s), %d rule(s), max_per_tx %s, %d velocity window(s); sha256 %s)\n",
		path, len(p.Clients), len(p.Approvers), len(p.Rules), p.MaxPerTx(), len(p.Limits.Velocity), p.Hash)
	if len(p.Automations) > 0 {
		fmt.Fprintf(out, "%d automation(s):\n", len(p.Automations))
		for i := range p.Automations {
			fmt.Fprintf(out, "  %s\n", p.Automations[i].String())
		}
	}
	return nil
}

// cmdPolicyTest is a dry run: how the policy FILE would decide the PSBT now, rule by rule,
// against the wallet view and spend ledger the daemon left in the data dir's database.
func cmdPolicyTest(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("policy test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	psbtArg := fs.String("psbt", "", "PSBT file (base64 or hex), or the PSBT itself")
	clientArg := fs.String("client", "", "client name or pubkey (default: the policy's first client)")
	atArg := fs.String("at", "", "decision time, RFC 3339 (default: now)")
	if len(args) == 0 {
		return usageError{policyUsage}
	}
	file := args[0]
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() != 0 || *psbtArg == "" {
		return usageError{policyUsage}
	}
	pol, err := policyfile.Load(file)
	if err != nil {
		return err
	}
	psbtText := strings.TrimSpace(*psbtArg)
	if !strings.HasPrefix(psbtText, "cHNidP8") && !strings.HasPrefix(psbtText, "70736274ff") {
		b, err := os.ReadFile(psbtText)
		if err != nil {
			return fmt.Errorf("policy test: --psbt: %w", err)
		}
		psbtText = strings.TrimSpace(string(b))
	}
	now := time.Now()
	if *atArg != "" {
		if now, err = time.Parse(time.RFC3339, *atArg); err != nil {
			return fmt.Errorf("policy test: --at: %w", err)
		}
	}
	client := strings.ToLower(*clientArg)
	for _, c := range pol.Clients {
		if *clientArg == "" && client == "" || c.Name == *clientArg {
			client = c.PubKey
		}
	}
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	params, _ := cfg.Params()
	if cfg.Descriptor == "" {
		return errors.New("configuration: COSIGNER_DESCRIPTOR is empty: policy test analyses the PSBT against the registered wallet")
	}
	desc, err := descriptor.Parse(cfg.Descriptor, params, descriptor.RequireChecksum())
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_DESCRIPTOR: %w", err)
	}
	if _, err := os.Stat(cfg.DBPath()); err != nil {
		return fmt.Errorf("policy test: no database at %s (run the daemon once so that it syncs the wallet): %w", cfg.DBPath(), err)
	}
	db, err := store.Open(ctx, cfg.DBPath())
	if err != nil {
		return err
	}
	defer db.Close()
	snap, err := chainwatch.ReadSnapshot(ctx, db)
	if err != nil {
		return err
	}
	a, d, err := psbtflow.Explain(ctx, desc, psbtflow.SnapshotView(snap), db, pol, client, psbtText, now)
	if err != nil {
		return fmt.Errorf("policy test: the PSBT is refused before the policy is asked: %w", err)
	}
	fmt.Fprintf(out, "policy %s (sha256 %s)\n", file, pol.Hash)
	fmt.Fprintf(out, "transaction %s: outflow %s (fee %s, %.2f sat/vB, %d vB), %d input(s), %d output(s), wallet tip %d\n",
		a.UnsignedTxID, a.Outflow, a.Fee, float64(a.FeeRate), a.VSize, len(a.Inputs), len(a.Outputs), snap.Tip.Height)
	fmt.Fprintf(out, "\ndecision: %s by %s: %s\n\n", strings.ToUpper(string(d.Outcome)), d.Rule, d.Reason)
	for _, s := range d.Explanation {
		fmt.Fprintf(out, "  %-12s %-22s %s\n", s.Result, s.Rule, s.Detail)
	}
	return nil
}
