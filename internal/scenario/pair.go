package scenario

// pair.go — two cosigner instances co-signing over Nostr (issue 6): A and B are two `cosigner
// run` daemons, each made by `cosigner init` in its own data dir, on one local test network.
// They hold keys A and B of wsh(sortedmulti(2,A,B,C)); key C is a BDK key kept offline (the
// daemons know only its xpub; the harness keeps its descriptor for BDK, to read balances). B's
// policy lists A's Nostr key as a client with sign_psbt; A's policy has the automation under
// test, with B's bunker URI. Tests follow A's progress through `cosigner proposals list|show
// --json` (the shape in /work/wt/prompts/contract6.md, "Outbound state").

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/descriptor"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/outbound"
)

// Placeholders that SetupPair and WritePolicyA/B replace in policy texts.
const (
	// VarBunkerB is B's bunker:// URI (from `cosigner bunker-uri` on B, made once by SetupPair).
	VarBunkerB = "${BUNKER_B}"
	// VarNPubA is A's Nostr identity as npub (the NIP-46 client key A dials B with).
	VarNPubA = "${NPUB_A}"
	// VarNPubB is B's Nostr identity as npub.
	VarNPubB = "${NPUB_B}"
	// VarVault is the cold vault's descriptor (public keys, with checksum), for a policy's
	// `descriptors:` entry; the automation sweeps to `descriptor:cold_vault`.
	VarVault = "${VAULT_DESCRIPTOR}"
)

// PairOptions configure SetupPair.
type PairOptions struct {
	// Dir holds everything: network/, a/ and b/ (data dir cosigner-data, cosigner.log), the binary.
	Dir string
	// Race builds the cosigner binary with the race detector.
	Race bool
	// PolicyA is A's policy text (with an automation), PolicyB is B's; both may use the
	// Var… placeholders. Empty: SweepPolicyA(SweepOptions{}) and CosignerPolicyB("1 BTC").
	PolicyA, PolicyB string
	// ExtraEnvA, ExtraEnvB are further COSIGNER_* settings for each instance.
	ExtraEnvA, ExtraEnvB []string
	// MinRelayFeeRate is btcd's relay and mining floor in sat/vB (devnet.Config.MinRelayFeeRate):
	// transactions below it stay unconfirmed, for fee-bump tests. 0: btcd's default.
	MinRelayFeeRate int64
	// Net, when set, is a running network to use (for example an Env's) instead of starting
	// one; Close leaves it running. MinRelayFeeRate is then ignored.
	Net *devnet.Network
	// LagB holds every script status notification the Electrum server sends B back by this
	// much (B reaches ElectrumX through a devnet.Proxy; the lines after a held one wait too), so
	// that B learns of a deposit after A has asked: a co-signer whose watcher is behind. Deposit
	// then does not wait for B.
	LagB time.Duration
	// NoStartA leaves A stopped after setup (StartDaemon it when the test is ready).
	NoStartA bool
	Logger   *slog.Logger
	// Wallet is the shape of the pair's 2-of-3 wallet (WalletDescriptor: "" or "wsh", "sh-wsh",
	// "tr"); the cold vault stays wsh.
	Wallet string
}

// Pair is a running two-instance scenario. Close it when done.
type Pair struct {
	Root string // repository root
	Dir  string
	Net  *devnet.Network

	// A runs the automation and coordinates; B co-signs when A asks. Start, stop and kill them
	// with their StartDaemon, StopDaemon and KillDaemon (SIGKILL).
	A, B *Daemon
	// KeyC is the offline key: the daemons know only its xpub.
	KeyC BDKKey

	// Descriptor is the registered wallet wsh(sortedmulti(2,A,B,C)), or the shape
	// PairOptions.Wallet names (public keys, checksum).
	Descriptor *descriptor.Descriptor
	// BDKDescriptor is the same wallet with key C private, for BDK (balances; a last resort).
	BDKDescriptor string

	// Vault is the sweep destination: a 2-of-3 of three further BDK keys, public keys only
	// (VarVault); VaultBDK is the same with the first key private, for BDK's balance.
	Vault    *descriptor.Descriptor
	VaultBDK string

	// BunkerB is the bunker URI A's policy names for B (VarBunkerB).
	BunkerB string

	mu        sync.Mutex
	nextIndex uint32        // next receive index Deposit pays
	ownNet    bool          // Close closes Net
	lagB      *devnet.Proxy // B's Electrum server connection when PairOptions.LagB is set
	log       *slog.Logger
}

