package scenario

// daemon.go — one `cosigner run` process and the subcommands run beside it, with its own data
// dir, key, policy file, health endpoint and log. Env has one (key A); Pair has two (A and B).

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/keystore"
	"github.com/custodyagents/cosigner/store"
)

// Daemon is one cosigner instance: `cosigner run` started and stopped on demand, and its
// subcommands run with the same COSIGNER_* environment. Its methods are safe for concurrent use.
type Daemon struct {
	// Name says which instance this is in messages ("cosigner", "A", "B").
	Name string
	// DataDir is COSIGNER_DATA_DIR (key.json, cosigner.db, policy.yaml).
	DataDir string
	// PolicyFile is the policy the daemon loads (DataDir/policy.yaml).
	PolicyFile string
	// HealthAddr serves /healthz and /status.
	HealthAddr string
	// LogPath receives the daemon's stdout and stderr (appended across restarts).
	LogPath string
	// Key is the instance's public key information, read from key.json after init.
	Key keystore.PublicInfo

	bin string
	env []string // COSIGNER_* for the daemon and its subcommands

	mu     sync.Mutex
	daemon *exec.Cmd
	done   chan error
}

// newDaemon prepares (but does not start) an instance whose files live under dataDir, with its
// log at logPath and a fresh random passphrase in passFile; env are further COSIGNER_* settings.
func newDaemon(name, bin, dataDir, logPath, passFile string, env []string) (*Daemon, error) {
	hp, err := devnet.FreePort("cosigner " + name + " health endpoint")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(passFile), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(passFile, []byte("scenario passphrase "+nostr.GeneratePrivateKey()[:16]+"\n"), 0o600); err != nil {
		return nil, err
	}
	d := &Daemon{Name: name, DataDir: dataDir, PolicyFile: filepath.Join(dataDir, "policy.yaml"),
		HealthAddr: fmt.Sprintf("127.0.0.1:%d", hp), LogPath: logPath, bin: bin}
	d.env = append([]string{
		"COSIGNER_NETWORK=regtest",
		"COSIGNER_DATA_DIR=" + dataDir,
		"COSIGNER_PASSPHRASE_FILE=" + passFile,
		"COSIGNER_HEALTH_ADDR=" + d.HealthAddr,
		"COSIGNER_LOG_LEVEL=debug",
	}, env...)
	return d, nil
}

// initKey runs `cosigner init` and reads the new key's public information into d.Key.
func (d *Daemon) initKey(ctx context.Context) error {
	if _, err := d.Cosigner(ctx, "init"); err != nil {
		return err
	}
	var err error
	d.Key, _, err = keystore.ReadPublic(filepath.Join(d.DataDir, "key.json"))
	return err
}

// setEnv adds COSIGNER_* settings (later ones win) for the next start and subcommands.
func (d *Daemon) setEnv(kv ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.env = append(d.env, kv...)
}

func (d *Daemon) environ() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append(os.Environ(), d.env...)
}

// StartDaemon starts `cosigner run` (output appended to LogPath) and waits for a healthy
// /healthz (synced and connected), up to 90 s. The health port was free when it was picked, but
// another process on the machine (tests of other packages run in parallel) can take it before
// the daemon binds it; then the daemon exits at once saying so, and StartDaemon picks a new
// port and starts it again (up to three times).
func (d *Daemon) StartDaemon(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.daemon != nil {
		return fmt.Errorf("scenario: cosigner %s already running", d.Name)
	}
	for attempt := 1; ; attempt++ {
		err := d.start(ctx)
		var taken *portTakenError
		if !errors.As(err, &taken) || attempt == 3 {
			return err
		}
		hp, perr := devnet.FreePort("cosigner " + d.Name + " health endpoint")
		if perr != nil {
			return perr
		}
		d.HealthAddr = fmt.Sprintf("127.0.0.1:%d", hp)
		d.env = append(d.env, "COSIGNER_HEALTH_ADDR="+d.HealthAddr)
	}
}

// portTakenError: the daemon exited at start-up because its health port was taken.
type portTakenError struct{ err error }

func (e *portTakenError) Error() string { return e.err.Error() }

// start is one attempt of StartDaemon (d.mu held).
func (d *Daemon) start(ctx context.Context) error {
	logf, err := os.OpenFile(d.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	cmd := exec.Command(d.bin, "run")
	cmd.Env = append(os.Environ(), d.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("scenario: start cosigner %s: %w", d.Name, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait(); logf.Close() }()
	d.daemon, d.done = cmd, done
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			d.daemon = nil
			tail := d.LogTail(30)
			err = fmt.Errorf("scenario: cosigner %s exited during start-up (%v); log:\n%s", d.Name, err, tail)
			if strings.Contains(tail, "COSIGNER_HEALTH_ADDR="+d.HealthAddr) && strings.Contains(tail, "address already in use") {
				return &portTakenError{err}
			}
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		if ok, _ := d.Healthy(ctx); ok {
			return nil
		}
	}
	return fmt.Errorf("scenario: cosigner %s not healthy after 90s; log:\n%s", d.Name, d.LogTail(30))
}

// StopDaemon stops `cosigner run` with SIGTERM (graceful) and waits; after 20 s it kills it and
// says so. Stopping a stopped daemon is a no-op.
func (d *Daemon) StopDaemon() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.daemon == nil {
		return nil
	}
	d.daemon.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-d.done:
	case <-time.After(20 * time.Second):
		d.daemon.Process.Kill()
		err = <-d.done
		err = fmt.Errorf("cosigner %s did not stop within 20s after SIGTERM (killed): %v", d.Name, err)
	}
	d.daemon = nil
	return err
}

