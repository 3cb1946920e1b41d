package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/kelseyhightower/envconfig"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/daemon"
	"github.com/custodyagents/cosigner/netparams"
	"github.com/custodyagents/cosigner/notify"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/psbtflow"
)

// Config is read from the environment with prefix COSIGNER_. Every field has a default except
// the ones `run` needs to know the wallet (DESCRIPTOR) and where to meet clients (RELAYS).
type Config struct {
	Network        string   `envconfig:"NETWORK" default:"regtest" desc:"bitcoin network: mainnet, testnet4, signet, regtest or testnet3 (testnet)"`
	DataDir        string   `envconfig:"DATA_DIR" default:".cosigner" desc:"directory for the key file, the database and the default policy file"`
	KeyFile        string   `envconfig:"KEY_FILE" default:"" desc:"encrypted key file (default DATA_DIR/key.json)"`
	Passphrase     string   `envconfig:"PASSPHRASE" default:"" desc:"passphrase of the key file (prefer PASSPHRASE_FILE)"`
	PassphraseFile string   `envconfig:"PASSPHRASE_FILE" default:"" desc:"file whose first line is the key file passphrase"`
	Descriptor     string   `envconfig:"DESCRIPTOR" default:"" desc:"the registered wallet descriptor with #checksum, e.g. wsh(sortedmulti(2,[fp/48h/1h/0h/2h]tpub…/<0;1>/*,…))#xxxxxxxx"`
	ElectrumURL    string   `envconfig:"ELECTRUM_URL" default:"tcp://127.0.0.1:50001" desc:"comma-separated Electrum servers, tcp://host:port or ssl://host:port, in order of preference"`
	ElectrumPins   []string `envconfig:"ELECTRUM_TLS_PINS" default:"" desc:"comma-separated host:port=SHA-256 fingerprints of ssl:// servers' certificates (pinned: any other certificate is refused)"`
	ElectrumTOFU   bool     `envconfig:"ELECTRUM_TLS_TOFU" default:"true" desc:"trust an ssl:// server's self-signed certificate on first use and pin it in DATA_DIR/electrum-pins.json"`
	ElectrumPlain  bool     `envconfig:"ELECTRUM_ALLOW_PLAINTEXT" default:"false" desc:"on mainnet, testnet4, signet and testnet3, also accept tcp:// (plain text) Electrum servers that are not on a loopback address; by default they must be ssl://"`
	Relays         []string `envconfig:"RELAYS" default:"" desc:"comma-separated Nostr relay URLs (ws:// or wss://)"`
	RelayQuorum    int      `envconfig:"RELAY_QUORUM" default:"0" desc:"relays that must accept a published event before it counts as sent (0: a majority of COSIGNER_RELAYS); the others are retried in the background"`
	NotifyNPub     string   `envconfig:"NOTIFY_NPUB" default:"" desc:"comma-separated npubs (or hex pubkeys) of the operators who get NIP-17 direct messages about automations (empty: off)"`

	// NotifyRecipients is NotifyNPub parsed: the operators' hex pubkeys (nil: notifications
	// off). Set by loadConfig.
	NotifyRecipients []string `ignored:"true"`

	// ElectrumServers is ElectrumURL split and checked (canonical tcp:// / ssl:// URLs);
	// electrumPins is ElectrumPins as host:port → normalised fingerprint. Set by loadConfig.
	ElectrumServers []string          `ignored:"true"`
	electrumPins    map[string]string `ignored:"true"`
	PolicyFile      string            `envconfig:"POLICY" default:"" desc:"policy YAML file (default DATA_DIR/policy.yaml)"`
	Lookahead       int               `envconfig:"LOOKAHEAD" default:"20" desc:"unused scripts watched past the last used one, per branch"`
	HealthAddr      string            `envconfig:"HEALTH_ADDR" default:"127.0.0.1:8080" desc:"listen address of /healthz, /status and /metrics (Prometheus) (empty: off)"`
	PprofAddr       string            `envconfig:"PPROF_ADDR" default:"" desc:"loopback listen address of Go's /debug/pprof/ profiles, e.g. 127.0.0.1:6060 (empty: off; profiles can reveal memory contents, so only loopback is accepted)"`
	LogLevel        string            `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat       string            `envconfig:"LOG_FORMAT" default:"text" desc:"text or json"`
	NIP04Legacy     bool              `envconfig:"NIP04_LEGACY" default:"false" desc:"also accept NIP-04 transport and serve nip04_* (old NIP-46 clients)"`
	ClientRate      float64           `envconfig:"CLIENT_RATE" default:"20" desc:"NIP-46 requests per second allowed per client pubkey (0: no limit)"`
	ClientBurst     int               `envconfig:"CLIENT_BURST" default:"100" desc:"burst of NIP-46 requests allowed per client pubkey"`
	// Electrum's "Send to cosigner" (docs/electrum-cosigning.md); on only when the policy lists
	// the channel electrum_nostr.
	ElectrumNostrPerMin   int  `envconfig:"ELECTRUM_NOSTR_RATE" default:"10" desc:"Electrum psbt_nostr messages taken in per minute, all senders together (burst the same)"`
	ElectrumNostrReplyAll bool `envconfig:"ELECTRUM_NOSTR_REPLY_ALL" default:"false" desc:"send a signed PSBT from Electrum's channel to every other co-signer, not only to its sender"`

	// Retention of the remote signer's records (store.Retention, docs/flood-and-retention.md);
	// 0 turns a limit off. What an audit needs is never pruned.
	RetentionAge         time.Duration `envconfig:"RETENTION_AGE" default:"2160h" desc:"audit_log and sign_requests rows older than this are pruned (0: no age limit)"`
	RetentionAuditRows   int           `envconfig:"RETENTION_AUDIT_ROWS" default:"100000" desc:"audit_log rows kept at most, oldest pruned first (0: no limit)"`
	RetentionRequestRows int           `envconfig:"RETENTION_REQUEST_ROWS" default:"100000" desc:"sign_requests rows kept at most, oldest pruned first (0: no limit)"`
	RetentionSeenEvents  int           `envconfig:"RETENTION_SEEN_EVENTS" default:"100000" desc:"NIP-46 replay-set rows kept at most (they also expire after the replay window)"`
	RetentionInterval    time.Duration `envconfig:"RETENTION_INTERVAL" default:"10m" desc:"how often old records are pruned"`

	// Resource bounds of sign_psbt and held requests (psbtflow.Limits; docs/bounds.md).
	MaxPSBTBytes      int `envconfig:"MAX_PSBT_BYTES" default:"65536" desc:"largest PSBT accepted, in bytes (at most 65536)"`
	MaxPSBTInputs     int `envconfig:"MAX_PSBT_INPUTS" default:"500" desc:"most inputs per PSBT; more is refused (unsafe_psbt) before analysis"`
	MaxPSBTOutputs    int `envconfig:"MAX_PSBT_OUTPUTS" default:"500" desc:"most outputs per PSBT; more is refused (unsafe_psbt) before analysis"`
	AuditDestinations int `envconfig:"AUDIT_DESTINATIONS" default:"10" desc:"destinations named in an audit entry (the largest; the rest are counted and summed)"`
	MaxHoldsPerClient int `envconfig:"MAX_HOLDS_PER_CLIENT" default:"20" desc:"held requests waiting at once per client; more is refused (rate_limited)"`
	MaxHolds          int `envconfig:"MAX_HOLDS" default:"200" desc:"held requests waiting at once in all; more is refused (rate_limited)"`
}

// loadConfig reads and checks the environment. Errors name the variable.
func loadConfig() (*Config, error) {
	var c Config
	var err error
	if err = envconfig.Process("COSIGNER", &c); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	c.Passphrase = takeEnvPassphrase(c.Passphrase, c.PassphraseFile)
	if _, err := c.Params(); err != nil {
		return nil, err
	}
	if c.KeyFile == "" {
		c.KeyFile = filepath.Join(c.DataDir, "key.json")
	}
	if c.PolicyFile == "" {
		c.PolicyFile = filepath.Join(c.DataDir, "policy.yaml")
	}
	if c.Lookahead < 1 || c.Lookahead > 1000 {
		return nil, fmt.Errorf("configuration: COSIGNER_LOOKAHEAD=%d must be between 1 and 1000", c.Lookahead)
	}
	if _, err := parseLevel(c.LogLevel); err != nil {
		return nil, err
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return nil, fmt.Errorf("configuration: COSIGNER_LOG_FORMAT=%q must be text or json", c.LogFormat)
	}
	if c.ClientRate < 0 || c.ClientBurst < 1 {
		return nil, fmt.Errorf("configuration: COSIGNER_CLIENT_RATE=%v must be >= 0 and COSIGNER_CLIENT_BURST=%d >= 1", c.ClientRate, c.ClientBurst)
	}
	if c.ElectrumNostrPerMin < 1 {
		return nil, fmt.Errorf("configuration: COSIGNER_ELECTRUM_NOSTR_RATE=%d must be >= 1 (messages per minute)", c.ElectrumNostrPerMin)
	}
	if c.RetentionAge < 0 || c.RetentionAuditRows < 0 || c.RetentionRequestRows < 0 || c.RetentionSeenEvents < 0 || c.RetentionInterval < time.Second {
		return nil, fmt.Errorf("configuration: COSIGNER_RETENTION_AGE, _AUDIT_ROWS, _REQUEST_ROWS and _SEEN_EVENTS must be >= 0 and COSIGNER_RETENTION_INTERVAL >= 1s")
	}
	if err := c.checkLimits(); err != nil {
		return nil, err
	}
	if err := daemon.CheckPprofAddr(c.PprofAddr); err != nil {
		return nil, err
	}
	if c.RelayQuorum < 0 {
		return nil, fmt.Errorf("configuration: COSIGNER_RELAY_QUORUM=%d must be 0 (a majority) or a number of relays", c.RelayQuorum)
	}
	if err := c.parseElectrum(); err != nil {
		return nil, err
	}
	if c.NotifyRecipients, err = notify.ParseRecipients(c.NotifyNPub); err != nil {
		return nil, fmt.Errorf("configuration: COSIGNER_NOTIFY_NPUB: %w", err)
	}
	var relays []string
	for _, r := range c.Relays {
		if r = strings.TrimSpace(r); r != "" {
			relays = append(relays, r)
		}
	}
	c.Relays = relays
	return &c, nil
}

// Params maps COSIGNER_NETWORK to chain parameters (netparams.ByName).
func (c *Config) Params() (*chaincfg.Params, error) {
	p, err := netparams.ByName(c.Network)
	if err != nil {
		return nil, fmt.Errorf("configuration: COSIGNER_NETWORK: %w", err)
	}
	return p, nil
}

// plaintextAllowed refuses a tcp:// Electrum server at addr (host:port) that is not on a
// loopback address on a public network (every network but regtest), unless
// COSIGNER_ELECTRUM_ALLOW_PLAINTEXT is set: anyone on the path could read the wallet's scripts
// and withhold or delay what the watcher sees.
func (c *Config) plaintextAllowed(addr string) error {
	if c.ElectrumPlain || strings.EqualFold(strings.TrimSpace(c.Network), "regtest") {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_ELECTRUM_URL: %s: %w", addr, err)
	}
	if ip := net.ParseIP(host); strings.EqualFold(host, "localhost") || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("configuration: COSIGNER_ELECTRUM_URL: tcp://%s is plain text to a non-loopback host on %s: use ssl://%[1]s, or set COSIGNER_ELECTRUM_ALLOW_PLAINTEXT=true on a network you trust", addr, c.Network)
}

// parseElectrum checks COSIGNER_ELECTRUM_URL and COSIGNER_ELECTRUM_TLS_PINS.
func (c *Config) parseElectrum() error {
	c.ElectrumServers = nil
	tlsHosts := map[string]bool{}
	seen := map[string]bool{}
	for _, u := range strings.Split(c.ElectrumURL, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		a, err := electrum.ParseServer(u)
		if err != nil {
			return fmt.Errorf("configuration: COSIGNER_ELECTRUM_URL: %w", err)
		}
		if seen[a.String()] {
			return fmt.Errorf("configuration: COSIGNER_ELECTRUM_URL: %s is listed twice", a)
		}
		seen[a.String()] = true
		if a.TLS {
			tlsHosts[a.Addr] = true
		} else if err := c.plaintextAllowed(a.Addr); err != nil {
			return err
		}
		c.ElectrumServers = append(c.ElectrumServers, a.String())
	}
	if len(c.ElectrumServers) == 0 {
		return errors.New("configuration: COSIGNER_ELECTRUM_URL is empty: give at least one Electrum server, tcp://host:port or ssl://host:port")
	}
	c.electrumPins = map[string]string{}
	for _, p := range c.ElectrumPins {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		server, fp, ok := strings.Cut(p, "=")
		server = strings.TrimSpace(server)
		if !ok || server == "" {
			return fmt.Errorf("configuration: COSIGNER_ELECTRUM_TLS_PINS: %q: want host:port=fingerprint", p)
		}
		if !tlsHosts[server] {
			return fmt.Errorf("configuration: COSIGNER_ELECTRUM_TLS_PINS: %s is not an ssl:// server of COSIGNER_ELECTRUM_URL", server)
		}
		n, err := electrum.NormalizeFingerprint(fp)
		if err != nil {
			return fmt.Errorf("configuration: COSIGNER_ELECTRUM_TLS_PINS: %s: %w", server, err)
		}
		if _, dup := c.electrumPins[server]; dup {
			return fmt.Errorf("configuration: COSIGNER_ELECTRUM_TLS_PINS: %s is pinned twice", server)
		}
		c.electrumPins[server] = n
	}
	return nil
}

// ElectrumPinFile is where certificates trusted on first use are pinned.
func (c *Config) ElectrumPinFile() string { return filepath.Join(c.DataDir, "electrum-pins.json") }

// ElectrumTLS returns the TLS trust settings for the Electrum client: the configured pins, and
// the pin file in the data directory when trust on first use is on. Errors: the pin file
// exists but does not parse (electrum.ErrPinStore).
func (c *Config) ElectrumTLS() (electrum.TLSOptions, error) {
	o := electrum.TLSOptions{Fingerprints: c.electrumPins}
	if c.ElectrumTOFU {
		st, err := electrum.NewFilePinStore(c.ElectrumPinFile())
		if err != nil {
			return electrum.TLSOptions{}, fmt.Errorf("configuration: COSIGNER_ELECTRUM_TLS_TOFU: %w", err)
		}
		o.Pins = st
	}
	return o, nil
}

// checkLimits checks the resource bounds (each a whole number ≥ 1; MAX_PSBT_BYTES at most
// psbt.MaxPSBTBytes).
func (c *Config) checkLimits() error {
	for _, l := range []struct {
		name string
		v    int
	}{{"MAX_PSBT_BYTES", c.MaxPSBTBytes}, {"MAX_PSBT_INPUTS", c.MaxPSBTInputs}, {"MAX_PSBT_OUTPUTS", c.MaxPSBTOutputs},
		{"AUDIT_DESTINATIONS", c.AuditDestinations}, {"MAX_HOLDS_PER_CLIENT", c.MaxHoldsPerClient}, {"MAX_HOLDS", c.MaxHolds}} {
		if l.v < 1 {
			return fmt.Errorf("configuration: COSIGNER_%s=%d must be at least 1", l.name, l.v)
		}
	}
	if c.MaxPSBTBytes > psbt.MaxPSBTBytes {
		return fmt.Errorf("configuration: COSIGNER_MAX_PSBT_BYTES=%d must be at most %d (what one NIP-44 message carries)", c.MaxPSBTBytes, psbt.MaxPSBTBytes)
	}
	return nil
}

// Limits are the sign_psbt and hold bounds for psbtflow.WithLimits.
func (c *Config) Limits() psbtflow.Limits {
	return psbtflow.Limits{MaxPSBTBytes: c.MaxPSBTBytes, MaxInputs: c.MaxPSBTInputs, MaxOutputs: c.MaxPSBTOutputs,
		AuditDestinations: c.AuditDestinations, MaxHoldsPerClient: c.MaxHoldsPerClient, MaxHolds: c.MaxHolds}
}

// DBPath is the SQLite database file.
func (c *Config) DBPath() string { return filepath.Join(c.DataDir, "cosigner.db") }

// containerSecret is where Docker/Compose/Kubernetes secrets put the passphrase when neither
// COSIGNER_PASSPHRASE_FILE nor COSIGNER_PASSPHRASE is set.
var containerSecret = "/run/secrets/cosigner_passphrase"

// passphrase returns the key file passphrase from COSIGNER_PASSPHRASE_FILE or
// COSIGNER_PASSPHRASE (at most one may be set), else from the container secret file.
func (c *Config) passphrase() (string, error) {
	switch {
	case c.PassphraseFile != "" && c.Passphrase != "":
		return "", errors.New("configuration: set only one of COSIGNER_PASSPHRASE and COSIGNER_PASSPHRASE_FILE")
	case c.PassphraseFile != "":
		if err := privateSecretFile(c.PassphraseFile); err != nil {
			return "", err
		}
		b, err := os.ReadFile(c.PassphraseFile)
		if err != nil {
			return "", fmt.Errorf("configuration: COSIGNER_PASSPHRASE_FILE: %w", err)
		}
		line := firstLine(b)
		if line == "" {
			return "", errors.New("configuration: COSIGNER_PASSPHRASE_FILE is empty")
		}
		return line, nil
	case c.Passphrase != "":
		return c.Passphrase, nil
	}
	if _, err := os.Stat(containerSecret); err == nil {
		// A container secret's mode is the orchestrator's (Docker gives 0444 inside the
		// container's own tmpfs): not checked.
		b, err := os.ReadFile(containerSecret)
		if err != nil {
			return "", fmt.Errorf("configuration: %s: %w", containerSecret, err)
		}
		if line := firstLine(b); line != "" {
			return line, nil
		}
		return "", fmt.Errorf("configuration: %s is empty", containerSecret)
	}
	return "", errors.New("configuration: the key file passphrase is missing: set COSIGNER_PASSPHRASE_FILE (or COSIGNER_PASSPHRASE), or provide the container secret " + containerSecret)
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimRight(line, "\r")
}

// envPassphrase is COSIGNER_PASSPHRASE as first read: it is removed from the environment then
// (takeEnvPassphrase), and a command run again in the same process finds it here.
var envPassphrase struct {
	sync.Mutex
	v string
}

// takeEnvPassphrase removes COSIGNER_PASSPHRASE from the process environment (child processes
// and later readers of os.Environ do not get it; /proc/<pid>/environ still shows the
// environment the process started with, which is why COSIGNER_PASSPHRASE_FILE is preferred)
// and returns the passphrase: read (the value envconfig read) or, when the variable is gone
// and no passphrase file is set, the one read earlier.
func takeEnvPassphrase(read, file string) string {
	envPassphrase.Lock()
	defer envPassphrase.Unlock()
	if _, ok := os.LookupEnv("COSIGNER_PASSPHRASE"); ok {
		envPassphrase.v = read
		os.Unsetenv("COSIGNER_PASSPHRASE")
		return read
	}
	if read == "" && file == "" {
		return envPassphrase.v
	}
	return read
}

// privateSecretFile refuses a passphrase file that group or others may read or write.
func privateSecretFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("configuration: COSIGNER_PASSPHRASE_FILE: %w", err)
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return fmt.Errorf("configuration: COSIGNER_PASSPHRASE_FILE %s has mode %04o: other users may read the key file passphrase; run chmod 600 %s", path, m, path)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("configuration: COSIGNER_LOG_LEVEL=%q must be debug, info, warn or error", s)
	}
	return l, nil
}

func (c *Config) logger() *slog.Logger {
	lvl, _ := parseLevel(c.LogLevel)
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
