package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	nip46e2e "github.com/custodyagents/cosigner/e2e/nip46"
	"github.com/custodyagents/cosigner/internal/scenario"
)

// The outbound figures (issue 6, "Numbers"): on the local test network, two cosigner daemons
// (built without -race) hold keys A and B of a 2-of-3; A's automation sweeps every confirmed
// deposit to a cold vault and asks B over NIP-46 through the three relays. For each of
// outboundDeposits deposits: the time from A's funding-confirmed event (the watcher's event, as
// A logs it) to the sweep's broadcast (A's proposal timeline), p50 and p99, and the share of it
// spent waiting for B (requested → answered: the relays both ways plus B's own analysis,
// policy and signing), with the p50 of each stage. Beside it, in the same run: NIP-46 ping
// round trips to B over the same relays (the transport floor of that wait). The row
// "outbound-broadcast" of docs/benchmarks.md has both (issue 15: p50 < 100 ms, p99 < 300 ms).

const (
	outboundDeposits = 100
	outboundPings    = 50
)

// BenchmarkOutbound sets up one pair for both figures.
func BenchmarkOutbound(b *testing.B) {
	if testing.Short() {
		b.Skip("outbound benchmarks need the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	p, err := scenario.SetupPair(ctx, scenario.PairOptions{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("A's log (tail):\n%s\nB's log (tail):\n%s", p.A.LogTail(40), p.B.LogTail(40))
		}
		p.Close()
	})
	var sweeps, pings []time.Duration
	b.Run("funding_confirmed_to_broadcast", func(b *testing.B) {
		for range b.N {
			sweeps = benchSweeps(ctx, b, p)
		}
	})
	b.Run("ping_B", func(b *testing.B) {
		c := dialBunker(ctx, b, p)
		for range b.N {
			pings = sampleCalls(b, outboundPings, func(ctx context.Context) error {
				r, err := c.Call(ctx, "ping")
				if err == nil && r.Result != "pong" {
					err = fmt.Errorf("ping answered %+v", r)
				}
				return err
			})
			reportLatency(b, slices.Clone(pings))
		}
	})
	if len(sweeps) == 0 || len(pings) == 0 {
		return
	}
	p50, p99, ping := percentile(sweeps, 0.5), percentile(sweeps, 0.99), percentile(pings, 0.5)
	Record(Row{
		Key:      "outbound-broadcast",
		Figure:   fmt.Sprintf("outbound funding_confirmed → broadcast (sweep co-signed by B over three relays, %d deposits)", len(sweeps)),
		Value:    fmt.Sprintf("p50 %.0f ms, p99 %.0f ms", ms(p50), ms(p99)),
		Baseline: fmt.Sprintf("NIP-46 ping to B p50 %.1f ms", ms(ping)),
		Ratio:    fmt.Sprintf("p50 %.1f× the ping", float64(p50)/float64(ping)),
		Goal:     "p50 < 100 ms, p99 < 300 ms",
		Met:      MetIf(p50 < 100*time.Millisecond && p99 < 300*time.Millisecond),
	})
}

