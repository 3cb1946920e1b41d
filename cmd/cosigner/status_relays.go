package main

// status_relays.go — the relay part of `cosigner status`: each relay's state and counters, as the
// running daemon reports them on /healthz (relaypool.Pool.Health); fetched by showStatus.

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/custodyagents/cosigner/relaypool"
)

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
