package cosign_test

// The Coordinator against a real co-signer: a `cosigner run` daemon (key A of the scenario's
// 2-of-3, with BDK holding key B) on the local test network, reached over the devnet's three
// relays. It signs, denies (policy_denied), holds (auth_url, answered once an approver approves
// while two of the three relays are down), answers a restarted Ask (new Coordinator, same client key
// and spent bunker URI, same request id) from its store without a second evaluation; the
// signatures are combined with BDK's, finalized, and btcd accepts the transaction.

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	btcpsbt "github.com/btcsuite/btcd/btcutil/psbt"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/nip46"
	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/signer"
	"github.com/custodyagents/cosigner/signer/cosign"
)

func TestCoordinatorAgainstDaemon(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	env, err := scenario.Setup(ctx, scenario.Options{Dir: t.TempDir(), MaxPerTx: "1 BTC"})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	defer env.LogOnFailure(t, 60)

	npub, _ := nip19.EncodePublicKey(env.ClientPK)
	aliceSK := nostr.GeneratePrivateKey()
	alicePK, _ := nostr.GetPublicKey(aliceSK)
	doc := "version: 1\nclients:\n  - {name: coordinator, pubkey: " + npub + ", methods: [sign_psbt]}\n" +
		"approvers:\n  - {name: alice, pubkey: " + alicePK + "}\n" +
		"limits:\n  max_per_tx: 0.5 BTC\n" +
		"rules:\n  - {name: medium, match: {min_outflow: 0.25 BTC}, action: hold, hold: {approvals: 1, approvers: [alice]}}\n" +
		"  - {name: rest, action: allow}\n"
	if err := os.WriteFile(env.PolicyFile+".tmp", []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(env.PolicyFile+".tmp", env.PolicyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := env.WaitLog(ctx, time.Minute, `msg="policy loaded"`, "rules=2"); err != nil {
		t.Fatal(err)
	}
	bunker, err := env.BunkerURI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	aliceURI, err := env.Cosigner(ctx, "bunker-uri", "--perms", "approve")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.FundConfirmed(ctx, btcutil.SatoshiPerBitcoin); err != nil {
		t.Fatal(err)
	}
	payee, err := env.ExternalAddress()
	if err != nil {
		t.Fatal(err)
	}
	build := func(amount btcutil.Amount) *btcpsbt.Packet {
		t.Helper()
		b, err := env.BuildPayment(ctx, payee, amount, 5)
		if err != nil {
			t.Fatal(err)
		}
		p, _, err := psbt.Decode(b.PSBT)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	newCoordinator := func() *cosign.Coordinator {
		return cosign.NewCoordinator(env.ClientSK, cosign.CoordinatorOptions{Timeout: 5 * time.Second, Descriptor: env.Descriptor})
	}
	co := newCoordinator()
	defer co.Close()

	// Signed: key A's signature joins BDK's key B.
	small := build(10_000_000)
	if n, err := psbt.Signatures(env.Descriptor, small); err != nil || n != 1 {
		t.Fatalf("BDK's PSBT: %d signatures, %v (want key B's)", n, err)
	}
	signed, err := co.Ask(ctx, bunker, "cosign-small", small, nil)
	if err != nil {
		t.Fatal(err)
	}
	comb, err := psbt.Combine(small, signed)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := psbt.Signatures(env.Descriptor, comb); err != nil || n != 2 {
		t.Fatalf("combined: %d signatures, %v", n, err)
	}

	// Denied by the co-signer's policy (over its max_per_tx).
	large := build(60_000_000)
	_, err = co.Ask(ctx, bunker, "cosign-large", large, nil)
	var re *nip46.RemoteError
	if !errors.As(err, &re) || re.Code() != "policy_denied" || !strings.Contains(re.Text, "max_per_tx") {
		t.Fatalf("Ask(0.6 BTC) = %v, want policy_denied: max_per_tx", err)
	}

	// Held for alice's approval: auth_url. A second coordinator (same client key, same id) is
	// told the same (still held, not decided again). Relays 0 and 1 go down; alice approves; the
	// late answer reaches both through relay 2.
	medium := build(30_000_000)
	type answer struct {
		p   *btcpsbt.Packet
		err error
	}
	askHeld := func(co *cosign.Coordinator) (<-chan string, <-chan answer) {
		urls, res := make(chan string, 4), make(chan answer, 1)
		go func() {
			p, err := co.Ask(ctx, bunker, "cosign-medium", medium, func(u string) { urls <- u })
			res <- answer{p, err}
		}()
		return urls, res
	}
	urls1, res1 := askHeld(co)
	url := <-urls1
	if !strings.Contains(url, "/requests/") {
		t.Fatalf("auth_url %q", url)
	}
	co3 := newCoordinator()
	defer co3.Close()
	urls3, res3 := askHeld(co3)
	if u := <-urls3; u != url {
		t.Fatalf("the repeated held request got auth_url %q, want the same %q", u, url)
	}
	for _, i := range []int{0, 1} {
		if err := env.Net.StopRelay(i); err != nil {
			t.Fatal(err)
		}
	}
	alice, err := signer.DialBunker(ctx, aliceSK, strings.TrimSpace(aliceURI), signer.ClientOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if _, err := alice.Call(ctx, "approve", medium.UnsignedTx.TxHash().String(), "approve"); err != nil {
		t.Fatalf("approve: %v", err)
	}
	a1, a3 := <-res1, <-res3
	if a1.err != nil || a3.err != nil {
		t.Fatalf("held request answered late: %v / %v", a1.err, a3.err)
	}
	if !bytes.Equal(serialize(t, a1.p), serialize(t, a3.p)) {
		t.Fatal("the two coordinators got different answers to the same request")
	}
	for _, i := range []int{0, 1} {
		if err := env.Net.StartRelay(i); err != nil {
			t.Fatal(err)
		}
	}

	// A restarted coordinator (same client key, the spent bunker URI) asks again under the same
	// id: the same answer, from the store, without a second decision.
	co.Close()
	co2 := newCoordinator()
	defer co2.Close()
	again, err := co2.Ask(ctx, bunker, "cosign-small", small, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(serialize(t, again), serialize(t, signed)) {
		t.Fatal("the repeated request was answered with another PSBT")
	}
	// Asked again with the PSBT its answer was combined into: still the same request.
	if again, err = co2.Ask(ctx, bunker, "cosign-small", comb, nil); err != nil {
		t.Fatalf("re-ask with the combined PSBT: %v", err)
	}
	if !bytes.Equal(serialize(t, again), serialize(t, signed)) {
		t.Fatal("the request re-asked with the combined PSBT was answered with another PSBT")
	}
	if _, err := co2.Ask(ctx, bunker, "cosign-large", large, nil); !errors.As(err, &re) || re.Code() != "policy_denied" {
		t.Fatalf("repeated denied request = %v", err)
	}
	if _, err := co2.Ask(ctx, bunker, "cosign-medium", medium, nil); err != nil {
		t.Fatalf("repeated held-then-signed request = %v", err)
	}
	audit, err := env.Audit(ctx, 200)
	if err != nil {
		t.Fatal(err)
	}
	decisions := map[string][]string{}
	for _, a := range audit {
		if a.Method == "sign_psbt" {
			decisions[a.RequestID] = append(decisions[a.RequestID], a.Decision)
		}
	}
	for id, want := range map[string]string{"cosign-small": "signed", "cosign-large": "denied", "cosign-medium": "signed held"} {
		if d := strings.Join(decisions[id], " "); d != want {
			t.Fatalf("audit of the repeated request %s: %q, want %q (newest first)", id, d, want)
		}
	}
	t.Logf("audit decisions by request id: %v", decisions)

	// Finalize with BDK's key B and key A, and broadcast: btcd accepts it.
	tx, err := psbt.Finalize(env.Descriptor, comb)
	if err != nil {
		t.Fatal(err)
	}
	txid, err := env.Net.RPC().SendRawTransaction(tx, false)
	if err != nil {
		t.Fatalf("btcd refused the finalized transaction: %v", err)
	}
	if *txid != tx.TxHash() {
		t.Fatalf("btcd answered txid %s, want %s", txid, tx.TxHash())
	}
	if _, err := env.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	raw, err := env.Net.RPC().GetRawTransactionVerbose(txid)
	if err != nil || raw.Confirmations < 1 {
		t.Fatalf("the broadcast transaction is not confirmed: %+v, %v", raw, err)
	}
}

func serialize(t *testing.T, p *btcpsbt.Packet) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := p.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
