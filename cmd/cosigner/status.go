package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/daemon"
)

// printStatus writes the wallet view for people: tip, balances, UTXOs, SPV state.
func printStatus(out io.Writer, st chainwatch.Status) {
	if !st.HasTip {
		fmt.Fprintln(out, "No chain data yet: `cosigner run` has not synced this wallet.")
		return
	}
	fmt.Fprintf(out, "tip          %d %s\n", st.Tip.Height, st.Tip.Hash)
	fmt.Fprintf(out, "headers      %d validated (proof of work, links)\n", st.Headers)
	fmt.Fprintf(out, "confirmed    %s", st.Confirmed)
	if st.Immature > 0 {
		fmt.Fprintf(out, " (%s immature coinbase)", st.Immature)
	}
	fmt.Fprintln(out)
	fmt.Fprintf(out, "unconfirmed  %s\n", st.Unconfirmed)
	fmt.Fprintf(out, "scripts      %d watched, %d used\n", st.ScriptsTracked, st.ScriptsUsed)
	fmt.Fprintf(out, "transactions %d", st.Txs)
	if st.Unproven > 0 {
		fmt.Fprintf(out, " (%d confirmed per the server but not proven yet: counted unconfirmed)", st.Unproven)
	}
	fmt.Fprintln(out)
	utxos := append([]chainwatch.UTXO(nil), st.UTXOs...)
	sort.SliceStable(utxos, func(i, j int) bool { return utxos[i].Height < utxos[j].Height })
	fmt.Fprintf(out, "UTXOs        %d\n", len(utxos))
	for _, u := range utxos {
		branch := "receive"
		if u.Branch == 1 {
			branch = "change"
		}
		note := ""
		if !st.Spendable(u) {
			note = "  immature coinbase"
		}
		fmt.Fprintf(out, "  %s  %16s  %s #%d  %d conf%s\n", u.OutPoint, u.Value, branch, u.Index, u.Confirmations(st.Tip), note)
	}
}

// daemonHealth is the running daemon's /healthz body (daemon.HealthJSON, snake_case).
type daemonHealth = daemon.HealthJSON

// fetchHealth reads the daemon's /healthz (any HTTP status: 503 still carries the body).
func fetchHealth(ctx context.Context, addr string) (daemonHealth, error) {
	var h daemonHealth
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/healthz", nil)
	if err != nil {
		return h, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&h); err != nil {
		return h, fmt.Errorf("health: %w", err)
	}
	return h, nil
}

// progressBar renders done/total as a 30-cell bar with the figures.
func progressBar(done, total int) string {
	const width = 30
	if total <= 0 {
		total = 1
	}
	done = min(max(done, 0), total)
	n := done * width / total
	return fmt.Sprintf("[%s%s] %d/%d scripts", strings.Repeat("#", n), strings.Repeat(".", width-n), done, total)
}

// printDaemon writes the live part: sync progress, the Electrum server(s), the relays.
func printDaemon(out io.Writer, h daemonHealth) {
	e := h.Electrum
	state := "synced"
	if !h.Synced {
		state = "initial sync " + progressBar(e.ScriptsSynced, e.ScriptsTracked)
	}
	fmt.Fprintf(out, "daemon       running, %s\n", state)
	conn := "disconnected"
	if e.Connected {
		conn = "connected to " + e.Server
	}
	fmt.Fprintf(out, "chainwatch   %s  headers %d  fetched %d  skipped %d", conn, e.Headers, e.HistoryFetches, e.HistorySkipped)
	if e.Unproven > 0 || e.SPVFailures > 0 {
		fmt.Fprintf(out, "  unproven %d  spv failures %d", e.Unproven, e.SPVFailures)
	}
	if e.LastError != "" {
		fmt.Fprintf(out, "  last error %s: %s", e.LastErrorAt.Format(time.RFC3339), e.LastError)
	}
	fmt.Fprintln(out)
	for _, s := range e.Servers {
		state := "idle"
		if s.Connected {
			state = fmt.Sprintf("connected  %s %s  %s", s.Software, s.Protocol, s.Latency.Round(time.Microsecond))
		}
		fmt.Fprintf(out, "electrum     %s  %s  connects %d  failures %d", s.Server, state, s.Connects, s.Failures)
		if s.LastError != "" {
			fmt.Fprintf(out, "  last error %s: %s", s.LastErrorAt.Format(time.RFC3339), s.LastError)
		}
		fmt.Fprintln(out)
	}
	printRelays(out, h.Relays, time.Now())
}

// isTerminal reports whether out is a character device (a terminal).
func isTerminal(out io.Writer) bool {
	f, ok := out.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// showStatus prints the stored wallet view and, when the daemon's health endpoint answers, its
// live state. On a terminal, while the daemon's initial sync runs, it redraws a progress bar
// (scripts synced / tracked) until the sync completes or ctx ends.
func showStatus(ctx context.Context, cfg *Config, out io.Writer, st chainwatch.Status) error {
	printStatus(out, st)
	if cfg.HealthAddr == "" {
		return nil
	}
	h, err := fetchHealth(ctx, cfg.HealthAddr)
	if err != nil {
		fmt.Fprintf(out, "daemon       not reachable at %s (the view above is the stored one)\n", cfg.HealthAddr)
		return nil
	}
	if !h.Synced && isTerminal(out) {
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for !h.Synced {
			fmt.Fprintf(out, "\rsyncing      %s", progressBar(h.Electrum.ScriptsSynced, h.Electrum.ScriptsTracked))
			select {
			case <-ctx.Done():
				fmt.Fprintln(out)
				return nil
			case <-tick.C:
			}
			next, err := fetchHealth(ctx, cfg.HealthAddr)
			if errors.Is(err, context.Canceled) {
				break
			}
			if err != nil {
				fmt.Fprintf(out, "\ndaemon       stopped answering: %v\n", err)
				return nil
			}
			h = next
		}
		fmt.Fprintf(out, "\rsyncing      %s\n", progressBar(h.Electrum.ScriptsTracked, h.Electrum.ScriptsTracked))
	}
	printDaemon(out, h)
	return nil
}
