package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/outbound"
	"github.com/custodyagents/cosigner/policy"
	"github.com/custodyagents/cosigner/policy/policyfile"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

const exposureUsage = `usage:
  cosigner exposure list [--all] [--json]
      signed transactions the velocity windows count: outstanding ones (whatever their age) and
      confirmed ones still inside a window; --all adds the settled ones
  cosigner exposure invalidate TXID [--via AUTOMATION]
      end an outstanding signature that will never be used: propose a transaction spending one
      of its inputs back to the wallet, co-signed like an automation's (the co-signers, fee and
      timeout of AUTOMATION; default: the policy's only automation). The running daemon builds,
      signs, asks the co-signers, broadcasts; the exposure ends once it is proven confirmed.
      Follow it with 'cosigner proposals show ID'.`

// exposureEntryJSON is one ledger entry as `exposure list --json` prints it. Times are RFC 3339,
// UTC; amounts in satoshis.
type exposureEntryJSON struct {
	TxID       string   `json:"txid"`
	State      string   `json:"state"`
	OutflowSat int64    `json:"outflow_sat"`
	Inputs     []string `json:"inputs"`
	Client     string   `json:"client"`
	RequestID  string   `json:"request_id"`
	SignedAt   string   `json:"signed_at"`
	AgeSeconds int64    `json:"age_seconds"`
	ConfHeight int32    `json:"confirmed_height,omitempty"`
	CountsAt   string   `json:"counts_at,omitempty"`
	InvalidBy  string   `json:"invalidated_by,omitempty"`
}

type exposureJSON struct {
	Windows []windowJSON        `json:"windows"`
	Entries []exposureEntryJSON `json:"entries"`
}

type windowJSON struct {
	Window      string `json:"window"`
	ExposureSat int64  `json:"exposure_sat"`
	MaxSat      int64  `json:"max_sat"`
}

// cmdExposure lists the spend exposure and requests invalidations, reading and writing the
// database directly (the running daemon picks a new proposal up at its next step).
func cmdExposure(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError{exposureUsage}
	}
	var asJSON, all bool
	via := ""
	var rest []string
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--json":
			asJSON = true
		case a == "--all":
			all = true
		case a == "--via" && i+1 < len(args):
			via = args[i+1]
			i++
		case strings.HasPrefix(a, "--via="):
			via = strings.TrimPrefix(a, "--via=")
		case strings.HasPrefix(a, "-"):
			return usageError{fmt.Sprintf("exposure: unknown flag %q\n\n%s", a, exposureUsage)}
		default:
			rest = append(rest, a)
		}
	}
	switch {
	case args[0] == "list" && len(rest) == 0 && via == "":
		return exposureList(ctx, cfg, all, asJSON, out)
	case args[0] == "invalidate" && len(rest) == 1 && !asJSON && !all:
		return exposureInvalidate(ctx, cfg, rest[0], via, out)
	}
	return usageError{exposureUsage}
}

// loadPolicy reads the configured policy file (for its windows and automations).
func loadPolicy(cfg *Config) (*policy.Policy, error) {
	params, err := cfg.Params()
	if err != nil {
		return nil, err
	}
	pol, err := policyfile.Load(cfg.PolicyFile, policy.WithNetwork(params))
	if err != nil {
		return nil, fmt.Errorf("exposure: COSIGNER_POLICY: %w", err)
	}
	return pol, nil
}

