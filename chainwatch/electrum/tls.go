package electrum

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// TLSOptions decide which certificates of ssl:// servers are trusted. Electrum servers mostly
// use self-signed certificates, so, like the Electrum wallet, the client trusts a certificate
// in this order:
//
//  1. a configured fingerprint for the server (Fingerprints) — it must match, whatever else;
//  2. a pin in the PinStore — it must match: a changed certificate is refused with a
//     *PinMismatchError naming the server and both fingerprints (remove the pin to accept a
//     new certificate on purpose);
//  3. a chain that verifies against RootCAs for the server's host name (not pinned: CA-issued
//     certificates are renewed often);
//  4. otherwise, with a PinStore, trust on first use: the certificate's fingerprint is stored
//     and the connection accepted (logged at warn level); without one, ErrUntrustedCertificate.
//
// A fingerprint is the SHA-256 of the leaf certificate's DER bytes, in lowercase hex.
type TLSOptions struct {
	// Fingerprints pins servers by "host:port" to a certificate fingerprint (hex, colons and
	// case ignored; see NormalizeFingerprint).
	Fingerprints map[string]string
	// Pins stores fingerprints learnt on first use; nil turns trust on first use off.
	Pins PinStore
	// RootCAs verifies CA-issued certificates; nil means the system roots.
	RootCAs *x509.CertPool
}

// PinStore keeps one certificate fingerprint per server ("host:port"). Implementations must be
// safe for concurrent use. FilePinStore and MemoryPinStore are provided.
type PinStore interface {
	// Pin returns the stored fingerprint for server, or "" when there is none.
	Pin(server string) (string, error)
	// SetPin stores fp for server, replacing any earlier one.
	SetPin(server, fp string) error
}

// Fingerprint returns the SHA-256 fingerprint of a DER certificate, lowercase hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts a SHA-256 fingerprint as 64 hex digits, optionally separated by
// colons (as openssl prints it), in any case, and returns it in lowercase hex without colons.
// Errors wrap ErrBadFingerprint.
func NormalizeFingerprint(s string) (string, error) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	b, err := hex.DecodeString(h)
	if err != nil || len(b) != sha256.Size {
		return "", fmt.Errorf("%w: %q: want the certificate's SHA-256 as 64 hex digits", ErrBadFingerprint, s)
	}
	return h, nil
}

// PinMismatchError means the server presented a certificate whose fingerprint is not the
// pinned one. It wraps ErrCertificateMismatch.
type PinMismatchError struct {
	Server     string // host:port
	Pinned     string // fingerprint expected
	Got        string // fingerprint presented
	Configured bool   // the pin came from TLSOptions.Fingerprints (else from the PinStore)
}

func (e *PinMismatchError) Error() string {
	src := "pinned on first use"
	if e.Configured {
		src = "configured"
	}
	return fmt.Sprintf("electrum: %s presented certificate sha256 %s, but %s is %s; refusing the connection (if the server changed its certificate on purpose, update the pin)",
		e.Server, e.Got, src, e.Pinned)
}

func (e *PinMismatchError) Unwrap() error { return ErrCertificateMismatch }

// tlsConfig builds the client TLS config for addr. Verification is done in VerifyConnection
// (the order in TLSOptions), so InsecureSkipVerify only turns off the default chain check.
func tlsConfig(addr ServerAddr, o TLSOptions, log *slog.Logger) (*tls.Config, error) {
	var configured string
	if fp, ok := o.Fingerprints[addr.Addr]; ok {
		n, err := NormalizeFingerprint(fp)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", addr.Addr, err)
		}
		configured = n
	}
	cfg := &tls.Config{
		ServerName:         addr.Host,
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below, in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServerCert(addr, configured, o, cs.PeerCertificates, log)
		},
	}
	return cfg, nil
}