// benchSweeps deposits outboundDeposits times, one block each (which also confirms the previous
// sweep), measures each sweep from A's funding-confirmed event to its broadcast and returns
// those durations.
func benchSweeps(ctx context.Context, b *testing.B, p *scenario.Pair) []time.Duration {
	var totals []time.Duration
	prebuilt := 0
	stages := make([][]time.Duration, len(sweepStages))
	var waited, total time.Duration
	for i := range outboundDeposits {
		op, err := p.Deposit(ctx, btcutil.Amount(10_000_000+i), 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := p.Net.Mine(ctx, 1); err != nil {
			b.Fatal(err)
		}
		pr, err := p.WaitProposal(ctx, 2*time.Minute, scenario.ForTrigger(op, "broadcast", "confirmed", "abandoned"))
		if err != nil {
			b.Fatal(err)
		}
		if pr.State == "abandoned" {
			b.Fatalf("sweep of %s abandoned: %s", op, pr.Reason)
		}
		event, err := fundingConfirmedAt(p.A.LogPath, op)
		if err != nil {
			b.Fatal(err)
		}
		at := map[string]time.Time{"event": event}
		for _, s := range sweepStages {
			evs := pr.Events(s.to)
			if len(evs) == 0 {
				b.Fatalf("timeline of %s lacks %s: %+v", pr.ID, s.to, pr.Timeline)
			}
			at[s.to] = evs[len(evs)-1].At
			if s.to == "proposed" || s.to == "requested" {
				at[s.to] = evs[0].At
			}
		}
		if built := pr.Events("built"); strings.Contains(built[len(built)-1].Detail, "pre-built") {
			prebuilt++
		}
		line := fmt.Sprintf("sweep %2d:", i)
		for k, s := range sweepStages {
			d := at[s.to].Sub(at[s.from])
			stages[k] = append(stages[k], d)
			line += fmt.Sprintf(" %s %.1f", s.name, ms(d))
		}
		d := at["broadcast"].Sub(event)
		if d <= 0 {
			b.Fatalf("sweep %s broadcast at %s, before the funding-confirmed event at %s", pr.ID, at["broadcast"], event)
		}
		b.Logf("%s total %.1f ms", line, ms(d))
		totals = append(totals, d)
		total += d
		waited += at["answered"].Sub(at["requested"])
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil { // confirm the last sweep
		b.Fatal(err)
	}
	reportLatency(b, slices.Clone(totals))
	b.ReportMetric(float64(prebuilt), "prebuilt")
	b.ReportMetric(float64(waited)/float64(total), "relay_wait_share")
	// Where the time goes, p50 of each stage (sweepStages).
	for k, s := range sweepStages {
		b.ReportMetric(ms(percentile(stages[k], 0.5)), s.name+"_p50_ms")
	}
	return totals
}

// sweepStages are the stages of one sweep, between the entries of A's proposal timeline (the
// last entry of each name, the first for proposed and requested): the engine taking up the
// event (event → proposed), building (→ built: fee, coins, previous transactions, PSBT — or
// checking the one pre-built when the deposit was seen; the metric prebuilt counts those),
// signing our share (→ requested), waiting for B (→ answered: the relays both ways plus B's
// own analysis, policy and signing), finalizing (→ finalized) and broadcasting (→ broadcast).
var sweepStages = []struct{ name, from, to string }{
	{"react", "event", "proposed"},
	{"build", "proposed", "built"},
	{"sign", "built", "requested"},
	{"wait_B", "requested", "answered"},
	{"finalize", "answered", "finalized"},
	{"broadcast", "finalized", "broadcast"},
}

// fundingConfirmedAt finds A's log line for the funding-confirmed event of op and returns its
// time (slog's text handler: time=RFC 3339 with milliseconds).
func fundingConfirmedAt(logPath string, op wire.OutPoint) (time.Time, error) {
	f, err := os.Open(logPath)
	if err != nil {
		return time.Time{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, `msg="funding confirmed"`) || !strings.Contains(line, "outpoint="+op.String()) {
			continue
		}
		field, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		return time.Parse(time.RFC3339Nano, field)
	}
	return time.Time{}, fmt.Errorf("no funding confirmed line for %s in %s", op, logPath)
}

// dialBunker connects a fresh NIP-46 client to B with a bunker URI of B's (its single-use
// secret), over the network's relays.
func dialBunker(ctx context.Context, b *testing.B, p *scenario.Pair) *nip46e2e.Client {
	b.Helper()
	uri, err := p.B.BunkerURI(ctx)
	if err != nil {
		b.Fatal(err)
	}
	u, err := url.Parse(uri)
	if err != nil {
		b.Fatal(err)
	}
	c, err := nip46e2e.Dial(ctx, nostr.GeneratePrivateKey(), u.Host, u.Query()["relay"], nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	if r, err := c.Call(ctx, "connect", u.Host, u.Query().Get("secret")); err != nil || r.Result != "ack" {
		b.Fatalf("connect to B: %+v, %v", r, err)
	}
	return c
}
