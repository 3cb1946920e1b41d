package relaypool

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// TestDialSetsNoDelay: the Pool's relay connections have Nagle's algorithm off (TCP_NODELAY),
// so that a small NIP-46 message is not held back waiting for an ACK.
func TestDialSetsNoDelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			defer c.Close()
			var b [1]byte
			_, _ = c.Read(b[:])
		}
	}()
	c, err := newTransport().DialContext(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := raw.Control(func(fd uintptr) { v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY) }); err != nil || gerr != nil {
		t.Fatal(err, gerr)
	}
	if v == 0 {
		t.Fatal("TCP_NODELAY is off on a relay connection")
	}
}
