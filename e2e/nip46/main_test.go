package nip46e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/store"
)

// One network and one cosigner daemon serve every test of the package (setting them up is
// most of the cost); the tests run one after another and leave the daemon as they found it
// (relays restarted, hostile relay quiet).
var (
	envOnce   sync.Once
	sharedEnv *scenario.Env
	envErr    error
	envDir    string
	hostile   *hostileRelay
)

// walletFunds is what setup pays into the wallet (in two coins, so that a 2-in payment can be
// built).
const walletFunds = 2 * btcutil.SatoshiPerBitcoin

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedEnv != nil {
		sharedEnv.Close()
	}
	if hostile != nil {
		hostile.Close()
	}
	if envDir != "" && code == 0 {
		os.RemoveAll(envDir)
	} else if envDir != "" {
		// The daemon's and the relays' full logs, for the failure's evidence.
		fmt.Fprintf(os.Stderr, "nip46e2e: kept %s (cosigner.log, network/relay-*.log)\n", envDir)
	}
	os.Exit(code)
}

// setup returns the shared scenario: devnet, a hostile relay fixture that the cosigner also
// uses, and `cosigner run` (built with -race) with a funded, synced wallet.
func setup(t *testing.T) *scenario.Env {
	t.Helper()
	if testing.Short() {
		t.Skip("NIP-46 end-to-end tests need the local test network (make test)")
	}
	envOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if envDir, envErr = os.MkdirTemp("", "nip46e2e-"); envErr != nil {
			return
		}
		if hostile, envErr = startHostileRelay(); envErr != nil {
			return
		}
		sharedEnv, envErr = scenario.Setup(ctx, scenario.Options{Dir: envDir, MaxPerTx: "3 BTC", Race: true,
			ExtraRelays: []string{hostile.URL()},
			// go-nostr v0.38.2 BunkerClient speaks NIP-04 transport (TestInteropGoNostr).
			// A per-client rate limit that TestHostileClients crosses even when the daemon is
			// slow, with a burst that covers every other test's clients (at most ~100 requests
			// each).
			ExtraEnv: []string{"COSIGNER_NIP04_LEGACY=true", "COSIGNER_CLIENT_RATE=2", "COSIGNER_CLIENT_BURST=100"}})
		if envErr != nil {
			return
		}
		// Two coins of 1 BTC each: a payment of 1.5 BTC spends both (2 inputs, 2 outputs).
		_, envErr = sharedEnv.FundConfirmed(ctx, walletFunds/2, walletFunds/2)
	})
	if envErr != nil {
		t.Fatalf("setting up the network and the cosigner: %v", envErr)
	}
	t.Cleanup(func() { sharedEnv.LogOnFailure(t, 80) })
	return sharedEnv
}

// stepResult is one line of nip46_session.mjs or nostrsdk_client.py output.
type stepResult struct {
	Step       string `json:"step"`
	Result     string `json:"result"`
	Error      string `json:"error"`
	Verified   bool   `json:"verified"`
	Text       string `json:"text"`
	Ciphertext string `json:"ciphertext"`
	Plaintext  string `json:"plaintext"`

	NostrConnectURI string   `json:"nostrconnect_uri"`
	RemoteSigner    string   `json:"remote_signer"`
	Relays          []string `json:"relays"`
	Done            bool     `json:"done"`
	At              float64  `json:"at"` // seconds since the client started (nostrsdk_client.py)
}

// clientProcess runs a client script from the repository root; its stdout lines are decoded
// as stepResults and sent on Lines (closed at exit); Wait returns the exit error with stderr.
type clientProcess struct {
	cmd    *exec.Cmd
	Lines  chan stepResult
	stderr strings.Builder
	done   chan struct{}
	bad    []string
}

func startClient(ctx context.Context, t *testing.T, env *scenario.Env, name string, args ...string) *clientProcess {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = env.Root
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := &clientProcess{cmd: cmd, Lines: make(chan stepResult, 64), done: make(chan struct{})}
	cmd.Stderr = &p.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		defer close(p.done)
		defer close(p.Lines)
		dec := json.NewDecoder(stdout)
		for {
			var r stepResult
			if err := dec.Decode(&r); err != nil {
				return
			}
			p.Lines <- r
		}
	}()
	return p
}

// results collects every step line until exit and fails the test if the script failed.
func (p *clientProcess) results(t *testing.T) map[string]stepResult {
	t.Helper()
	got := map[string]stepResult{}
	done := false
	for r := range p.Lines {
		if r.Done {
			done = true
		}
		if r.Step != "" {
			got[r.Step] = r
		}
	}
	<-p.done
	if err := p.cmd.Wait(); err != nil || !done {
		t.Fatalf("%s: %v (finished: %v); stderr:\n%s\nsteps so far: %+v", filepath.Base(p.cmd.Path), err, done, lastLines(p.stderr.String(), 15), got)
	}
	return got
}

func python(t *testing.T) string {
	t.Helper()
	tools, err := devnet.ToolsDir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(tools, "venv", "bin", "python")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// noError fails the test if the step was answered with an error.
func noError(t *testing.T, r stepResult) {
	t.Helper()
	if r.Error != "" {
		t.Fatalf("%s answered with an error: %s", r.Step, r.Error)
	}
}

// interopPerms are the permissions the interop clients' connect secrets grant.
const interopPerms = "sign_psbt,sign_event:1,nip44_encrypt,nip44_decrypt"

// bunkerURI makes a bunker:// URI with a fresh single-use secret that grants perms, as
// `cosigner bunker-uri` does (the secret goes into the daemon's store, hashed), naming the
// network's relays only (not the hostile relay). An empty perms grants the defaults.
func bunkerURI(ctx context.Context, t *testing.T, env *scenario.Env, perms string) string {
	t.Helper()
	db, err := store.Open(ctx, dbPath(env))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	secret := hex.EncodeToString(b)
	if perms == "" {
		err = db.AddConnectSecret(ctx, secret) // the default permissions (signer.DefaultPerms)
	} else {
		err = db.AddConnectSecretPerms(ctx, secret, perms)
	}
	if err != nil {
		t.Fatal(err)
	}
	return nip46.BunkerURI(env.KeyA.NostrPubKey, env.Net.RelayURLs(), secret)
}

func dbPath(env *scenario.Env) string { return filepath.Join(env.Dir, "cosigner-data", "cosigner.db") }

func mustStep(t *testing.T, got map[string]stepResult, step string) stepResult {
	t.Helper()
	r, ok := got[step]
	if !ok {
		t.Fatalf("no %s step in the client's output: %+v", step, got)
	}
	return r
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
