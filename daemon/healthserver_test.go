package daemon

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func startHealth(t *testing.T, lim healthLimits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveHealth(ctx, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }), lim)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func get(t *testing.T, c net.Conn, extra string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.Status
}

// TestHealthServerClosesIdleConnections (issue 11, finding 8): a keep-alive connection left
// idle is closed by the server.
func TestHealthServerClosesIdleConnections(t *testing.T) {
	lim := defaultHealthLimits
	lim.Idle = 200 * time.Millisecond
	addr := startHealth(t, lim)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if st := get(t, c, ""); !strings.HasPrefix(st, "200") {
		t.Fatal(st)
	}
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle keep-alive connection: read = %v, want EOF (closed by the server)", err)
	}
}

// TestHealthServerBoundsHeadersAndConnections (issue 11, finding 8): oversized headers are
// refused (431) and no more than MaxConns connections are served at once.
func TestHealthServerBoundsHeadersAndConnections(t *testing.T) {
	lim := defaultHealthLimits
	lim.MaxConns = 2
	addr := startHealth(t, lim)
	c0, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if st := get(t, c0, "X-Big: "+strings.Repeat("a", 64<<10)+"\r\n"); !strings.HasPrefix(st, "431") {
		t.Fatalf("64 KiB header: %s", st)
	}
	c0.Close()
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if st := get(t, c, ""); !strings.HasPrefix(st, "200") { // served: it holds a slot
			t.Fatal(st)
		}
		held = append(held, c)
	}
	third, err := net.Dial("tcp", addr) // the kernel accepts it; the server does not serve it yet
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	io.WriteString(third, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	served := make(chan string, 1)
	go func() {
		resp, err := http.ReadResponse(bufio.NewReader(third), nil)
		if err != nil {
			served <- err.Error()
			return
		}
		resp.Body.Close()
		served <- resp.Status
	}()
	select {
	case st := <-served:
		t.Fatalf("a third connection was served past the cap of 2: %s", st)
	case <-time.After(300 * time.Millisecond):
	}
	held[0].Close()
	select {
	case st := <-served:
		if !strings.HasPrefix(st, "200") {
			t.Fatal(st)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the third connection was not served after one closed")
	}
	held[1].Close()
}
