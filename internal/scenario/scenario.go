package scenario

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/signer"
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

// Env is a running scenario. Close it when done.
type Env struct {
	Root string // repository root
	Dir  string
	Net  *devnet.Network

	KeyA signer.PublicInfo // the cosigner's key
	KeyB BDKKey            // BDK's key (private)
	KeyC BDKKey            // offline key: only its xpub is used

	// Descriptor is the registered wallet descriptor (public keys, with checksum).
	Descriptor *descriptor.Descriptor
	// BDKDescriptor is the same wallet with key B private, for BDK.
	BDKDescriptor string

	// ClientSK/ClientPK is the NIP-46 client the policy authorises.
	ClientSK, ClientPK string

	PolicyFile string
	HealthAddr string
	env        []string // COSIGNER_* for the daemon and its subcommands
	bin        string

	mu     sync.Mutex
	daemon *exec.Cmd
	done   chan error
	log    *slog.Logger
}

// Setup starts the network, builds cosigner, creates the three keys, the wallet and the policy,
// and starts `cosigner run`, returning once its /healthz says it is synced and connected.
func Setup(ctx context.Context, o Options) (_ *Env, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	root, err := devnet.RepoRoot()
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	e := &Env{Root: root, Dir: dir, log: o.Logger}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	e.bin = filepath.Join(dir, "cosigner")
	args := []string{"build", "-o", e.bin}
	if o.Race {
		args = append(args, "-race")
	}
	if out, err := e.command(ctx, "go", append(args, "./cmd/cosigner")...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building cosigner: %v\n%s", err, out)
	}
	e.Net, err = devnet.Start(ctx, devnet.Config{Dir: filepath.Join(dir, "network"), RelayPorts: o.RelayPorts,
		ElectrumPort: o.ElectrumPort, Logger: o.Logger})
	if err != nil {
		return nil, err
	}

	// Key A: the cosigner's own, made by `cosigner init`.
	hp, err := devnet.FreePort("cosigner health endpoint")
	if err != nil {
		return nil, err
	}
	e.HealthAddr = fmt.Sprintf("127.0.0.1:%d", hp)
	data := filepath.Join(dir, "cosigner-data")
	passFile := filepath.Join(dir, "passphrase")
	if err := os.WriteFile(passFile, []byte("demo passphrase "+nostr.GeneratePrivateKey()[:16]+"\n"), 0o600); err != nil {
		return nil, err
	}
	e.PolicyFile = filepath.Join(data, "policy.yaml")
	e.env = []string{
		"COSIGNER_NETWORK=regtest",
		"COSIGNER_DATA_DIR=" + data,
		"COSIGNER_PASSPHRASE_FILE=" + passFile,
		"COSIGNER_ELECTRUM_URL=" + e.Net.ElectrumURL(),
		"COSIGNER_RELAYS=" + strings.Join(append(e.Net.RelayURLs(), o.ExtraRelays...), ","),
		"COSIGNER_HEALTH_ADDR=" + e.HealthAddr,
		"COSIGNER_LOG_LEVEL=debug",
	}
	e.env = append(e.env, o.ExtraEnv...)
	if _, err := e.Cosigner(ctx, "init"); err != nil {
		return nil, err
	}
	if e.KeyA, _, err = signer.ReadPublic(filepath.Join(data, "key.json")); err != nil {
		return nil, err
	}
	// Keys B and C: BDK's.
	if err := e.BDKJSON(ctx, &e.KeyB, "keys", "--network", "regtest"); err != nil {
		return nil, err
	}
	if err := e.BDKJSON(ctx, &e.KeyC, "keys", "--network", "regtest"); err != nil {
		return nil, err
	}
	pub, err := WalletDescriptor(o.Wallet, e.KeyA.KeyOrigin(), e.KeyB.XpubKey, e.KeyC.XpubKey)
	if err != nil {
		return nil, err
	}
	sum, err := descriptor.Checksum(pub)
	if err != nil {
		return nil, err
	}
	if e.Descriptor, err = descriptor.Parse(pub+"#"+sum, e.Net.Params(), descriptor.RequireChecksum()); err != nil {
		return nil, err
	}
	if e.BDKDescriptor, err = WalletDescriptor(o.Wallet, e.KeyA.KeyOrigin(), e.KeyB.XprvKey, e.KeyC.XpubKey); err != nil {
		return nil, err
	}
	e.env = append(e.env, "COSIGNER_DESCRIPTOR="+e.Descriptor.String())

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

// StartDaemon starts `cosigner run` (log in Dir/cosigner.log) and waits for a healthy /healthz.
func (e *Env) StartDaemon(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.daemon != nil {
		return errors.New("scenario: cosigner already running")
	}
	logf, err := os.OpenFile(filepath.Join(e.Dir, "cosigner.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(e.bin, "run")
	cmd.Env = append(os.Environ(), e.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("scenario: start cosigner: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	e.daemon, e.done = cmd, done
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			e.daemon = nil
			return fmt.Errorf("scenario: cosigner exited during start-up (%v); log:\n%s", err, devnet.TailFile(filepath.Join(e.Dir, "cosigner.log"), 30))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if ok, _ := e.Healthy(ctx); ok {
			return nil
		}
	}
	return fmt.Errorf("scenario: cosigner not healthy after 90s; log:\n%s", devnet.TailFile(filepath.Join(e.Dir, "cosigner.log"), 30))
}

// StopDaemon stops `cosigner run` with SIGTERM (graceful) and waits.
func (e *Env) StopDaemon() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.daemon == nil {
		return nil
	}
	e.daemon.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-e.done:
	case <-time.After(20 * time.Second):
		e.daemon.Process.Kill()
		err = <-e.done
		err = fmt.Errorf("cosigner did not stop within 20s after SIGTERM (killed): %v", err)
	}
	e.daemon = nil
	return err
}

// DaemonRunning reports whether `cosigner run` is still up.
func (e *Env) DaemonRunning() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.daemon == nil {
		return false
	}
	select {
	case err := <-e.done:
		e.done <- err
		return false
	default:
		return true
	}
}

// Healthy asks the daemon's /healthz.
func (e *Env) Healthy(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.HealthAddr+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// Status reads the daemon's /status (the wallet as the cosigner sees it).
func (e *Env) Status(ctx context.Context) (chainwatch.Status, error) {
	var st chainwatch.Status
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.HealthAddr+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("scenario: /status: HTTP %d", resp.StatusCode)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

// Cosigner runs a cosigner subcommand with the scenario's environment and returns its stdout.
func (e *Env) Cosigner(ctx context.Context, args ...string) (string, error) {
	return e.CosignerEnv(ctx, nil, args...)
}

// CosignerEnv is Cosigner with extra environment variables (later ones win).
func (e *Env) CosignerEnv(ctx context.Context, extra []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, e.bin, args...)
	cmd.Env = append(append(os.Environ(), e.env...), extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("cosigner %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// BunkerURI asks the cosigner for a bunker:// URI with a fresh single-use secret.
func (e *Env) BunkerURI(ctx context.Context) (string, error) {
	out, err := e.Cosigner(ctx, "bunker-uri")
	return strings.TrimSpace(out), err
}

// BDKJSON runs e2e/clients/bdkwallet.py with args and decodes its JSON answer into out.
func (e *Env) BDKJSON(ctx context.Context, out any, args ...string) error {
	tools, err := devnet.ToolsDir()
	if err != nil {
		return err
	}
	py := filepath.Join(tools, "venv", "bin", "python")
	cmd := e.command(ctx, py, append([]string{filepath.Join(e.Root, "e2e", "clients", "bdkwallet.py")}, args...)...)
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
	return []string{"--descriptor", e.BDKDescriptor, "--electrum", e.Net.ElectrumURL(), "--network", "regtest"}
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

// WaitStatus polls /status until cond holds or the timeout passes.
func (e *Env) WaitStatus(ctx context.Context, timeout time.Duration, cond func(chainwatch.Status) bool) (chainwatch.Status, error) {
	deadline := time.Now().Add(timeout)
	var st chainwatch.Status
	var err error
	for time.Now().Before(deadline) {
		st, err = e.Status(ctx)
		if err == nil && cond(st) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err == nil {
		err = errors.New("condition not met")
	}
	return st, fmt.Errorf("scenario: waiting for the cosigner's wallet view (%s): %w", timeout, err)
}

// Close stops the daemon and the network.
func (e *Env) Close() {
	if err := e.StopDaemon(); err != nil {
		e.log.Warn("cosigner stop", "error", err)
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

// LogOnFailure logs, when t has failed, the last n lines of the cosigner's log and the race
// detector's reports found in it (if any).
func (e *Env) LogOnFailure(t TestLog, n int) {
	t.Helper()
	if !t.Failed() {
		return
	}
	t.Logf("cosigner log (tail):\n%s", e.LogTail(n))
	if r := e.RaceReports(); r != "" {
		t.Logf("race reports in the cosigner:\n%s", r)
	}
}

// RaceReports returns the race detector's reports found in the cosigner's log (binary built
// with Options.Race), or "".
func (e *Env) RaceReports() string {
	b, err := os.ReadFile(filepath.Join(e.Dir, "cosigner.log"))
	if err != nil {
		return ""
	}
	var out []string
	for _, part := range strings.Split(string(b), "==================")[1:] {
		if strings.Contains(part, "WARNING: DATA RACE") {
			out = append(out, part)
		}
	}
	return strings.Join(out, "\n")
}

// WaitLog waits until a line of the cosigner's log contains every one of parts, and returns it.
func (e *Env) WaitLog(ctx context.Context, timeout time.Duration, parts ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(filepath.Join(e.Dir, "cosigner.log"))
		for _, line := range strings.Split(string(b), "\n") {
			all := true
			for _, p := range parts {
				if !strings.Contains(line, p) {
					all = false
					break
				}
			}
			if all {
				return line, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("scenario: no cosigner log line with %q within %s", parts, timeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LogTail returns the last n lines of the cosigner's log.
func (e *Env) LogTail(n int) string { return devnet.TailFile(filepath.Join(e.Dir, "cosigner.log"), n) }

func (e *Env) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = e.Root
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
