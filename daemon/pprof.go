package daemon

// pprof.go — the opt-in profiling listener (COSIGNER_PPROF_ADDR): Go's net/http/pprof on its
// own loopback-only listener, off by default.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"
)

// CheckPprofAddr checks a COSIGNER_PPROF_ADDR value: empty (off) or host:port whose host is a
// loopback IP address or "localhost". Profiles (heap, goroutine stacks) can reveal memory
// contents, secrets included, so the profiling listener is never served on another interface.
// The error names the setting.
func CheckPprofAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_PPROF_ADDR=%s: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("configuration: COSIGNER_PPROF_ADDR=%s: must be a loopback address such as 127.0.0.1:6060 (profiles can reveal memory contents)", addr)
}

// pprofHandler serves Go's runtime profiles under /debug/pprof/ (index, profile, trace,
// symbol, cmdline and the named profiles heap, goroutine, mutex, block, allocs…).
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// pprofLimits bound the profiling listener like the health listener's, but a CPU profile or
// trace streams for its ?seconds= (pprof refuses a duration at or past the write timeout), so
// writes may take up to ten minutes.
var pprofLimits = healthLimits{ReadHeader: 5 * time.Second, Read: 10 * time.Second, Write: 10 * time.Minute,
	Idle: 60 * time.Second, MaxHeaderBytes: 8 << 10, MaxConns: 4}

// listenPprof opens the profiling listener (COSIGNER_PPROF_ADDR; none when empty).
func (d *Daemon) listenPprof(context.Context) error {
	if d.cfg.PprofAddr == "" {
		return nil
	}
	if err := CheckPprofAddr(d.cfg.PprofAddr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", d.cfg.PprofAddr)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_PPROF_ADDR=%s: %w", d.cfg.PprofAddr, err)
	}
	d.pprof = ln
	d.onClose(func() { ln.Close() })
	d.log.Warn("profiling endpoint on; keep it on loopback", "pprof", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}

// servePprof serves the profiles on ln until ctx ends.
func servePprof(ctx context.Context, ln net.Listener) error {
	err := serveHealth(ctx, ln, pprofHandler(), pprofLimits)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
