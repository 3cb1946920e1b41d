package daemon

// health.go — the health listener (COSIGNER_HEALTH_ADDR): /healthz, /status and /metrics, the
// bounds it serves within, and the snake_case JSON shapes that `cosigner status` reads back.

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/store"
)

// healthHandler serves /metrics (Prometheus, see metrics.go), /healthz (200 when the wallet is
// synced, the Electrum server connected and at least one relay connected; 503 otherwise; the
// body is HealthJSON) and /status (the stored wallet view as WalletJSON).
func healthHandler(w *chainwatch.Watcher, pool *relaypool.Pool, db *store.DB, rm *requestMetrics) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler(pool, append(rm.dropCollectors(), newDaemonCollector(w, db), rm.requests)...))
	mux.HandleFunc("/healthz", func(rw http.ResponseWriter, r *http.Request) {
		ready := false
		select {
		case <-w.Ready():
			ready = true
		default:
		}
		relays := pool.Health()
		up := 0
		for _, r := range relays {
			if r.Connected {
				up++
			}
		}
		eh := w.Health()
		ok := ready && eh.Connected && up > 0
		body := HealthJSON{OK: ok, Synced: ready, Electrum: NewElectrumJSON(eh), Relays: relays}
		rw.Header().Set("Content-Type", "application/json")
		if !ok {
			rw.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(rw).Encode(body)
	})
	mux.HandleFunc("/status", func(rw http.ResponseWriter, r *http.Request) {
		st, err := chainwatch.ReadStatus(r.Context(), db)
		if err != nil {
			http.Error(rw, "status unavailable", http.StatusInternalServerError)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		json.NewEncoder(rw).Encode(NewWalletJSON(st))
	})
	return mux
}

// healthLimits bound what the health listener (COSIGNER_HEALTH_ADDR: /healthz, /status,
// /metrics, /requests/<token>) spends on one client: slow or idle connections are closed and
// at most MaxConns are open at once (issue 11, finding 8; docs/bounds.md).
type healthLimits struct {
	ReadHeader, Read, Write, Idle time.Duration
	MaxHeaderBytes, MaxConns      int
}

var defaultHealthLimits = healthLimits{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 30 * time.Second,
	Idle: 60 * time.Second, MaxHeaderBytes: 8 << 10, MaxConns: 64}

// serveHealth serves h on ln within lim until ctx ends.
func serveHealth(ctx context.Context, ln net.Listener, h http.Handler, lim healthLimits) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: lim.ReadHeader, ReadTimeout: lim.Read, WriteTimeout: lim.Write,
		IdleTimeout: lim.Idle, MaxHeaderBytes: lim.MaxHeaderBytes}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(limitListener(ln, lim.MaxConns)); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// limitListener accepts at most n connections open at once: Accept waits for one to close.
func limitListener(ln net.Listener, n int) net.Listener {
	return &limitedListener{Listener: ln, slots: make(chan struct{}, n), done: make(chan struct{})}
}

type limitedListener struct {
	net.Listener
	slots chan struct{} // one token per open connection
	once  sync.Once
	done  chan struct{}
}

func (l *limitedListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	return &limitedConn{Conn: c, release: func() { <-l.slots }}, nil
}