// KillDaemon kills `cosigner run` with SIGKILL (a crash: nothing is flushed or closed) and waits
// for it to be gone. Killing a stopped daemon is a no-op.
func (d *Daemon) KillDaemon() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.daemon == nil {
		return nil
	}
	if err := d.daemon.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("scenario: kill cosigner %s: %w", d.Name, err)
	}
	<-d.done // "signal: killed"
	d.daemon = nil
	return nil
}

// DaemonRunning reports whether `cosigner run` is still up.
func (d *Daemon) DaemonRunning() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.daemon == nil {
		return false
	}
	select {
	case err := <-d.done:
		d.done <- err
		return false
	default:
		return true
	}
}

// Healthy asks the daemon's /healthz.
func (d *Daemon) Healthy(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.HealthAddr+"/healthz", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK, nil
}

// statusWire is the documented JSON of /status (snake_case, amounts in satoshis), read the way
// an outside client reads it.
type statusWire struct {
	HasTip         bool   `json:"has_tip"`
	TipHeight      int32  `json:"tip_height"`
	TipHash        string `json:"tip_hash"`
	Headers        int32  `json:"headers"`
	ConfirmedSat   int64  `json:"confirmed_sat"`
	UnconfirmedSat int64  `json:"unconfirmed_sat"`
	ImmatureSat    int64  `json:"immature_sat"`
	ScriptsTracked int    `json:"scripts_tracked"`
	ScriptsUsed    int    `json:"scripts_used"`
	Txs            int    `json:"txs"`
	Unproven       int    `json:"unproven"`
	UnackedEvents  int    `json:"unacked_events"`
	UTXOs          []struct {
		OutPoint     string `json:"outpoint"`
		ValueSat     int64  `json:"value_sat"`
		ScriptPubKey string `json:"script_pubkey"`
		Branch       uint32 `json:"branch"`
		Index        uint32 `json:"index"`
		Height       int32  `json:"height"`
		BlockHash    string `json:"block_hash"`
		Coinbase     bool   `json:"coinbase"`
	} `json:"utxos"`
}

// status converts the wire shape into chainwatch.Status.
func (w statusWire) status() (chainwatch.Status, error) {
	st := chainwatch.Status{HasTip: w.HasTip, Tip: chainwatch.Tip{Height: w.TipHeight}, Headers: w.Headers,
		Confirmed: btcutil.Amount(w.ConfirmedSat), Unconfirmed: btcutil.Amount(w.UnconfirmedSat), Immature: btcutil.Amount(w.ImmatureSat),
		ScriptsTracked: w.ScriptsTracked, ScriptsUsed: w.ScriptsUsed, Txs: w.Txs, Unproven: w.Unproven, UnackedEvents: w.UnackedEvents}
	if w.TipHash != "" {
		h, err := chainhash.NewHashFromStr(w.TipHash)
		if err != nil {
			return st, fmt.Errorf("scenario: /status tip_hash: %w", err)
		}
		st.Tip.Hash = *h
	}
	for _, u := range w.UTXOs {
		op, err := wire.NewOutPointFromString(u.OutPoint)
		if err != nil {
			return st, fmt.Errorf("scenario: /status outpoint %q: %w", u.OutPoint, err)
		}
		pk, err := hex.DecodeString(u.ScriptPubKey)
		if err != nil {
			return st, fmt.Errorf("scenario: /status script_pubkey: %w", err)
		}
		cu := chainwatch.UTXO{OutPoint: *op, Value: btcutil.Amount(u.ValueSat), PkScript: pk, Branch: u.Branch, Index: u.Index,
			Height: u.Height, Coinbase: u.Coinbase}
		if u.BlockHash != "" {
			h, err := chainhash.NewHashFromStr(u.BlockHash)
			if err != nil {
				return st, fmt.Errorf("scenario: /status block_hash: %w", err)
			}
			cu.BlockHash = *h
		}
		st.UTXOs = append(st.UTXOs, cu)
	}
	return st, nil
}

// Status reads the daemon's /status (the wallet as the cosigner sees it).
func (d *Daemon) Status(ctx context.Context) (chainwatch.Status, error) {
	var st chainwatch.Status
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.HealthAddr+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("scenario: cosigner %s /status: HTTP %d", d.Name, resp.StatusCode)
	}
	var w statusWire
	if err := json.NewDecoder(resp.Body).Decode(&w); err != nil {
		return st, err
	}
	return w.status()
}