func exposureList(ctx context.Context, cfg *Config, all, asJSON bool, out io.Writer) error {
	now := time.Now()
	var windows []policy.Window
	if pol, err := loadPolicy(cfg); err == nil {
		windows = pol.Limits.Velocity
	} else if !asJSON {
		fmt.Fprintf(out, "(no window totals: %v)\n", err)
	}
	db, err := store.Open(ctx, cfg.DBPath())
	if err != nil {
		return err
	}
	defer db.Close()
	var ds []time.Duration
	longest := 30 * 24 * time.Hour
	for _, w := range windows {
		ds = append(ds, w.Window)
		longest = max(longest, w.Window)
	}
	totals, err := psbtflow.ExposureAt(ctx, db, ds, now)
	if err != nil {
		return err
	}
	var rs []store.Reservation
	if all {
		rs, err = db.Reservations(ctx)
	} else {
		rs, err = db.Exposure(ctx, now.Add(-longest))
	}
	if err != nil {
		return err
	}
	res := exposureJSON{Windows: []windowJSON{}, Entries: []exposureEntryJSON{}}
	for _, w := range windows {
		res.Windows = append(res.Windows, windowJSON{Window: policy.FormatDuration(w.Window), ExposureSat: int64(totals[w.Window]), MaxSat: int64(w.Max)})
	}
	for _, r := range rs {
		j := exposureEntryJSON{TxID: r.TxID, State: r.State, OutflowSat: r.OutflowSat, Inputs: r.Inputs, Client: r.Client, RequestID: r.RequestID,
			SignedAt: r.At.UTC().Format(time.RFC3339), AgeSeconds: int64(now.Sub(r.At) / time.Second), InvalidBy: r.InvalidBy}
		if j.Inputs == nil {
			j.Inputs = []string{}
		}
		if r.State == store.LedgerConfirmed {
			j.ConfHeight, j.CountsAt = r.ConfHeight, r.ConfAt.UTC().Format(time.RFC3339)
		}
		res.Entries = append(res.Entries, j)
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	for _, w := range res.Windows {
		fmt.Fprintf(out, "window %s: %s of %s\n", w.Window, btcutil.Amount(w.ExposureSat), btcutil.Amount(w.MaxSat))
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TXID\tSTATE\tOUTFLOW\tAGE\tCOUNTS\tINPUTS\tCLIENT")
	for _, j := range res.Entries {
		counts := "every window"
		switch j.State {
		case store.LedgerConfirmed:
			counts = fmt.Sprintf("from %s (height %d)", j.CountsAt, j.ConfHeight)
		case store.LedgerInvalidated:
			counts = "no (input spent by " + short12(j.InvalidBy) + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.TxID, j.State, btcutil.Amount(j.OutflowSat), policy.FormatDuration((time.Duration(j.AgeSeconds) * time.Second).Round(time.Minute)),
			counts, strings.Join(j.Inputs, ","), short12(j.Client))
	}
	return tw.Flush()
}

func short12(s string) string {
	if len(s) > 12 {
		return s[:12] + "…"
	}
	return s
}

func exposureInvalidate(ctx context.Context, cfg *Config, txid, via string, out io.Writer) error {
	if len(txid) != 64 || strings.Trim(strings.ToLower(txid), "0123456789abcdef") != "" {
		return fmt.Errorf("exposure: %q is not a txid (64 hex digits)", txid)
	}
	txid = strings.ToLower(txid)
	pol, err := loadPolicy(cfg)
	if err != nil {
		return err
	}
	var names []string
	for _, a := range pol.AutomationsAt(time.Now()) {
		names = append(names, a.Name)
	}
	switch {
	case via == "" && len(names) == 1:
		via = names[0]
	case via == "" && len(names) == 0:
		return errors.New("exposure: the policy has no automation in force to borrow co-signers and fee settings from; add one (it may have a trigger that never fires, e.g. schedule) or name it with --via")
	case via == "":
		return fmt.Errorf("exposure: the policy has several automations (%s): choose whose co-signers to ask with --via NAME", strings.Join(names, ", "))
	case !slices.Contains(names, via):
		return fmt.Errorf("exposure: no automation %q in force in the policy (have: %s)", via, strings.Join(names, ", "))
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
	// The engine builds the invalidation only from a coin the next block may spend (an immature
	// coinbase output may not), so only such coins are offered.
	p, created, err := outbound.RequestInvalidation(ctx, db, snap.SpendableUTXOs(), txid, via, time.Now())
	if err != nil {
		return fmt.Errorf("exposure: %w", err)
	}
	if !created {
		fmt.Fprintf(out, "%s: an invalidation of %s is already in progress (%s)\n", p.ID, txid, p.State)
		return nil
	}
	fmt.Fprintf(out, "%s: proposed (%s); the running daemon builds, signs and sends it to the co-signers of %q; "+
		"the exposure of %s ends when it is proven confirmed — follow it with 'cosigner proposals show %s'\n", p.ID, p.TriggerKey, via, txid, p.ID)
	return nil
}
