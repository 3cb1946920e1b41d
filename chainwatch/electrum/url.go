package electrum

import (
	"fmt"
	"net/url"
	"strings"
)

// ServerAddr is a parsed server URL: "tcp://host:port" (plain text) or "ssl://host:port" (TLS,
// as Electrum wallets write it; "tls://" is accepted as a synonym).
type ServerAddr struct {
	TLS  bool
	Host string // host name or IP, no brackets
	Addr string // host:port, for net.Dial
}

// String gives the canonical URL (scheme tcp or ssl).
func (a ServerAddr) String() string {
	if a.TLS {
		return "ssl://" + a.Addr
	}
	return "tcp://" + a.Addr
}

// ParseServer parses a server URL. Errors wrap ErrUnsupportedScheme or ErrBadURL.
func ParseServer(s string) (ServerAddr, error) {
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return ServerAddr{}, fmt.Errorf("%w: %q: %v", ErrBadURL, s, err)
	}
	var a ServerAddr
	switch strings.ToLower(u.Scheme) {
	case "tcp":
	case "ssl", "tls":
		a.TLS = true
	default:
		return ServerAddr{}, fmt.Errorf("%w: %q: scheme must be tcp:// or ssl://", ErrUnsupportedScheme, s)
	}
	if u.Host == "" || u.Port() == "" || u.Hostname() == "" {
		return ServerAddr{}, fmt.Errorf("%w: %q: want tcp://host:port or ssl://host:port", ErrBadURL, s)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return ServerAddr{}, fmt.Errorf("%w: %q: only scheme://host:port, nothing after it", ErrBadURL, s)
	}
	a.Host = u.Hostname()
	a.Addr = u.Host
	return a, nil
}

// ParseServerURL checks a server URL the way Dial will, without connecting.
func ParseServerURL(s string) error {
	_, err := ParseServer(s)
	return err
}
