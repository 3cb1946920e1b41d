package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/custodyagents/cosigner/outbound"
	"github.com/custodyagents/cosigner/store"
)

const proposalsUsage = `usage:
  cosigner proposals list [--json]      the transactions automations proposed, newest last
  cosigner proposals show ID [--json]   one proposal: co-signers and timeline
  cosigner proposals cancel ID          abandon a proposal that is not finalized yet
ID may be a unique prefix. The daemon may be running: it sees a cancel at its next step.`

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// secretParam matches a connect secret in a bunker:// URI that an error text may quote.
var secretParam = regexp.MustCompile(`(?i)(secret=)[^&\s"']*`)

func redact(s string) string { return secretParam.ReplaceAllString(s, "${1}…") }

// cmdProposals lists, shows and cancels outbound proposals, reading the database directly.
func cmdProposals(ctx context.Context, cfg *Config, args []string, out io.Writer) error {
	if len(args) == 0 {
		return usageError{proposalsUsage}
	}
	asJSON := false
	var rest []string
	for _, a := range args[1:] {
		if a == "--json" {
			asJSON = true
		} else {
			rest = append(rest, a)
		}
	}
	db, err := store.Open(ctx, cfg.DBPath())
	if err != nil {
		return err
	}
	defer db.Close()
	switch {
	case args[0] == "list" && len(rest) == 0:
		return proposalsList(ctx, db, asJSON, out)
	case args[0] == "show" && len(rest) == 1:
		id, err := resolveProposal(ctx, db, rest[0])
		if err != nil {
			return err
		}
		return proposalShow(ctx, db, id, asJSON, out)
	case args[0] == "cancel" && len(rest) == 1 && !asJSON:
		id, err := resolveProposal(ctx, db, rest[0])
		if err != nil {
			return err
		}
		p, err := outbound.Cancel(ctx, db, id, outbound.ReasonCancelled, time.Now())
		if err != nil {
			return fmt.Errorf("proposals: %w", err)
		}
		fmt.Fprintf(out, "%s: abandoned (%s); the daemon stops working on it at its next step\n", p.ID, p.Reason)
		return nil
	}
	return usageError{proposalsUsage}
}

// resolveProposal returns the id of the one proposal whose id is or starts with prefix.
func resolveProposal(ctx context.Context, db *store.DB, prefix string) (string, error) {
	ps, err := db.Proposals(ctx)
	if err != nil {
		return "", err
	}
	var found []string
	for _, p := range ps {
		if p.ID == prefix {
			return p.ID, nil
		}
		if strings.HasPrefix(p.ID, prefix) {
			found = append(found, p.ID)
		}
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("proposals: %w: %q", store.ErrNoSuchProposal, prefix)
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("proposals: %q matches %d proposals (%s); give more of the id", prefix, len(found), strings.Join(found, ", "))
}

// toJSON is p as `proposals show --json` prints it (list --json: without timeline), secrets
// redacted.
func toJSON(ctx context.Context, db *store.DB, p store.Proposal, timeline bool) (outbound.View, error) {
	j := outbound.View{ID: p.ID, Automation: p.Automation, Trigger: p.TriggerKey, State: p.State, Reason: redact(p.Reason), TxID: p.TxID,
		UnsignedTxID: p.UnsignedTxID, FeeSat: p.FeeSat, FeeRate: p.FeeRate, Replaces: p.Replaces, CreatedAt: p.CreatedAt.UTC(),
		UpdatedAt: p.UpdatedAt.UTC(), Cosigners: []outbound.CosignerView{}}
	cos, err := db.ProposalCosigners(ctx, p.ID)
	if err != nil {
		return j, err
	}
	for _, c := range cos {
		j.Cosigners = append(j.Cosigners, outbound.CosignerView{PubKey: c.Cosigner, State: c.State, Detail: redact(c.Detail)})
	}
	if timeline {
		tl, err := db.ProposalTimeline(ctx, p.ID)
		if err != nil {
			return j, err
		}
		j.Timeline = []outbound.EventView{}
		for _, e := range tl {
			j.Timeline = append(j.Timeline, outbound.EventView{At: e.At.UTC(), Event: e.Event, Detail: redact(e.Detail)})
		}
	}
	return j, nil
}

func proposalsList(ctx context.Context, db *store.DB, asJSON bool, out io.Writer) error {
	ps, err := db.Proposals(ctx)
	if err != nil {
		return err
	}
	if asJSON {
		list := []outbound.View{}
		for _, p := range ps {
			j, err := toJSON(ctx, db, p, false)
			if err != nil {
				return err
			}
			list = append(list, j)
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(list)
	}
	if len(ps) == 0 {
		fmt.Fprintln(out, "no proposals (automations have not fired yet)")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tAUTOMATION\tTXID\tFEE\tUPDATED\tREASON")
	for _, p := range ps {
		txid := p.TxID
		if txid == "" {
			txid = p.UnsignedTxID
		}
		if len(txid) > 16 {
			txid = txid[:16] + "…"
		}
		fee := ""
		if p.FeeSat > 0 {
			fee = fmt.Sprintf("%d sat (%.1f sat/vB)", p.FeeSat, p.FeeRate)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.ID, p.State, p.Automation, txid, fee, p.UpdatedAt.UTC().Format(time.RFC3339), redact(p.Reason))
	}
	return tw.Flush()
}

func proposalShow(ctx context.Context, db *store.DB, id string, asJSON bool, out io.Writer) error {
	p, err := db.GetProposal(ctx, id)
	if err != nil {
		return fmt.Errorf("proposals: %w", err)
	}
	j, err := toJSON(ctx, db, p, true)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(j)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s\t%s\n", k, v)
		}
	}
	row("id", j.ID)
	row("automation", j.Automation)
	row("trigger", j.Trigger)
	row("state", j.State)
	row("reason", j.Reason)
	row("txid", j.TxID)
	row("unsigned txid", j.UnsignedTxID)
	if j.FeeSat > 0 {
		row("fee", fmt.Sprintf("%d sat (%.1f sat/vB)", j.FeeSat, j.FeeRate))
	}
	row("replaces", j.Replaces)
	row("created", rfc3339(j.CreatedAt))
	row("updated", rfc3339(j.UpdatedAt))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(j.Cosigners) > 0 {
		fmt.Fprintln(out, "\nco-signers:")
		for _, c := range j.Cosigners {
			fmt.Fprintf(out, "  %s  %-8s %s\n", c.PubKey, c.State, c.Detail)
		}
	}
	fmt.Fprintln(out, "\ntimeline:")
	for _, e := range j.Timeline {
		fmt.Fprintf(out, "  %s  %-12s %s\n", rfc3339(e.At), e.Event, e.Detail)
	}
	return nil
}