// SetupPair starts the network, builds cosigner, runs `cosigner init` for A and B, makes C and
// the vault with BDK, writes B's policy and starts B, asks B for a bunker URI, writes A's policy
// with it and starts A (unless NoStartA), returning once both are healthy.
func SetupPair(ctx context.Context, o PairOptions) (_ *Pair, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.PolicyA == "" {
		o.PolicyA = SweepPolicyA(SweepOptions{})
	}
	if o.PolicyB == "" {
		o.PolicyB = CosignerPolicyB("1 BTC")
	}
	root, dir, bin, err := prepare(ctx, o.Dir, o.Race)
	if err != nil {
		return nil, err
	}
	p := &Pair{Root: root, Dir: dir, log: o.Logger}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if p.Net = o.Net; p.Net == nil {
		if p.Net, err = devnet.Start(ctx, devnet.Config{Dir: filepath.Join(dir, "network"), Logger: o.Logger,
			MinRelayFeeRate: o.MinRelayFeeRate}); err != nil {
			return nil, err
		}
		p.ownNet = true
	}
	electrumB := p.Net.ElectrumURL()
	if o.LagB > 0 {
		lag := o.LagB
		if p.lagB, err = devnet.NewProxy(p.Net.ElectrumAddr(), func(line string) string {
			if strings.Contains(line, "blockchain.scripthash.subscribe") && !strings.Contains(line, `"id"`) {
				time.Sleep(lag) // a script status notification (no id)
			}
			return line
		}); err != nil {
			return nil, err
		}
		electrumB = p.lagB.URL()
	}
	for _, x := range []struct {
		d        **Daemon
		name     string
		electrum string
		extra    []string
	}{{&p.A, "A", p.Net.ElectrumURL(), o.ExtraEnvA}, {&p.B, "B", electrumB, o.ExtraEnvB}} {
		sub := filepath.Join(dir, strings.ToLower(x.name))
		env := append([]string{"COSIGNER_ELECTRUM_URL=" + x.electrum, "COSIGNER_RELAYS=" + strings.Join(p.Net.RelayURLs(), ",")}, x.extra...)
		d, err := newDaemon(x.name, bin, filepath.Join(sub, "cosigner-data"), filepath.Join(sub, "cosigner.log"),
			filepath.Join(sub, "passphrase"), env)
		if err != nil {
			return nil, err
		}
		*x.d = d
		if err := d.initKey(ctx); err != nil {
			return nil, err
		}
	}
	if err := bdkJSON(ctx, root, &p.KeyC, "keys", "--network", "regtest"); err != nil {
		return nil, err
	}
	if p.Descriptor, err = registeredDescriptor(o.Wallet, p.Net.Params(), p.A.Key.KeyOrigin(), p.B.Key.KeyOrigin(), p.KeyC.XpubKey); err != nil {
		return nil, err
	}
	if p.BDKDescriptor, err = WalletDescriptor(o.Wallet, p.A.Key.KeyOrigin(), p.B.Key.KeyOrigin(), p.KeyC.XprvKey); err != nil {
		return nil, err
	}
	var vk [3]BDKKey
	for i := range vk {
		if err := bdkJSON(ctx, root, &vk[i], "keys", "--network", "regtest"); err != nil {
			return nil, err
		}
	}
	if p.Vault, err = registeredDescriptor("wsh", p.Net.Params(), vk[0].XpubKey, vk[1].XpubKey, vk[2].XpubKey); err != nil {
		return nil, err
	}
	if p.VaultBDK, err = WalletDescriptor("wsh", vk[0].XprvKey, vk[1].XpubKey, vk[2].XpubKey); err != nil {
		return nil, err
	}
	for _, d := range []*Daemon{p.A, p.B} {
		d.setEnv("COSIGNER_DESCRIPTOR=" + p.Descriptor.String())
	}

	if err := p.WritePolicyB(o.PolicyB); err != nil {
		return nil, err
	}
	if err := p.B.StartDaemon(ctx); err != nil {
		return nil, err
	}
	if p.BunkerB, err = p.B.BunkerURI(ctx); err != nil {
		return nil, err
	}
	if err := p.WritePolicyA(o.PolicyA); err != nil {
		return nil, err
	}
	if !o.NoStartA {
		if err := p.A.StartDaemon(ctx); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// Expand replaces the Var… placeholders in a policy text.
func (p *Pair) Expand(doc string) string {
	return strings.NewReplacer(VarBunkerB, p.BunkerB, VarNPubA, p.A.Key.NPub(), VarNPubB, p.B.Key.NPub(),
		VarVault, p.Vault.String()).Replace(doc)
}

// WritePolicyA writes A's policy (placeholders expanded); a running A reloads it.
func (p *Pair) WritePolicyA(doc string) error { return p.A.WritePolicyText(p.Expand(doc)) }

// WritePolicyB writes B's policy (placeholders expanded); a running B reloads it.
func (p *Pair) WritePolicyB(doc string) error { return p.B.WritePolicyText(p.Expand(doc)) }

// SweepOptions shape SweepPolicyA's automation.
type SweepOptions struct {
	// MaxPerTx is A's per-transaction cap (default "5 BTC").
	MaxPerTx string
	// Timeout is how long A waits for B's answer before asking again (default "10s", the policy's minimum).
	Timeout string
	// BumpAfter is the automation's bump_after in blocks (default 6).
	BumpAfter int
	// Fallback and MaxFeeRate are the fee strategy's (defaults "2 sat/vB", "50 sat/vB").
	Fallback, MaxFeeRate string
	// TargetBlocks is the fee strategy's confirmation target (default 6).
	TargetBlocks int
}

// SweepPolicyA is A's policy for the pair: every deposit confirmed once is swept, whole, to the
// cold vault, with B asked for the second signature; B may ask A the same way (the co-signers
// are peers). Placeholders: VarBunkerB, VarNPubB, VarVault.
func SweepPolicyA(o SweepOptions) string {
	if o.MaxPerTx == "" {
		o.MaxPerTx = "5 BTC"
	}
	if o.Timeout == "" {
		o.Timeout = "10s"
	}
	if o.BumpAfter == 0 {
		o.BumpAfter = 6
	}
	if o.Fallback == "" {
		o.Fallback = "2 sat/vB"
	}
	if o.MaxFeeRate == "" {
		o.MaxFeeRate = "50 sat/vB"
	}
	if o.TargetBlocks == 0 {
		o.TargetBlocks = 6
	}
	return `# cosigner A: sweep every confirmed deposit to the cold vault, co-signed by B.
version: 1
clients:
  - name: cosigner_b
    pubkey: ` + VarNPubB + `
    methods: [sign_psbt]
descriptors:
  cold_vault:
    descriptor: "` + VarVault + `"
limits:
  max_per_tx: ` + o.MaxPerTx + `
automations:
  - name: sweep_deposits
    trigger: {funding_confirmed: 1}
    action:
      sweep: {to: descriptor:cold_vault}
    fee: {target_blocks: ` + strconv.Itoa(o.TargetBlocks) + `, max_feerate: ` + o.MaxFeeRate + `, fallback: ` + o.Fallback + `}
    cosigners:
      - "` + VarBunkerB + `"
    signatures: 2
    timeout: ` + o.Timeout + `
    bump_after: ` + strconv.Itoa(o.BumpAfter) + `
`
}

// CosignerPolicyB is B's policy for the pair: A's Nostr key may call sign_psbt; at most
// maxPerTx per transaction, and only to the cold vault. Placeholders: VarNPubA, VarVault.
func CosignerPolicyB(maxPerTx string) string {
	return `# cosigner B: co-sign A's sweeps to the cold vault, up to ` + maxPerTx + ` each.
version: 1
clients:
  - name: cosigner_a
    pubkey: ` + VarNPubA + `
    methods: [sign_psbt]
descriptors:
  cold_vault:
    descriptor: "` + VarVault + `"
limits:
  max_per_tx: ` + maxPerTx + `
  destinations:
    allow: [descriptor:cold_vault]
`
}

// Proposal is one outbound proposal as `cosigner proposals show --json` prints it (list --json
// leaves Timeline out); ProposalCosigner and ProposalEvent its parts.
type (
	Proposal         = outbound.View
	ProposalCosigner = outbound.CosignerView
	ProposalEvent    = outbound.EventView
)

// Proposals lists A's proposals (`cosigner proposals list --json`, without timelines).
func (p *Pair) Proposals(ctx context.Context) ([]Proposal, error) {
	out, err := p.A.Cosigner(ctx, "proposals", "list", "--json")
	if err != nil {
		return nil, err
	}
	var ps []Proposal
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		return nil, fmt.Errorf("scenario: proposals list --json: %w in %q", err, out)
	}
	return ps, nil
}

// Proposal shows one of A's proposals with its timeline (`cosigner proposals show ID --json`).
func (p *Pair) Proposal(ctx context.Context, id string) (Proposal, error) {
	var pr Proposal
	out, err := p.A.Cosigner(ctx, "proposals", "show", id, "--json")
	if err != nil {
		return pr, err
	}
	if err := json.Unmarshal([]byte(out), &pr); err != nil {
		return pr, fmt.Errorf("scenario: proposals show --json: %w in %q", err, out)
	}
	return pr, nil
}

// ErrNoProposal is WaitProposal's error when no proposal met the condition in time.
var ErrNoProposal = errors.New("scenario: no proposal met the condition")

// WaitProposal polls A's proposals (every 250 ms, up to timeout) until one meets cond, and
// returns it with its timeline. The error wraps ErrNoProposal and lists what A had.
func (p *Pair) WaitProposal(ctx context.Context, timeout time.Duration, cond func(Proposal) bool) (Proposal, error) {
	deadline := time.Now().Add(timeout)
	var last []Proposal
	var lastErr error
	for {
		ps, err := p.Proposals(ctx)
		if err == nil {
			last = ps
			for _, pr := range ps {
				if cond(pr) {
					return p.Proposal(ctx, pr.ID)
				}
			}
		} else {
			lastErr = err
		}
		if time.Now().After(deadline) {
			var have []string
			for _, pr := range last {
				have = append(have, fmt.Sprintf("%s %s %s %q", pr.ID, pr.Trigger, pr.State, pr.Reason))
			}
			return Proposal{}, fmt.Errorf("%w within %s (A has %d: %s; last error: %v)", ErrNoProposal, timeout, len(last), strings.Join(have, "; "), lastErr)
		}
		select {
		case <-ctx.Done():
			return Proposal{}, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// HasOutPoint reports whether a trigger key ends with the outpoint (funding_seen:<txid>:<vout>,
// funding_confirmed:<txid>:<vout>).
func HasOutPoint(trigger string, op wire.OutPoint) bool {
	return strings.HasSuffix(trigger, ":"+op.String())
}

// ForTrigger is a WaitProposal condition: the proposal fired by the funding of op (its trigger
// key names the outpoint) is in one of states (any state if none given).
func ForTrigger(op wire.OutPoint, states ...string) func(Proposal) bool {
	return func(pr Proposal) bool {
		if !HasOutPoint(pr.Trigger, op) {
			return false
		}
		if len(states) == 0 {
			return true
		}
		for _, s := range states {
			if pr.State == s {
				return true
			}
		}
		return false
	}
}

// Deposit pays amount to the wallet's next receive address (index 0, 1, … within the daemons'
// lookahead) at feerate sat/vB (0: devnet's 5) and returns the new output. It is unconfirmed
// until the next Mine. When B is running (and PairOptions.LagB is not set), Deposit returns
// once B's wallet view has the output (in the mempool): A signs and asks B within tens of milliseconds of the block that confirms
// it, and a B whose watcher has not seen the output yet answers unsafe_psbt: input_unspent …
// not yet seen (A then asks again under a new request id); waiting keeps each case's timeline
// the same from run to run.
func (p *Pair) Deposit(ctx context.Context, amount btcutil.Amount, feerate int64) (wire.OutPoint, error) {
	p.mu.Lock()
	index := p.nextIndex
	p.nextIndex++
	p.mu.Unlock()
	pk, err := p.Descriptor.PkScript(0, index)
	if err != nil {
		return wire.OutPoint{}, err
	}
	tx, err := p.Net.FundOutputs(ctx, []*wire.TxOut{wire.NewTxOut(int64(amount), pk)}, devnet.FundOptions{FeeRate: feerate})
	if err != nil {
		return wire.OutPoint{}, err
	}
	op := wire.OutPoint{Hash: tx.TxHash(), Index: ^uint32(0)}
	for i, out := range tx.TxOut {
		if string(out.PkScript) == string(pk) {
			op.Index = uint32(i)
		}
	}
	if op.Index == ^uint32(0) {
		return wire.OutPoint{}, fmt.Errorf("scenario: deposit %s has no output to the wallet", tx.TxHash())
	}
	if p.lagB == nil && p.B.DaemonRunning() {
		if _, err := p.B.WaitStatus(ctx, time.Minute, func(st chainwatch.Status) bool {
			for _, u := range st.UTXOs {
				if u.OutPoint == op {
					return true
				}
			}
			return false
		}); err != nil {
			return op, fmt.Errorf("scenario: B did not see the deposit %s: %w", op, err)
		}
	}
	return op, nil
}

// WalletBalance is the multisig wallet's balance as BDK sees it through ElectrumX.
func (p *Pair) WalletBalance(ctx context.Context) (Balance, error) {
	var b Balance
	err := bdkJSON(ctx, p.Root, &b, "balance", "--descriptor", p.BDKDescriptor, "--electrum", p.Net.ElectrumURL(), "--network", "regtest")
	return b, err
}

// VaultBalance is the cold vault's balance as BDK sees it through ElectrumX.
func (p *Pair) VaultBalance(ctx context.Context) (Balance, error) {
	var b Balance
	err := bdkJSON(ctx, p.Root, &b, "balance", "--descriptor", p.VaultBDK, "--electrum", p.Net.ElectrumURL(), "--network", "regtest")
	return b, err
}

// DM is one NIP-17 direct message as the operator's client (nostr-tools) unwrapped it.
type DM struct {
	From    string // the rumor's author (hex pubkey)
	Content string
}

// OperatorInbox reads the NIP-17 direct messages (kind 1059 gift wraps) p-tagged to the
// operator key sk on the network's relays with e2e/clients/nip17_read.mjs (nostr-tools' nip17),
// for wait, and returns those that unwrapped. Relays keep gift wraps, so messages sent before
// the call are read too.
func (p *Pair) OperatorInbox(ctx context.Context, sk string, wait time.Duration) ([]DM, error) {
	secs := strconv.Itoa(max(1, int(wait/time.Second)))
	cmd := command(ctx, p.Root, "node", filepath.Join(p.Root, "e2e", "clients", "nip17_read.mjs"), "--sk", sk,
		"--relays", strings.Join(p.Net.RelayURLs(), ","), "--count", "1000", "--timeout", secs)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) { // 1: the timeout, expected
		return nil, fmt.Errorf("nip17_read.mjs: %v: %s", err, lastLines(stderr.String(), 8))
	}
	var out []DM
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if line == "" {
			continue
		}
		var m struct {
			Rumor *struct {
				PubKey  string `json:"pubkey"`
				Content string `json:"content"`
			} `json:"rumor"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			return out, fmt.Errorf("nip17_read.mjs printed %q: %w", line, err)
		}
		if m.Rumor != nil {
			out = append(out, DM{From: m.Rumor.PubKey, Content: m.Rumor.Content})
		}
	}
	return out, nil
}

// LogOnFailure logs, when t has failed, the last n lines of both instances' logs above debug
// level, and their race reports.
func (p *Pair) LogOnFailure(t TestLog, n int) {
	t.Helper()
	if !t.Failed() {
		return
	}
	for _, d := range []*Daemon{p.A, p.B} {
		if d == nil {
			continue
		}
		t.Logf("cosigner %s log (tail, no debug lines):\n%s", d.Name, d.InfoTail(n))
		if r := d.RaceReports(); r != "" {
			t.Logf("race reports in cosigner %s:\n%s", d.Name, r)
		}
	}
}

// Close stops both daemons and the network (unless it was PairOptions.Net).
func (p *Pair) Close() {
	for _, d := range []*Daemon{p.A, p.B} {
		if d == nil {
			continue
		}
		if err := d.StopDaemon(); err != nil {
			p.log.Warn("cosigner stop", "cosigner", d.Name, "error", err)
		}
	}
	if p.lagB != nil {
		p.lagB.Close()
	}
	if p.Net != nil && p.ownNet {
		p.Net.Close()
	}
}
