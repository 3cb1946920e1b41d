package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestCheckPprofAddrLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"", "127.0.0.1:6060", "127.0.0.2:0", "[::1]:6060", "localhost:6060"} {
		if err := CheckPprofAddr(ok); err != nil {
			t.Errorf("CheckPprofAddr(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{":6060", "0.0.0.0:6060", "[::]:6060", "192.168.1.5:6060", "example.com:6060", "6060"} {
		err := CheckPprofAddr(bad)
		if err == nil || !strings.Contains(err.Error(), "COSIGNER_PPROF_ADDR") {
			t.Errorf("CheckPprofAddr(%q) = %v, want an error naming COSIGNER_PPROF_ADDR", bad, err)
		}
	}
}

func TestPprofOffByDefault(t *testing.T) {
	d := &Daemon{log: slog.New(slog.DiscardHandler)}
	if err := d.listenPprof(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d.pprof != nil {
		t.Fatal("an empty COSIGNER_PPROF_ADDR opened a profiling listener")
	}
}

func TestPprofRefusesNonLoopback(t *testing.T) {
	d := &Daemon{cfg: Config{PprofAddr: "0.0.0.0:0"}, log: slog.New(slog.DiscardHandler)}
	defer d.Close()
	if err := d.listenPprof(context.Background()); err == nil || d.pprof != nil {
		t.Fatalf("listenPprof on 0.0.0.0 = %v (listener %v), want refused", err, d.pprof)
	}
}

func TestPprofServesProfiles(t *testing.T) {
	d := &Daemon{cfg: Config{PprofAddr: "127.0.0.1:0"}, log: slog.New(slog.DiscardHandler)}
	defer d.Close()
	if err := d.listenPprof(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- servePprof(ctx, d.pprof) }()
	defer func() { cancel(); <-done }()
	base := "http://" + d.pprof.Addr().String()
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/profile?seconds=1"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(body) == 0 {
			t.Fatalf("GET %s: %s, %d bytes", path, resp.Status, len(body))
		}
		if path == "/debug/pprof/" && !strings.Contains(string(body), "goroutine") {
			t.Fatalf("GET %s: no profile index: %.200s", path, body)
		}
	}
}
