package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/keystore"
)

// Options configure Setup.
type Options struct {
	// Dir holds everything: the network's data and logs, the cosigner's data dir and log.
	Dir string
	// MaxPerTx is the policy's per-transaction cap, e.g. "1 BTC".
	MaxPerTx string
	// Race builds the cosigner binary with the race detector.
	Race bool
	// RelayPorts, ElectrumPort, HealthPort: zero picks free ports.
	RelayPorts   []int
	ElectrumPort int
	// ExtraRelays are relay URLs the cosigner also uses besides the network's own (for
	// example a misbehaving relay fixture in a test).
	ExtraRelays []string
	// ExtraEnv are further COSIGNER_* settings for the daemon and its subcommands.
	ExtraEnv []string
	Logger   *slog.Logger
	// Electrs also starts electrs 0.12 on the network (devnet.Config.Electrs) and points the
	// cosigner and BDK at it instead of ElectrumX (see Env.ElectrumURL).
	Electrs bool
	// RelaySoftware picks the program of each relay (devnet.Config.RelaySoftware; nil: the
	// network's default mix).
	RelaySoftware []devnet.RelaySoftware
	// Wallet is the registered wallet's shape: "" or "wsh" (wsh(sortedmulti(2,A,B,C))),
	// "sh-wsh" (the same nested in P2SH) or "tr" (tr(NUMS,multi_a(2,A,B,C))); see WalletDescriptor.
	Wallet string
}

// WalletDescriptor writes the 2-of-3 wallet of the given shape (Options.Wallet) over three key
// expressions, each followed by /<0;1>/*.
func WalletDescriptor(shape, a, b, c string) (string, error) {
	mp := "/<0;1>/*"
	switch shape {
	case "", "wsh":
		return fmt.Sprintf("wsh(sortedmulti(2,%s%s,%s%s,%s%s))", a, mp, b, mp, c, mp), nil
	case "sh-wsh":
		return fmt.Sprintf("sh(wsh(sortedmulti(2,%s%s,%s%s,%s%s)))", a, mp, b, mp, c, mp), nil
	case "tr":
		return fmt.Sprintf("tr(%s,multi_a(2,%s%s,%s%s,%s%s))", descriptor.NUMSKey, a, mp, b, mp, c, mp), nil
	}
	return "", fmt.Errorf("scenario: unknown wallet shape %q (wsh, sh-wsh, tr)", shape)
}

// BDKKey is a key made by bdkwallet.py keys.
type BDKKey struct {
	Mnemonic    string `json:"mnemonic"`
	XprvKey     string `json:"xprv_key"`
	XpubKey     string `json:"xpub_key"`
	Fingerprint string `json:"fingerprint"`
}

// Env is a running scenario. Close it when done. The cosigner daemon's methods (StartDaemon,
// StopDaemon, KillDaemon, Cosigner, Status, WaitLog, …) are Env's through the embedded Daemon.
type Env struct {
	Root string // repository root
	Dir  string
	Net  *devnet.Network

	*Daemon // the cosigner (key A): data in Dir/cosigner-data, log in Dir/cosigner.log

	KeyA keystore.PublicInfo // the cosigner's key
	KeyB BDKKey              // BDK's key (private)
	KeyC BDKKey              // offline key: only its xpub is used

	// Descriptor is the registered wallet descriptor (public keys, with checksum).
	Descriptor *descriptor.Descriptor
	// BDKDescriptor is the same wallet with key B private, for BDK.
	BDKDescriptor string

	// ClientSK/ClientPK is the NIP-46 client the policy authorises.
	ClientSK, ClientPK string

	log     *slog.Logger
	electrs bool
}

// ElectrumURL is the Electrum server the cosigner and BDK use: electrs's when
// Options.Electrs, else ElectrumX's.
func (e *Env) ElectrumURL() string {
	if e.electrs {
		return e.Net.ElectrsURL()
	}
	return e.Net.ElectrumURL()
}

