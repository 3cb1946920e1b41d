package devnet

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// reservePort returns a listener on 127.0.0.1:port for service. Port 0 picks a
// free port. A taken port gives an error wrapping ErrPortInUse that names the
// port and the service.
func reservePort(service string, port int) (net.Listener, error) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("%s: 127.0.0.1:%d: %w", service, port, ErrPortInUse)
		}
		return nil, fmt.Errorf("%s: listening on 127.0.0.1:%d: %w", service, port, err)
	}
	return ln, nil
}

// pickPort checks that port is free (or picks a free one when it is 0) and
// returns it, releasing it for the child process that will listen on it. A
// child started right after gets the port unless another process races for
// it; the health checks then fail with the child's log.
func pickPort(service string, port int) (int, error) {
	ln, err := reservePort(service, port)
	if err != nil {
		return 0, err
	}
	p := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("%s: releasing port %d: %w", service, p, err)
	}
	return p, nil
}

// FreePort returns a loopback TCP port that was free a moment ago, for a service (named in
// errors) that the caller starts next.
func FreePort(service string) (int, error) { return pickPort(service, 0) }