// WaitStatus polls /status until cond holds or the timeout passes.
func (d *Daemon) WaitStatus(ctx context.Context, timeout time.Duration, cond func(chainwatch.Status) bool) (chainwatch.Status, error) {
	deadline := time.Now().Add(timeout)
	var st chainwatch.Status
	var err error
	for time.Now().Before(deadline) {
		st, err = d.Status(ctx)
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
	return st, fmt.Errorf("scenario: waiting for cosigner %s's wallet view (%s): %w", d.Name, timeout, err)
}

// Cosigner runs a cosigner subcommand with the instance's environment and returns its stdout.
func (d *Daemon) Cosigner(ctx context.Context, args ...string) (string, error) {
	return d.CosignerEnv(ctx, nil, args...)
}

// CosignerEnv is Cosigner with extra environment variables (later ones win).
func (d *Daemon) CosignerEnv(ctx context.Context, extra []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.bin, args...)
	cmd.Env = append(d.environ(), extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("cosigner %s %s: %v: %s", d.Name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// BunkerURI asks the instance for a bunker:// URI with a fresh single-use secret.
func (d *Daemon) BunkerURI(ctx context.Context) (string, error) {
	out, err := d.Cosigner(ctx, "bunker-uri")
	return strings.TrimSpace(out), err
}

// WritePolicyText replaces the policy file atomically (write, then rename, as an editor's save
// would); a running daemon reloads it (hot reload: a file that only tightens applies at once).
func (d *Daemon) WritePolicyText(doc string) error {
	if err := os.WriteFile(d.PolicyFile+".tmp", []byte(doc), 0o600); err != nil {
		return err
	}
	return os.Rename(d.PolicyFile+".tmp", d.PolicyFile)
}

// DBPath is the instance's SQLite database.
func (d *Daemon) DBPath() string { return filepath.Join(d.DataDir, "cosigner.db") }

// Audit reads the instance's newest audit entries (newest first) from its database; SQLite's
// WAL mode lets this reader run beside the daemon.
func (d *Daemon) Audit(ctx context.Context, n int) ([]store.AuditEntry, error) {
	db, err := store.Open(ctx, d.DBPath())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return db.AuditLog(ctx, n)
}

// LastDecision is the newest audit entry for a method.
func (d *Daemon) LastDecision(ctx context.Context, method string) (store.AuditEntry, error) {
	log, err := d.Audit(ctx, 50)
	if err != nil {
		return store.AuditEntry{}, err
	}
	for _, a := range log {
		if a.Method == method {
			return a, nil
		}
	}
	return store.AuditEntry{}, fmt.Errorf("scenario: no audit entry for %s in cosigner %s", method, d.Name)
}

// LogOnFailure logs, when t has failed, the last n lines of the instance's log and the race
// detector's reports found in it (if any).
func (d *Daemon) LogOnFailure(t TestLog, n int) {
	t.Helper()
	if !t.Failed() {
		return
	}
	t.Logf("cosigner %s log (tail):\n%s", d.Name, d.LogTail(n))
	if r := d.RaceReports(); r != "" {
		t.Logf("race reports in cosigner %s:\n%s", d.Name, r)
	}
}

// RaceReports returns the race detector's reports found in the instance's log (binary built
// with -race), or "".
func (d *Daemon) RaceReports() string {
	b, err := os.ReadFile(d.LogPath)
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

// WaitLog waits until a line of the instance's log contains every one of parts, and returns it.
func (d *Daemon) WaitLog(ctx context.Context, timeout time.Duration, parts ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(d.LogPath)
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
			return "", fmt.Errorf("scenario: no cosigner %s log line with %q within %s", d.Name, parts, timeout)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// LogTail returns the last n lines of the instance's log.
func (d *Daemon) LogTail(n int) string { return devnet.TailFile(d.LogPath, n) }

// InfoTail returns the last n lines of the instance's log that are not level=DEBUG.
func (d *Daemon) InfoTail(n int) string {
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		return ""
	}
	var keep []string
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if !strings.Contains(line, " level=DEBUG ") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep[max(0, len(keep)-n):], "\n")
}

// prepare finds the repository root, makes dir absolute and builds cmd/cosigner into
// dir/cosigner (with the race detector if race).
func prepare(ctx context.Context, dir string, race bool) (root, absDir, bin string, err error) {
	if root, err = devnet.RepoRoot(); err != nil {
		return "", "", "", err
	}
	if absDir, err = filepath.Abs(dir); err != nil {
		return "", "", "", err
	}
	bin = filepath.Join(absDir, "cosigner")
	args := []string{"build", "-o", bin}
	if race {
		args = append(args, "-race")
	}
	cmd := exec.CommandContext(ctx, "go", append(args, "./cmd/cosigner")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", "", "", fmt.Errorf("building cosigner: %v\n%s", err, b)
	}
	return root, absDir, bin, nil
}