// Setup starts the network, builds cosigner, creates the three keys, the wallet and the policy,
// and starts `cosigner run`, returning once its /healthz says it is synced and connected.
func Setup(ctx context.Context, o Options) (_ *Env, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	root, dir, bin, err := prepare(ctx, o.Dir, o.Race)
	if err != nil {
		return nil, err
	}
	e := &Env{Root: root, Dir: dir, log: o.Logger, electrs: o.Electrs}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	e.Net, err = devnet.Start(ctx, devnet.Config{Dir: filepath.Join(dir, "network"), RelayPorts: o.RelayPorts,
		ElectrumPort: o.ElectrumPort, Logger: o.Logger, Electrs: o.Electrs, RelaySoftware: o.RelaySoftware})
	if err != nil {
		return nil, err
	}

	// Key A: the cosigner's own, made by `cosigner init`.
	env := append([]string{
		"COSIGNER_ELECTRUM_URL=" + e.ElectrumURL(),
		"COSIGNER_RELAYS=" + strings.Join(append(e.Net.RelayURLs(), o.ExtraRelays...), ","),
	}, o.ExtraEnv...)
	if e.Daemon, err = newDaemon("A", bin, filepath.Join(dir, "cosigner-data"), filepath.Join(dir, "cosigner.log"),
		filepath.Join(dir, "passphrase"), env); err != nil {
		return nil, err
	}
	if err := e.initKey(ctx); err != nil {
		return nil, err
	}
	e.KeyA = e.Daemon.Key
	// Keys B and C: BDK's.
	if err := e.BDKJSON(ctx, &e.KeyB, "keys", "--network", "regtest"); err != nil {
		return nil, err
	}
	if err := e.BDKJSON(ctx, &e.KeyC, "keys", "--network", "regtest"); err != nil {
		return nil, err
	}
	if e.Descriptor, err = registeredDescriptor(o.Wallet, e.Net.Params(), e.KeyA.KeyOrigin(), e.KeyB.XpubKey, e.KeyC.XpubKey); err != nil {
		return nil, err
	}
	if e.BDKDescriptor, err = WalletDescriptor(o.Wallet, e.KeyA.KeyOrigin(), e.KeyB.XprvKey, e.KeyC.XpubKey); err != nil {
		return nil, err
	}
	e.setEnv("COSIGNER_DESCRIPTOR=" + e.Descriptor.String())

	e.ClientSK = nostr.GeneratePrivateKey()
	e.ClientPK, _ = nostr.GetPublicKey(e.ClientSK)
	if err := e.WritePolicy(o.MaxPerTx); err != nil {
		return nil, err
	}
	if err := e.StartDaemon(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// registeredDescriptor is WalletDescriptor over three public key expressions, with its checksum,
// parsed as the daemons register it.
func registeredDescriptor(shape string, net *chaincfg.Params, a, b, c string) (*descriptor.Descriptor, error) {
	pub, err := WalletDescriptor(shape, a, b, c)
	if err != nil {
		return nil, err
	}
	sum, err := descriptor.Checksum(pub)
	if err != nil {
		return nil, err
	}
	return descriptor.Parse(pub+"#"+sum, net, descriptor.RequireChecksum())
}

// WritePolicy writes the policy file: the scenario's client may call sign_psbt, up to maxPerTx.
func (e *Env) WritePolicy(maxPerTx string) error {
	npub, err := nip19.EncodePublicKey(e.ClientPK)
	if err != nil {
		return err
	}
	doc := fmt.Sprintf(`# cosigner policy (see README): who may ask, and how much one transaction may move.
version: 1
clients:
  - name: coordinator
    pubkey: %s
    methods: [sign_psbt]
limits:
  max_per_tx: %s
`, npub, maxPerTx)
	return os.WriteFile(e.PolicyFile, []byte(doc), 0o600)
}

// BDKJSON runs e2e/clients/bdkwallet.py with args and decodes its JSON answer into out.
func (e *Env) BDKJSON(ctx context.Context, out any, args ...string) error {
	return bdkJSON(ctx, e.Root, out, args...)
}

// bdkJSON runs e2e/clients/bdkwallet.py (from the repository at root) with args and decodes its
// JSON answer into out.
func bdkJSON(ctx context.Context, root string, out any, args ...string) error {
	tools, err := devnet.ToolsDir()
	if err != nil {
		return err
	}
	py := filepath.Join(tools, "venv", "bin", "python")
	cmd := command(ctx, root, py, append([]string{filepath.Join(root, "e2e", "clients", "bdkwallet.py")}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bdkwallet %s: %v: %s", args[0], err, lastLines(stderr.String(), 8))
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		return fmt.Errorf("bdkwallet %s: bad JSON output %q: %w", args[0], stdout.String(), err)
	}
	return nil
}

// WalletArgs are the bdkwallet.py flags naming this scenario's wallet and server.
func (e *Env) WalletArgs() []string {
	return []string{"--descriptor", e.BDKDescriptor, "--electrum", e.ElectrumURL(), "--network", "regtest"}
}

// NIP46Answer is what the remote signer answered: a result or an error string.
type NIP46Answer struct {
	Result string `json:"result"`
	Error  string `json:"error"`
}

// NIP46 sends one NIP-46 request through nostr-tools' BunkerSigner (e2e/clients/nip46client.mjs):
// connect with the bunker URI's secret, then method(params). A transport failure is an error;
// an error answer from the signer is in NIP46Answer.Error.
func (e *Env) NIP46(ctx context.Context, bunkerURI, clientSK, method string, params ...string) (NIP46Answer, error) {
	var ans NIP46Answer
	args := append([]string{filepath.Join(e.Root, "e2e", "clients", "nip46client.mjs"), "--bunker", bunkerURI, "--sk", clientSK, "--timeout", "60", method}, params...)
	cmd := e.command(ctx, "node", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return ans, fmt.Errorf("nip46client %s: %v: %s", method, err, lastLines(stderr.String(), 8))
	}
	if err := json.Unmarshal(stdout.Bytes(), &ans); err != nil {
		return ans, fmt.Errorf("nip46client %s: bad JSON output %q: %w", method, stdout.String(), err)
	}
	return ans, nil
}

// Fund pays amount to the wallet's receive address at index and returns the txid.
func (e *Env) Fund(ctx context.Context, index uint32, amount btcutil.Amount) (string, btcutil.Address, error) {
	d, err := e.Descriptor.Derive(0, index)
	if err != nil {
		return "", nil, err
	}
	txid, err := e.Net.Fund(ctx, d.Address, amount)
	return txid.String(), d.Address, err
}

// Close stops the daemon and the network.
func (e *Env) Close() {
	if e.Daemon != nil {
		if err := e.StopDaemon(); err != nil {
			e.log.Warn("cosigner stop", "error", err)
		}
	}
	if e.Net != nil {
		e.Net.Close()
	}
}

// TestLog is the part of testing.TB that LogOnFailure uses.
type TestLog interface {
	Helper()
	Failed() bool
	Logf(format string, args ...any)
}

func (e *Env) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return command(ctx, e.Root, name, args...)
}

// command is a child process run in dir that dies with the test process.
func command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
