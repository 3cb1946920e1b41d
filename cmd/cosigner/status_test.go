package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/daemon"
	"github.com/custodyagents/cosigner/relaypool"
)

func TestProgressBar(t *testing.T) {
	for _, tc := range []struct {
		done, total int
		want        string
	}{
		{0, 40, "[..............................] 0/40 scripts"},
		{20, 40, "[###############...............] 20/40 scripts"},
		{40, 40, "[##############################] 40/40 scripts"},
		{50, 40, "[##############################] 40/40 scripts"},
		{0, 0, "[..............................] 0/1 scripts"},
	} {
		if got := progressBar(tc.done, tc.total); got != tc.want {
			t.Errorf("progressBar(%d, %d) = %q, want %q", tc.done, tc.total, got, tc.want)
		}
	}
}

// TestShowStatus serves a /healthz like the daemon's and checks what `cosigner status` prints:
// the stored view (immature coinbase, unproven transactions) and the live part (Electrum server,
// relays).
func TestShowStatus(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	body := daemonHealth{Synced: true, Electrum: daemon.ElectrumJSON{Server: "tcp://e:1", Connected: true, Headers: 500, HistorySkipped: 3,
		Servers: []electrum.ServerHealth{{Server: "tcp://e:1", Connected: true, Software: "ElectrumX 1.18.0", Connects: 1}, {Server: "ssl://f:2", Failures: 2, LastError: "refused"}}},
		Relays: []relaypool.RelayHealth{{URL: "ws://r1", State: relaypool.StateConnected, Connected: true}, {URL: "ws://r2", State: relaypool.StateBackingOff, LastError: "refused"}}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { json.NewEncoder(w).Encode(body) })}
	go srv.Serve(ln)
	defer srv.Close()

	st := chainwatch.Status{HasTip: true, Tip: chainwatch.Tip{Height: 150}, Headers: 150, Confirmed: 5_000_000_000, Immature: 5_000_000_000, Txs: 2, Unproven: 1,
		UTXOs: []chainwatch.UTXO{{OutPoint: wire.OutPoint{Index: 0}, Value: 5_000_000_000, Height: 100, Coinbase: true}}}
	var out bytes.Buffer
	if err := showStatus(context.Background(), &Config{HealthAddr: ln.Addr().String()}, &out, st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"(50 BTC immature coinbase)", "1 confirmed per the server but not proven", "51 conf  immature coinbase",
		"daemon       running, synced", "chainwatch   connected to tcp://e:1", "skipped 3",
		"electrum     tcp://e:1  connected  ElectrumX 1.18.0", "electrum     ssl://f:2  idle  connects 0  failures 2", "last error", "relays       1 of 2 connected", "ws://r1", "ws://r2", "last error: refused"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	srv.Close() // closes the listener and the kept-alive connection
	if err := showStatus(context.Background(), &Config{HealthAddr: ln.Addr().String()}, &out, st); err != nil || !strings.Contains(out.String(), "not reachable") {
		t.Fatalf("%v\n%s", err, out.String())
	}
}
