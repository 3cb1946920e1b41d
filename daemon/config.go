package daemon

import (
	"log/slog"
	"time"

	"github.com/btcsuite/btcd/chaincfg"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
	"github.com/custodyagents/cosigner/psbtflow"
	"github.com/custodyagents/cosigner/store"
)

// Config is what the daemon runs with, already read and checked by the caller (cmd/cosigner
// reads it from the COSIGNER_* environment; docs/configuration.md). Each field names the
// setting it comes from; New's errors name the same settings.
type Config struct {
	// Params is the Bitcoin network (COSIGNER_NETWORK).
	Params *chaincfg.Params
	// Descriptor is the registered wallet descriptor with #checksum (COSIGNER_DESCRIPTOR).
	Descriptor string
	// KeyFile is the encrypted key file (COSIGNER_KEY_FILE); Passphrase returns its passphrase
	// and is called once, after the descriptor, relays and policy are checked.
	KeyFile    string
	Passphrase func() (string, error)
	// DBPath is the SQLite database file (DATA_DIR/cosigner.db).
	DBPath string
	// PolicyFile is the policy YAML file (COSIGNER_POLICY), reloaded while running.
	PolicyFile string

	// ElectrumServers are the Electrum servers in order of preference, canonical tcp:// or
	// ssl:// URLs (COSIGNER_ELECTRUM_URL split and checked); ElectrumURL is the setting as
	// written, for the start log; ElectrumTLS the pins and trust on first use of ssl:// servers.
	ElectrumServers []string
	ElectrumURL     string
	ElectrumTLS     electrum.TLSOptions
	// Lookahead is the number of unused scripts watched past the last used one, per branch
	// (COSIGNER_LOOKAHEAD).
	Lookahead int

	// Relays are the Nostr relay URLs (COSIGNER_RELAYS); RelayQuorum the relays that must accept
	// a published event (COSIGNER_RELAY_QUORUM; 0: a majority).
	Relays      []string
	RelayQuorum int
	// NIP04Legacy also accepts NIP-04 transport (COSIGNER_NIP04_LEGACY); ClientRate (requests
	// per second, 0: no limit) and ClientBurst bound each client pubkey (COSIGNER_CLIENT_RATE,
	// COSIGNER_CLIENT_BURST).
	NIP04Legacy bool
	ClientRate  float64
	ClientBurst int
	// ElectrumNostrPerMin bounds the Electrum psbt_nostr messages taken in per minute, all
	// senders together (COSIGNER_ELECTRUM_NOSTR_RATE); ElectrumNostrReplyAll also sends a
	// signed PSBT to every other co-signer (COSIGNER_ELECTRUM_NOSTR_REPLY_ALL).
	ElectrumNostrPerMin   int
	ElectrumNostrReplyAll bool
	// NotifyRecipients are the operators' hex pubkeys for NIP-17 notices (COSIGNER_NOTIFY_NPUB
	// parsed; nil: off).
	NotifyRecipients []string

	// HealthAddr is the listen address of /healthz, /status, /metrics and /requests/
	// (COSIGNER_HEALTH_ADDR; empty: off).
	HealthAddr string
	// PprofAddr is the loopback listen address of Go's /debug/pprof/ profiles
	// (COSIGNER_PPROF_ADDR; empty: off; CheckPprofAddr).
	PprofAddr string
	// Limits bound sign_psbt and held requests (COSIGNER_MAX_PSBT_*, …; docs/bounds.md).
	Limits psbtflow.Limits
	// Retention bounds the remote signer's records (COSIGNER_RETENTION_*; SeenTTL is set by
	// the daemon to the NIP-46 replay window), pruned every RetentionInterval.
	Retention         store.Retention
	RetentionInterval time.Duration

	// Logger is the daemon's logger (nil: slog.Default()).
	Logger *slog.Logger
}