func verifyServerCert(addr ServerAddr, configured string, o TLSOptions, certs []*x509.Certificate, log *slog.Logger) error {
	if len(certs) == 0 {
		return fmt.Errorf("%w: %s sent no certificate", ErrUntrustedCertificate, addr.Addr)
	}
	got := Fingerprint(certs[0].Raw)
	if configured != "" {
		if got != configured {
			return &PinMismatchError{Server: addr.Addr, Pinned: configured, Got: got, Configured: true}
		}
		return nil
	}
	if o.Pins != nil {
		pinned, err := o.Pins.Pin(addr.Addr)
		if err != nil {
			return fmt.Errorf("%w: reading the pin of %s: %w", ErrPinStore, addr.Addr, err)
		}
		if pinned != "" {
			if got != pinned {
				return &PinMismatchError{Server: addr.Addr, Pinned: pinned, Got: got}
			}
			return nil
		}
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, caErr := certs[0].Verify(x509.VerifyOptions{DNSName: addr.Host, Roots: o.RootCAs, Intermediates: inter})
	if caErr == nil {
		return nil
	}
	if o.Pins == nil {
		return fmt.Errorf("%w: %s (sha256 %s): %v; configure its fingerprint or enable trust on first use", ErrUntrustedCertificate, addr.Addr, got, caErr)
	}
	if err := o.Pins.SetPin(addr.Addr, got); err != nil {
		return fmt.Errorf("%w: storing the pin of %s: %w", ErrPinStore, addr.Addr, err)
	}
	log.Warn("electrum server certificate pinned on first use", "server", addr.Addr, "sha256", got)
	return nil
}

// MemoryPinStore is a PinStore in memory (tests, or a caller that persists pins itself).
type MemoryPinStore struct {
	mu   sync.Mutex
	pins map[string]string
}

// Pin implements PinStore.
func (m *MemoryPinStore) Pin(server string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.pins[server], nil
}

// SetPin implements PinStore.
func (m *MemoryPinStore) SetPin(server, fp string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pins == nil {
		m.pins = map[string]string{}
	}
	m.pins[server] = fp
	return nil
}

// FilePinStore is a PinStore kept in a small JSON file ({"host:port": "sha256 hex", …}), for
// example DATA_DIR/electrum-pins.json. Writes replace the file atomically (temp file + rename,
// mode 0600). A missing file is an empty store; a file that does not parse is an error (the
// connection is refused rather than re-pinned). Safe for concurrent use within one process.
type FilePinStore struct {
	Path string
	mu   sync.Mutex
}

// NewFilePinStore returns a store at path; it checks that an existing file parses.
func NewFilePinStore(path string) (*FilePinStore, error) {
	s := &FilePinStore{Path: path}
	if _, err := s.load(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FilePinStore) load() (map[string]string, error) {
	b, err := os.ReadFile(s.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPinStore, err)
	}
	pins := map[string]string{}
	if err := json.Unmarshal(b, &pins); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrPinStore, s.Path, err)
	}
	for server, fp := range pins {
		n, err := NormalizeFingerprint(fp)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: server %s: %w", ErrPinStore, s.Path, server, err)
		}
		pins[server] = n
	}
	return pins, nil
}

// Pin implements PinStore.
func (s *FilePinStore) Pin(server string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	pins, err := s.load()
	if err != nil {
		return "", err
	}
	return pins[server], nil
}

// SetPin implements PinStore.
func (s *FilePinStore) SetPin(server, fp string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	pins, err := s.load()
	if err != nil {
		return err
	}
	pins[server] = fp
	b, err := json.MarshalIndent(pins, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPinStore, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.Path), ".electrum-pins-*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPinStore, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: %w", ErrPinStore, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: %w", ErrPinStore, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%w: %w", ErrPinStore, err)
	}
	if err := os.Rename(tmp.Name(), s.Path); err != nil {
		return fmt.Errorf("%w: %w", ErrPinStore, err)
	}
	return nil
}

var (
	_ PinStore = (*MemoryPinStore)(nil)
	_ PinStore = (*FilePinStore)(nil)
)
