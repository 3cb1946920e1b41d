package e2e

// electrum_nostr_test.go — Electrum's "Send to cosigner" (psbt_nostr plugin) end to end, with
// Electrum's own Nostr library (PyPI electrum-aionostr 0.1.0, e2e/clients/electrum_nostr.py)
// as the peer over the devnet relays: the 2-of-3 wallet is registered as a descriptor in
// cosigner (key A) and as SLIP-132 keystore strings on the Electrum side (key B sends and
// receives, key C is the third keystore).

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/internal/devnet"
	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/psbt"
)

// electrumPeer runs e2e/clients/electrum_nostr.py.
type electrumPeer struct {
	t      *testing.T
	py     string
	script string
	relays string
}

func newElectrumPeer(t *testing.T, env *scenario.Env) *electrumPeer {
	tools, err := devnet.ToolsDir()
	if err != nil {
		t.Fatal(err)
	}
	return &electrumPeer{t: t, py: filepath.Join(tools, "venv", "bin", "python"), script: filepath.Join(env.Root, "e2e", "clients", "electrum_nostr.py"),
		relays: strings.Join(env.Net.RelayURLs(), ",")}
}

func (p *electrumPeer) run(ctx context.Context, out any, args ...string) {
	p.t.Helper()
	cmd := exec.CommandContext(ctx, p.py, append([]string{p.script}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		p.t.Fatalf("electrum_nostr.py %s: %v\n%s", args[0], err, stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		p.t.Fatalf("electrum_nostr.py %s: %q: %v", args[0], stdout.String(), err)
	}
}

type peerKey struct {
	VPub   string `json:"vpub"`
	PubKey string `json:"pubkey"`
}

// keystore is the Electrum keystore string of a BDK key expression "[fp/path]tpub…" or a tpub,
// and its channel pubkey, both computed by the Python peer.
func (p *electrumPeer) keystore(ctx context.Context, key string) peerKey {
	if i := strings.Index(key, "]"); i >= 0 {
		key = key[i+1:]
	}
	var k peerKey
	p.run(ctx, &k, "vpub", "--xpub", key)
	return k
}

type received struct {
	ID, From, TX, Label string
	Tags                []string
	Kind                int
	Listening           string
	Done                *int
}

// receive starts the peer listening as own (the plugin's subscription and filter); each kept
// message arrives on the returned channel, closed when the peer exits.
func (p *electrumPeer) receive(ctx context.Context, own string, cosigners []string) <-chan received {
	args := []string{p.script, "receive", "--relays", p.relays, "--own-xpub", own, "--count", "10", "--timeout", "900"}
	for _, c := range cosigners {
		args = append(args, "--cosigner-xpub", c)
	}
	cmd := exec.CommandContext(ctx, p.py, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	out := make(chan received, 16)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var r received
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				out <- r
			}
		}
		_ = cmd.Wait()
	}()
	p.t.Cleanup(func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	return out
}

// send publishes one message as the plugin does, from the keystore string from (or, for a
// forged sender, from the secret key fromSK).
func (p *electrumPeer) send(ctx context.Context, from, fromSK, to, psbtHex, label string, extra ...string) string {
	args := []string{"send", "--relays", p.relays, "--to-xpub", to, "--psbt", psbtHex, "--label", label}
	if fromSK != "" {
		args = append(args, "--from-sk", fromSK)
	} else {
		args = append(args, "--from-xpub", from)
	}
	var r struct{ ID string }
	p.run(ctx, &r, append(args, extra...)...)
	return r.ID
}

func next(t *testing.T, ctx context.Context, ch <-chan received) received {
	t.Helper()
	select {
	case r, ok := <-ch:
		if !ok {
			t.Fatal("the Electrum peer stopped listening")
		}
		return r
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	return received{}
}

func toHex(t *testing.T, text string) string {
	t.Helper()
	p, _, err := psbt.Decode(text)
	if err != nil {
		t.Fatal(err)
	}
	h, err := psbt.Encode(p, psbt.Hex)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func toBase64(t *testing.T, text string) string {
	t.Helper()
	p, _, err := psbt.Decode(text)
	if err != nil {
		t.Fatal(err)
	}
	b, err := psbt.Encode(p, psbt.Base64)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestElectrumSendToCosigner: a PSBT within the channel's cap is signed and sent back (kind 4,
// p + expiration, {"tx": PSBT hex, "label"}), finalized by BDK and mined; one over the cap is
// refused (no answer); one in the hold band is answered once alice approves it over NIP-46 and
// is mined too; a forged sender, a stale (future) event and an oversized one change nothing —
// the peer receives exactly the two answers, in order.
func TestElectrumSendToCosigner(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	env, err := scenario.Setup(ctx, scenario.Options{Dir: t.TempDir(), MaxPerTx: "1 BTC", Race: true,
		ExtraEnv: []string{"COSIGNER_LOG_LEVEL=debug"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		t.Logf("cosigner log (tail):\n%s", env.InfoTail(60))
		env.Close()
	}()
	peer := newElectrumPeer(t, env)
	a := peer.keystore(ctx, env.KeyA.AccountXPub)
	b := peer.keystore(ctx, env.KeyB.XpubKey)
	c := peer.keystore(ctx, env.KeyC.XpubKey)

	// cosigner shows the same keystore string for its key as the Electrum side computed.
	exp, err := env.Cosigner(ctx, "export", "--format", "electrum-keystore")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(exp, "\n"+a.VPub+"\n") || !strings.Contains(exp, a.PubKey) || !strings.Contains(exp, b.PubKey) {
		t.Fatalf("cosigner export --format electrum-keystore does not show keystore %s / pubkey %s:\n%s", a.VPub, a.PubKey, exp)
	}

	aliceSK := nostr.GeneratePrivateKey()
	alicePK, _ := nostr.GetPublicKey(aliceSK)
	npub, _ := nip19.EncodePublicKey(env.ClientPK)
	doc := `version: 1
clients:
  - {name: coordinator, pubkey: ` + npub + `}
  - {name: electrum, channel: electrum_nostr, rate_limit: 20/1h}
approvers:
  - {name: alice, pubkey: ` + alicePK + `}
limits:
  max_per_tx: 1 BTC
rules:
  - {name: electrum_small, match: {clients: [electrum], max_outflow: 0.15 BTC}, action: allow}
  - {name: electrum_hold, match: {clients: [electrum], max_outflow: 0.3 BTC}, action: hold, hold: {approvals: 1, approvers: [alice]}}
  - {name: electrum_rest, match: {clients: [electrum]}, action: deny, reason: "Electrum's channel is unauthenticated"}
  - {name: coordinator, action: allow}
`
	writePolicy(t, env.PolicyFile, doc)
	if _, err := env.WaitLog(ctx, 2*time.Minute, `listening for Electrum's Send to cosigner`, "pubkey="+a.PubKey); err != nil {
		t.Fatal(err)
	}
	answers := peer.receive(ctx, b.VPub, []string{a.VPub, c.VPub})
	if r := next(t, ctx, answers); r.Listening == "" {
		t.Fatalf("peer: %+v", r)
	}

	if _, err := env.FundConfirmed(ctx, btcutil.Amount(btcutil.SatoshiPerBitcoin)); err != nil {
		t.Fatal(err)
	}
	payee, err := env.ExternalAddress()
	if err != nil {
		t.Fatal(err)
	}

	// Hostile events first: each is dropped with its reason, nothing is answered.
	small, err := env.BuildPayment(ctx, payee, 10_000_000, 5)
	if err != nil {
		t.Fatal(err)
	}
	smallHex := toHex(t, small.PSBT)
	peer.send(ctx, "", nostr.GeneratePrivateKey(), a.VPub, smallHex, "forged")
	peer.send(ctx, b.VPub, "", a.VPub, smallHex, "future", "--created-at-offset", "90000")
	peer.send(ctx, b.VPub, "", a.VPub, smallHex, "big", "--pad-label", "50000")
	for _, reason := range []string{"not_cosigner", "stale", "oversized"} {
		if _, err := env.WaitLog(ctx, time.Minute, `msg="event dropped"`, "reason="+reason); err != nil {
			t.Fatal(err)
		}
	}

	resp, err := http.Get("http://" + env.HealthAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`cosigner_electrum_nostr_dropped_total{reason="not_cosigner"} 1`, `cosigner_electrum_nostr_dropped_total{reason="stale"} 1`,
		`cosigner_electrum_nostr_dropped_total{reason="oversized"} 1`, `cosigner_electrum_nostr_requests_total 0`} {
		if !strings.Contains(string(metrics), m) {
			t.Fatalf("/metrics lacks %s", m)
		}
	}

	// Within the channel's cap: signed, answered, finalized by BDK and mined.
	id := peer.send(ctx, b.VPub, "", a.VPub, smallHex, "rent")
	r := next(t, ctx, answers)
	if r.From != a.PubKey || r.Kind != 4 || strings.Join(r.Tags, ",") != "p,expiration" || r.Label != "rent" || !strings.HasPrefix(r.TX, "70736274ff") {
		t.Fatalf("answer to %s: %+v", id, r)
	}
	fin, err := env.Finalize(ctx, toBase64(t, r.TX))
	if err != nil {
		t.Fatal(err)
	}
	if fin.TxID != small.TxID {
		t.Fatalf("finalized %s, sent %s", fin.TxID, small.TxID)
	}
	if _, err := env.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// The next PSBTs spend the change: wait until cosigner's wallet view has the block.
	if _, err := env.WaitStatus(ctx, time.Minute, func(s chainwatch.Status) bool {
		return s.Unconfirmed == 0 && s.Confirmed > 0 && s.Confirmed < btcutil.SatoshiPerBitcoin-10_000_000
	}); err != nil {
		t.Fatal(err)
	}

	// Over the cap: refused; nothing is answered (the next answer is the held one's).
	big, err := env.BuildPayment(ctx, payee, 50_000_000, 5)
	if err != nil {
		t.Fatal(err)
	}
	peer.send(ctx, b.VPub, "", a.VPub, toHex(t, big.PSBT), "too much")
	if _, err := env.WaitLog(ctx, time.Minute, `Electrum request refused`, "electrum_rest"); err != nil {
		t.Fatal(err)
	}

	// In the hold band: held, approved by alice over NIP-46, then answered and mined.
	mid, err := env.BuildPayment(ctx, payee, 20_000_000, 5)
	if err != nil {
		t.Fatal(err)
	}
	peer.send(ctx, b.VPub, "", a.VPub, toHex(t, mid.PSBT), "car")
	if _, err := env.WaitLog(ctx, time.Minute, `Electrum request held`); err != nil {
		t.Fatal(err)
	}
	aliceURI, err := env.Cosigner(ctx, "bunker-uri", "--perms", "approve,psbt_status")
	if err != nil {
		t.Fatal(err)
	}
	if ap := nip46(t, ctx, env, strings.TrimSpace(aliceURI), aliceSK, "approve", mid.TxID, "approve"); ap.Error != "" {
		t.Fatalf("approve = %+v", ap)
	}
	r = next(t, ctx, answers)
	if r.Label != "car" || r.From != a.PubKey {
		t.Fatalf("held answer: %+v (an earlier request was answered?)", r)
	}
	fin, err = env.Finalize(ctx, toBase64(t, r.TX))
	if err != nil {
		t.Fatal(err)
	}
	if fin.TxID != mid.TxID {
		t.Fatalf("finalized %s, sent %s", fin.TxID, mid.TxID)
	}
	if _, err := env.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	bal, err := env.BDKBalance(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bal.Unconfirmed != 0 || bal.Confirmed <= 0 || bal.Confirmed >= btcutil.SatoshiPerBitcoin-30_000_000 {
		t.Fatalf("after both payments mined, BDK's balance is %+v", bal)
	}
}
