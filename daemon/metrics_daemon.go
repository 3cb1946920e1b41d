package daemon

// metrics_daemon.go — the daemon's own Prometheus metrics next to the relay pool's (metrics.go):
// NIP-46 requests by method and outcome, held requests waiting, proposals by state, the Electrum
// side (connection, tip, header chain, sync progress, SPV failures) and build_info.

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/outbound"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/signer/psbtnostr"
	"github.com/custodyagents/cosigner/store"
)

// requestMetrics counts NIP-46 requests that reach the daemon's handlers (sign_psbt, approve,
// psbt_status, get_wallet) by method and outcome: "ok", "held" (answered auth_url), or the
// refusal's stable code (policy_denied, unsafe_psbt, invalid_psbt, unauthorized, …, internal).
// The label set is bounded: methods are the registered ones, codes the signer's own.
type requestMetrics struct {
	requests *prometheus.CounterVec
	// drops reads the remote signer's counts of events dropped unanswered (set once it exists).
	drops func() signer.DropStats
	// electrum is Electrum's psbt_nostr channel (nil: none; its metrics then read 0).
	electrum *psbtnostr.Channel
}

// dropCollectors report drops as cosigner_nip46_dropped_total{reason}: invalid, stranger,
// bad_secret, stranger_rate_limited, client_over_limit (signer.DropStats).
func (m *requestMetrics) dropCollectors() []prometheus.Collector {
	var out []prometheus.Collector
	for reason, v := range map[string]func(signer.DropStats) uint64{
		"invalid": func(d signer.DropStats) uint64 { return d.Invalid }, "stranger": func(d signer.DropStats) uint64 { return d.Stranger },
		"bad_secret": func(d signer.DropStats) uint64 { return d.BadSecret }, "stranger_rate_limited": func(d signer.DropStats) uint64 { return d.StrangerLimited },
		"client_over_limit": func(d signer.DropStats) uint64 { return d.OverLimit },
	} {
		out = append(out, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "cosigner_nip46_dropped_total",
			Help:        "NIP-46 events dropped without an answer or a durable write, by reason (signer.DropStats).",
			ConstLabels: prometheus.Labels{"reason": reason}}, func() float64 {
			if m.drops == nil {
				return 0
			}
			return float64(v(m.drops()))
		}))
	}
	return append(out, electrumNostrCollectors(func() *psbtnostr.Channel { return m.electrum })...)
}

func newRequestMetrics() *requestMetrics {
	return &requestMetrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cosigner_nip46_requests_total",
		Help: "NIP-46 requests answered by the daemon's handlers, by method and outcome (ok, held, or the refusal's code).",
	}, []string{"method", "outcome"})}
}

// outcome classifies a handler's answer.
func outcome(err error) string {
	if err == nil {
		return "ok"
	}
	var held *nip46.HeldError
	if errors.As(err, &held) {
		return "held"
	}
	var me *nip46.MethodError
	if errors.As(err, &me) && me.Code != "" {
		return me.Code
	}
	return "internal"
}

// wrap counts every answer of h under method.
func (m *requestMetrics) wrap(method string, h signer.HandlerFunc) signer.HandlerFunc {
	return func(ctx context.Context, req nip46.Call) (string, error) {
		res, err := h(ctx, req)
		m.requests.WithLabelValues(method, outcome(err)).Inc()
		return res, err
	}
}

// daemonCollector reads the watcher's health and the database at each scrape.
type daemonCollector struct {
	watcher *chainwatch.Watcher
	db      *store.DB

	buildInfo, connected, synced, tip, headers, tracked, syncedScripts, spvFailures, unproven, holds, proposals, scrapeErrors *prometheus.Desc

	mu   sync.Mutex
	errs float64
}

func newDaemonCollector(w *chainwatch.Watcher, db *store.DB) *daemonCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("cosigner_"+name, help, labels, nil)
	}
	return &daemonCollector{
		watcher:       w,
		db:            db,
		buildInfo:     d("build_info", "Always 1; the labels name the build (module version, VCS revision, Go version).", "version", "revision", "goversion"),
		connected:     d("electrum_connected", "1 if the watcher is connected to an Electrum server."),
		synced:        d("wallet_synced", "1 once the initial sync of the wallet has completed."),
		tip:           d("chain_tip_height", "Height of the best header the watcher follows."),
		headers:       d("header_chain_height", "Height of the watcher's own validated header chain."),
		tracked:       d("sync_scripts_tracked", "Scripts derived and subscribed (all branches)."),
		syncedScripts: d("sync_scripts_synced", "Scripts whose history is verified against the server's status in this session."),
		spvFailures:   d("spv_failures_total", "Merkle proofs rejected since start."),
		unproven:      d("unproven_transactions", "Confirmed transactions (per the server) whose merkle proof has not checked yet."),
		holds:         d("holds_waiting", "Held sign_psbt requests waiting for a cooling-off or approvals."),
		proposals:     d("proposals", "Automation proposals by state.", "state"),
		scrapeErrors:  d("metrics_scrape_errors_total", "Scrapes whose database reads failed."),
	}
}

func (c *daemonCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.connected, c.synced, c.tip, c.headers, c.tracked, c.syncedScripts,
		c.spvFailures, c.unproven, c.holds, c.proposals, c.scrapeErrors} {
		ch <- d
	}
}

// proposalStates are always reported (0 when none), so dashboards see every series.
var proposalStates = []outbound.ProposalState{outbound.StateProposed, outbound.StateAwaitingCosigners, outbound.StateFinalized,
	outbound.StateBroadcast, outbound.StateConfirmed, outbound.StateReplaced, outbound.StateAbandoned}

func (c *daemonCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	version, revision := "(devel)", ""
	goVersion := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		goVersion = bi.GoVersion
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	gauge(c.buildInfo, 1, version, revision, goVersion)
	if c.watcher != nil {
		h := c.watcher.Health()
		gauge(c.connected, b2f(h.Connected))
		gauge(c.synced, b2f(h.Ready))
		gauge(c.tip, float64(h.Tip.Height))
		gauge(c.headers, float64(h.Headers))
		gauge(c.tracked, float64(h.ScriptsTracked))
		gauge(c.syncedScripts, float64(h.ScriptsSynced))
		ch <- prometheus.MustNewConstMetric(c.spvFailures, prometheus.CounterValue, float64(h.SPVFailures))
		gauge(c.unproven, float64(h.Unproven))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	failed := false
	if n, err := c.db.WaitingHolds(ctx); err == nil {
		gauge(c.holds, float64(n))
	} else {
		failed = true
	}
	if by, err := c.db.ProposalsByState(ctx); err == nil {
		for _, st := range proposalStates {
			gauge(c.proposals, float64(by[string(st)]), string(st))
		}
	} else {
		failed = true
	}
	c.mu.Lock()
	if failed {
		c.errs++
	}
	errs := c.errs
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.CounterValue, errs)
}
