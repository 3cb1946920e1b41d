package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nbd-wtf/go-nostr"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/relaypool"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/store"
)

// closedRelayURL is a ws:// URL on a loopback port nothing listens on.
func closedRelayURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "ws://" + addr
}

func TestMetricsHandler(t *testing.T) {
	down := closedRelayURL(t)
	pool, err := relaypool.New([]string{down}, relaypool.Options{MinBackoff: time.Hour, PublishTimeout: time.Second, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sk := nostr.GeneratePrivateKey()
	ev := nostr.Event{Kind: 1, CreatedAt: nostr.Now(), Content: "x"}
	if err := ev.Sign(sk); err != nil {
		t.Fatal(err)
	}
	if res := pool.Publish(context.Background(), ev); res[0].Err == nil {
		t.Fatalf("publish to a closed port succeeded: %+v", res)
	}

	rec := httptest.NewRecorder()
	metricsHandler(pool).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`cosigner_relay_up{relay="` + down + `"} 0`,
		`cosigner_relay_state{relay="` + down + `",state="backing-off"} 1`,
		`cosigner_relay_state{relay="` + down + `",state="connected"} 0`,
		`cosigner_relay_consecutive_failures{relay="` + down + `"} 1`,
		`cosigner_relay_publish_failed_total{relay="` + down + `"} 1`,
		`cosigner_relay_published_total{relay="` + down + `"} 0`,
		`cosigner_relay_unconfirmed_total{relay="` + down + `"} 0`,
		`cosigner_relay_quorum 1`,
		`cosigner_relay_extra_connections 0`,
		`go_goroutines `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

// TestDaemonMetrics: the daemon's collectors report requests by method and outcome, holds
// waiting, proposals by state and build_info, and every metric name passes promlint.
func TestDaemonMetrics(t *testing.T) {
	pool, err := relaypool.New([]string{closedRelayURL(t)}, relaypool.Options{MinBackoff: time.Hour, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "cosigner.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rm := newRequestMetrics()
	ok := rm.wrap("sign_psbt", func(context.Context, nip46.Call) (string, error) { return "cHNidP8=", nil })
	denied := rm.wrap("sign_psbt", func(context.Context, nip46.Call) (string, error) {
		return "", nip46.Errorf(nip46.CodePolicyDenied, "max_per_tx: too much")
	})
	held := rm.wrap("sign_psbt", func(context.Context, nip46.Call) (string, error) { return "", &nip46.HeldError{URL: "http://x"} })
	boom := rm.wrap("approve", func(context.Context, nip46.Call) (string, error) { return "", errors.New("disk full") })
	for _, h := range []signer.HandlerFunc{ok, ok, denied, held, boom} {
		h(ctx, nip46.Call{})
	}
	rm.drops = func() signer.DropStats { return signer.DropStats{Stranger: 20000, BadSecret: 2000} }
	rec := httptest.NewRecorder()
	metricsHandler(pool, append(rm.dropCollectors(), newDaemonCollector(nil, db), rm.requests)...).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`cosigner_nip46_requests_total{method="sign_psbt",outcome="ok"} 2`,
		`cosigner_nip46_requests_total{method="sign_psbt",outcome="policy_denied"} 1`,
		`cosigner_nip46_requests_total{method="sign_psbt",outcome="held"} 1`,
		`cosigner_nip46_requests_total{method="approve",outcome="internal"} 1`,
		`cosigner_holds_waiting 0`,
		`cosigner_proposals{state="awaiting_cosigners"} 0`,
		`cosigner_build_info{`,
		`cosigner_metrics_scrape_errors_total 0`,
		`cosigner_nip46_dropped_total{reason="stranger"} 20000`,
		`cosigner_nip46_dropped_total{reason="bad_secret"} 2000`,
		`cosigner_nip46_dropped_total{reason="invalid"} 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "cosigner_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
