package main

// status_relays.go — the relay part of `cosigner status`: each relay's state and counters, as the
// running daemon reports them on /healthz (relaypool.Pool.Health).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/custodyagents/cosigner/relaypool"
)

// printRelayStatus asks the daemon at healthAddr (COSIGNER_HEALTH_ADDR) for its relays' health
// and writes one line per relay; when the daemon cannot be reached it says so in one line
// instead (status works with the daemon stopped).
func printRelayStatus(ctx context.Context, out io.Writer, healthAddr string) {
	if healthAddr == "" {
		fmt.Fprintln(out, "relays       unknown (COSIGNER_HEALTH_ADDR is empty)")
		return
	}
	relays, err := fetchRelayHealth(ctx, healthAddr)
	if err != nil {
		fmt.Fprintf(out, "relays       unknown: daemon not reachable at %s (%v)\n", healthAddr, err)
		return
	}
	printRelays(out, relays, time.Now())
}

// fetchRelayHealth GETs http://healthAddr/healthz and returns its "relays" list.
func fetchRelayHealth(ctx context.Context, healthAddr string) ([]relaypool.RelayHealth, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+healthAddr+"/healthz", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Relays []relaypool.RelayHealth `json:"relays"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&body); err != nil {
		return nil, fmt.Errorf("reading /healthz: %w", err)
	}
	return body.Relays, nil
}

// printRelays writes the relays' health for people, one line each, ages counted back from now.
func printRelays(out io.Writer, relays []relaypool.RelayHealth, now time.Time) {
	up := 0
	for _, r := range relays {
		if r.Connected {
			up++
		}
	}
	fmt.Fprintf(out, "relays       %d of %d connected\n", up, len(relays))
	ago := func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return now.Sub(t).Round(time.Second).String() + " ago"
	}
	for _, r := range relays {
		var b strings.Builder
		name := r.URL
		if r.Extra {
			name += " (client's)"
		}
		fmt.Fprintf(&b, "  %-36s %-13s since %s", name, r.State, ago(r.Since))
		if r.State == relaypool.StateBackingOff || r.State == relaypool.StateFailed {
			fmt.Fprintf(&b, ", %d failures, retry in %s", r.Failures, r.RetryAt.Sub(now).Round(time.Second))
		}
		fmt.Fprintf(&b, "; published %d, failed %d", r.Published, r.PublishFailed)
		if r.Published > 0 {
			fmt.Fprintf(&b, ", last OK %s in %s", ago(r.LastOKAt), r.LastOKLatency.Round(time.Millisecond))
		}
		fmt.Fprintf(&b, "; events %d (last %s)", r.EventsReceived, ago(r.LastEventAt))
		if r.EventsDropped > 0 {
			fmt.Fprintf(&b, ", %d dropped as invalid", r.EventsDropped)
		}
		if r.AuthPubKey != "" {
			b.WriteString("; authenticated (NIP-42)")
		}
		if r.Limits.MaxMessageLength > 0 {
			fmt.Fprintf(&b, "; max message %d B", r.Limits.MaxMessageLength)
		}
		if r.LastError != "" && !r.Connected {
			fmt.Fprintf(&b, "; last error: %s", r.LastError)
		}
		fmt.Fprintln(out, b.String())
	}
}
