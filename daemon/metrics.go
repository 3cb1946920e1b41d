package daemon

// metrics.go — the daemon's Prometheus collectors, in one place, served at /metrics on
// COSIGNER_HEALTH_ADDR next to /healthz and /status.

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/custodyagents/cosigner/relaypool"
)

// metricsHandler serves the Prometheus text format: the relay pool's per-relay health (see
// relayCollector), the daemon's own collectors (metrics_daemon.go) and the Go runtime and
// process collectors.
func metricsHandler(pool *relaypool.Pool, extra ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		newRelayCollector(pool),
	)
	reg.MustRegister(extra...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// relayCollector turns relaypool.Pool.Health into metrics at each scrape, labelled by relay URL.
// Only the configured relays (COSIGNER_RELAYS) get labels; relays that clients named and
// PublishTo reached are counted in one gauge, so that clients cannot grow the label set.
type relayCollector struct {
	pool *relaypool.Pool

	up, state, failures, connects, disconnects, published, publishFailed *prometheus.Desc
	eventsReceived, eventsDropped, okLatency, lastOK, lastEvent, authed  *prometheus.Desc
	quorum, extra                                                        *prometheus.Desc
	unconfirmed                                                          *prometheus.Desc
}

var relayStates = []relaypool.State{
	relaypool.StateIdle, relaypool.StateConnecting, relaypool.StateConnected,
	relaypool.StateBackingOff, relaypool.StateAuthRequired, relaypool.StateFailed,
}

func newRelayCollector(pool *relaypool.Pool) *relayCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("cosigner_relay_"+name, help, append([]string{"relay"}, labels...), nil)
	}
	return &relayCollector{
		pool:           pool,
		up:             d("up", "1 if the WebSocket connection to the relay is up."),
		state:          d("state", "1 for the relay's current state (idle, connecting, connected, backing-off, auth-required, failed).", "state"),
		failures:       d("consecutive_failures", "Consecutive failed connection attempts."),
		connects:       d("connects_total", "WebSocket connections made."),
		disconnects:    d("disconnects_total", "WebSocket connections that ended."),
		published:      d("published_total", "Publish attempts the relay answered with OK true (NIP-01)."),
		publishFailed:  d("publish_failed_total", "Publish attempts refused by the relay, unanswered, or failed on the connection."),
		eventsReceived: d("events_received_total", "Valid events received on subscriptions, before de-duplication."),
		eventsDropped:  d("events_dropped_total", "Events dropped for a bad id or signature."),
		unconfirmed:    d("unconfirmed_total", "Ephemeral events delivered to the relay without its OK: it sends none for them (counted delivered but unconfirmed)."),
		okLatency:      d("last_ok_latency_seconds", "Time from sending the last accepted event to the relay's OK."),
		lastOK:         d("last_ok_timestamp_seconds", "Unix time of the last accepted publish (0: none)."),
		lastEvent:      d("last_event_timestamp_seconds", "Unix time of the last valid event received (0: none)."),
		authed:         d("authenticated", "1 if the current connection is authenticated (NIP-42)."),
		quorum:         prometheus.NewDesc("cosigner_relay_quorum", "Relays that must accept a published event (COSIGNER_RELAY_QUORUM).", nil, nil),
		extra:          prometheus.NewDesc("cosigner_relay_extra_connections", "Relays outside COSIGNER_RELAYS kept for responses to clients that named them.", nil, nil),
	}
}

func (c *relayCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.up, c.state, c.failures, c.connects, c.disconnects, c.published, c.publishFailed,
		c.eventsReceived, c.eventsDropped, c.okLatency, c.lastOK, c.lastEvent, c.authed, c.quorum, c.extra, c.unconfirmed} {
		ch <- d
	}
}

func (c *relayCollector) Collect(ch chan<- prometheus.Metric) {
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	unix := func(t interface{ Unix() int64 }, zero bool) float64 {
		if zero {
			return 0
		}
		return float64(t.Unix())
	}
	extra := 0
	for _, h := range c.pool.Health() {
		if h.Extra {
			extra++
			continue
		}
		g := func(d *prometheus.Desc, v float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{h.URL}, labels...)...)
		}
		n := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), h.URL)
		}
		g(c.up, b2f(h.Connected))
		for _, s := range relayStates {
			g(c.state, b2f(h.State == s), s.String())
		}
		g(c.failures, float64(h.Failures))
		n(c.connects, h.Connects)
		n(c.disconnects, h.Disconnects)
		n(c.published, h.Published)
		n(c.publishFailed, h.PublishFailed)
		n(c.eventsReceived, h.EventsReceived)
		n(c.eventsDropped, h.EventsDropped)
		n(c.unconfirmed, h.Unconfirmed)
		g(c.okLatency, h.LastOKLatency.Seconds())
		g(c.lastOK, unix(h.LastOKAt, h.LastOKAt.IsZero()))
		g(c.lastEvent, unix(h.LastEventAt, h.LastEventAt.IsZero()))
		g(c.authed, b2f(h.AuthPubKey != ""))
	}
	ch <- prometheus.MustNewConstMetric(c.quorum, prometheus.GaugeValue, float64(c.pool.Quorum()))
	ch <- prometheus.MustNewConstMetric(c.extra, prometheus.GaugeValue, float64(extra))
}
