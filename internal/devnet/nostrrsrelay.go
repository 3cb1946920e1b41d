package devnet

// nostrrsrelay.go — nostr-rs-relay (crates.io nostr-rs-relay, pinned below), a relay people run
// in production, as one of the network's relays: its binary, its config.toml and its start.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// RelaySoftware names the program that serves one of the network's relays.
type RelaySoftware string

const (
	// RelayNostrRs is nostr-rs-relay NostrRsRelayVersion (Rust, SQLite), installed by
	// scripts/install-tools.sh as <tools>/bin/nostr-rs-relay. As released it honours "#p"
	// filters for live events, sends no OK (NIP-01) for ephemeral events (kinds 20000–29999,
	// such as NIP-46's 24133: fixed upstream in 0.9.0) and does not set TCP_NODELAY on its
	// connections.
	RelayNostrRs RelaySoftware = "nostr-rs-relay"
	// RelayNode is node/relay.mjs: npm @nostr-relay/core behind a ws server. It answers every
	// EVENT with an OK, and relays live events to every subscription of their kind, ignoring
	// tag filters such as "#p".
	RelayNode RelaySoftware = "node"
)

// NostrRsRelayVersion is the nostr-rs-relay release the network runs; Start refuses another
// ("nostr-rs-relay --version" must print it).
const NostrRsRelayVersion = "0.8.12"

// relaySoftware is the program relay i runs under cfg: cfg.RelaySoftware[i] when given,
// otherwise nostr-rs-relay for relay 0 and the Node relay for the others.
func relaySoftware(cfg []RelaySoftware, i int) (RelaySoftware, error) {
	if i < len(cfg) && cfg[i] != "" {
		switch cfg[i] {
		case RelayNostrRs, RelayNode:
			return cfg[i], nil
		}
		return "", fmt.Errorf("devnet: Config.RelaySoftware[%d] = %q: want %q or %q", i, cfg[i], RelayNostrRs, RelayNode)
	}
	if i == 0 {
		return RelayNostrRs, nil
	}
	return RelayNode, nil
}

// RelaySoftware is the program serving relay i (0-based, the order of RelayURLs), or "" when
// there is no relay i.
func (n *Network) RelaySoftware(i int) RelaySoftware {
	if i < 0 || i >= len(n.relays) {
		return ""
	}
	return n.relays[i].software
}

var nostrRsVersionChecked sync.Map // binary path → error (nil: the pinned version)

// findNostrRsRelay returns <toolsDir>/bin/nostr-rs-relay after checking that it is there and is
// NostrRsRelayVersion; otherwise an error wrapping ErrToolMissing that says how to install it.
func findNostrRsRelay(toolsDir string) (string, error) {
	bin := filepath.Join(toolsDir, "bin", "nostr-rs-relay")
	if !isFile(bin) {
		return "", fmt.Errorf("nostr-rs-relay not found in %s: %s (it builds nostr-rs-relay %s once into a cache and installs it there): %w",
			filepath.Dir(bin), installHint, NostrRsRelayVersion, ErrToolMissing)
	}
	if v, ok := nostrRsVersionChecked.Load(bin); ok {
		if v == nil {
			return bin, nil
		}
		return "", v.(error)
	}
	var verr error
	out, err := exec.Command(bin, "--version").CombinedOutput()
	switch {
	case err != nil:
		verr = fmt.Errorf("%s --version: %v: %s: %w", bin, err, installHint, ErrToolMissing)
	case strings.TrimSpace(string(out)) != "nostr-rs-relay "+NostrRsRelayVersion:
		verr = fmt.Errorf("%s is %q, want nostr-rs-relay %s: %s: %w", bin, strings.TrimSpace(string(out)), NostrRsRelayVersion, installHint, ErrToolMissing)
	}
	nostrRsVersionChecked.Store(bin, verr)
	return bin, verr
}

// nostrRsConfig is relay i's config.toml (nostr-rs-relay 0.8.12's keys, see its config.toml):
// loopback only, its SQLite database in dataDir, and the release's own limits written out —
// no rate limits, 128 KiB events and WebSocket messages — so that tests meet what a relay run
// with the shipped defaults does.
func nostrRsConfig(port int, dataDir string) string {
	return fmt.Sprintf(`# written by internal/devnet (nostr-rs-relay %[3]s)
[info]
relay_url = "ws://127.0.0.1:%[1]d/"
name = "cosigner devnet nostr-rs-relay"
description = "nostr-rs-relay %[3]s on the cosigner test network"

[database]
engine = "sqlite"
data_directory = %[2]q

[network]
address = "127.0.0.1"
port = %[1]d

[options]
reject_future_seconds = 1800

[limits]
messages_per_sec = 0
subscriptions_per_min = 0
max_event_bytes = 131072
max_ws_message_bytes = 131072
max_ws_frame_bytes = 131072
broadcast_buffer = 16384
event_persist_buffer = 4096

[authorization]
nip42_auth = false
`, port, dataDir, NostrRsRelayVersion)
}

// startNostrRs starts nostr-rs-relay as relay i: its config and database live in <dir>/relay-i/
// (kept across StopRelay and StartRelay), its output goes to <dir>/relay-i.log.
func (n *Network) startNostrRs(name string, port int) (*process, error) {
	dataDir := filepath.Join(n.dir, name)
	if err := mkdirAll(dataDir); err != nil {
		return nil, err
	}
	cfgPath := filepath.Join(dataDir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(nostrRsConfig(port, dataDir)), 0o644); err != nil {
		return nil, fmt.Errorf("%s: writing %s: %w", name, cfgPath, err)
	}
	// RUST_LOG is taken from the environment when set; info (the release's default) otherwise.
	return startProcess(name, n.tools.nostrRsRelay, []string{"--config", cfgPath, "--db", dataDir}, nil,
		dataDir, filepath.Join(n.dir, name+".log"), n.log)
}

// startRelayProcess starts relay i's program (see RelaySoftware).
func (n *Network) startRelayProcess(i int) (*process, error) {
	r := &n.relays[i]
	name := fmt.Sprintf("relay-%d", i)
	if r.software == RelayNostrRs {
		return n.startNostrRs(name, r.port)
	}
	db := filepath.Join(n.dir, name+".sqlite")
	return startProcess(name, n.tools.node, []string{n.tools.relayJS, fmt.Sprint(r.port), db}, nil,
		n.tools.nodeDir, filepath.Join(n.dir, name+".log"), n.log)
}