func (l *limitedListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// WalletJSON is the stored wallet view (chainwatch.Status) as `cosigner status --json` and
// /status print it. Amounts in satoshis.
type WalletJSON struct {
	HasTip         bool       `json:"has_tip"`
	TipHeight      int32      `json:"tip_height"`
	TipHash        string     `json:"tip_hash,omitempty"`
	Headers        int32      `json:"headers"`
	ConfirmedSat   int64      `json:"confirmed_sat"`
	UnconfirmedSat int64      `json:"unconfirmed_sat"`
	ImmatureSat    int64      `json:"immature_sat"`
	ScriptsTracked int        `json:"scripts_tracked"`
	ScriptsUsed    int        `json:"scripts_used"`
	Txs            int        `json:"txs"`
	Unproven       int        `json:"unproven"`
	UnackedEvents  int        `json:"unacked_events"`
	UTXOs          []UTXOJSON `json:"utxos"`
}

// UTXOJSON is one wallet UTXO.
type UTXOJSON struct {
	OutPoint      string `json:"outpoint"`
	ValueSat      int64  `json:"value_sat"`
	ScriptPubKey  string `json:"script_pubkey"` // hex
	Branch        uint32 `json:"branch"`
	Index         uint32 `json:"index"`
	Height        int32  `json:"height"`
	BlockHash     string `json:"block_hash,omitempty"`
	Confirmations int32  `json:"confirmations"`
	Coinbase      bool   `json:"coinbase,omitempty"`
	Spendable     bool   `json:"spendable"` // mature for the next block
}

// NewWalletJSON converts the stored wallet view; a UTXO is spendable when a transaction in the
// next block may spend it (chainwatch.UTXO.Mature).
func NewWalletJSON(st chainwatch.Status) WalletJSON {
	w := WalletJSON{HasTip: st.HasTip, TipHeight: st.Tip.Height, Headers: st.Headers, ConfirmedSat: int64(st.Confirmed),
		UnconfirmedSat: int64(st.Unconfirmed), ImmatureSat: int64(st.Immature), ScriptsTracked: st.ScriptsTracked,
		ScriptsUsed: st.ScriptsUsed, Txs: st.Txs, Unproven: st.Unproven, UnackedEvents: st.UnackedEvents, UTXOs: []UTXOJSON{}}
	if st.HasTip {
		w.TipHash = st.Tip.Hash.String()
	}
	next := chainwatch.Tip{Height: st.Tip.Height + 1}
	for _, u := range st.UTXOs {
		uj := UTXOJSON{OutPoint: u.OutPoint.String(), ValueSat: int64(u.Value), ScriptPubKey: hex.EncodeToString(u.PkScript), Branch: u.Branch,
			Index: u.Index, Height: u.Height, Confirmations: u.Confirmations(st.Tip), Coinbase: u.Coinbase, Spendable: u.Mature(next)}
		if u.Height > 0 {
			uj.BlockHash = u.BlockHash.String()
		}
		w.UTXOs = append(w.UTXOs, uj)
	}
	return w
}

// ElectrumJSON is chainwatch.Health in snake_case, as /healthz serves it.
type ElectrumJSON struct {
	Connected      bool                    `json:"connected"`
	Ready          bool                    `json:"ready"`
	Server         string                  `json:"server"`
	ServerSoftware string                  `json:"server_software,omitempty"`
	Protocol       string                  `json:"protocol,omitempty"`
	TipHeight      int32                   `json:"tip_height"`
	TipHash        string                  `json:"tip_hash,omitempty"`
	Headers        int32                   `json:"headers"`
	ScriptsTracked int                     `json:"scripts_tracked"`
	ScriptsSynced  int                     `json:"scripts_synced"`
	HistoryFetches uint64                  `json:"history_fetches"`
	HistorySkipped uint64                  `json:"history_skipped"`
	Unproven       int                     `json:"unproven"`
	SPVFailures    uint64                  `json:"spv_failures"`
	LastError      string                  `json:"last_error,omitempty"`
	LastErrorAt    time.Time               `json:"last_error_at,omitzero"`
	Servers        []electrum.ServerHealth `json:"servers"`
}

// NewElectrumJSON converts the watcher's health snapshot.
func NewElectrumJSON(h chainwatch.Health) ElectrumJSON {
	e := ElectrumJSON{Connected: h.Connected, Ready: h.Ready, Server: h.Server, ServerSoftware: h.ServerSoftware, Protocol: h.Protocol,
		TipHeight: h.Tip.Height, Headers: h.Headers, ScriptsTracked: h.ScriptsTracked, ScriptsSynced: h.ScriptsSynced,
		HistoryFetches: h.HistoryFetches, HistorySkipped: h.HistorySkipped, Unproven: h.Unproven, SPVFailures: h.SPVFailures,
		LastError: h.LastError, LastErrorAt: h.LastErrorAt, Servers: h.Servers}
	if h.Tip.Height > 0 {
		e.TipHash = h.Tip.Hash.String()
	}
	if e.Servers == nil {
		e.Servers = []electrum.ServerHealth{}
	}
	return e
}

// HealthJSON is the body of /healthz: ok (synced, Electrum connected, a relay up), synced, the
// Electrum side and the relays.
type HealthJSON struct {
	OK       bool                    `json:"ok"`
	Synced   bool                    `json:"synced"`
	Electrum ElectrumJSON            `json:"electrum"`
	Relays   []relaypool.RelayHealth `json:"relays"`
}
