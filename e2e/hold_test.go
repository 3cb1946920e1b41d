package e2e

// hold_test.go — held requests end to end: the policy holds a sign_psbt request, the remote
// signer answers NIP-46 auth_url, and the real answer reaches nostr-tools' BunkerSigner later on
// the same request id: after a cooling-off delay, or once a named approver approves.

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/nbd-wtf/go-nostr"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/internal/scenario"
)

// TestHoldApprovedByApprover: a rule holds every request for one approval by alice; alice (a
// NIP-46 client with the approve permission) reads psbt_status and approves; the held request
// is then signed and answered.
func TestHoldApprovedByApprover(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	env, err := scenario.Setup(ctx, scenario.Options{Dir: t.TempDir(), MaxPerTx: "1 BTC", Race: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		t.Logf("cosigner log (tail):\n%s", env.LogTail(40))
		env.Close()
	}()
	aliceSK := nostr.GeneratePrivateKey()
	alicePK, _ := nostr.GetPublicKey(aliceSK)
	npub, _ := nip19.EncodePublicKey(env.ClientPK)
	doc := "version: 1\nclients:\n  - {name: coordinator, pubkey: " + npub + "}\napprovers:\n  - {name: alice, pubkey: " + alicePK + "}\nlimits:\n  max_per_tx: 1 BTC\nrules:\n  - {name: officer, action: hold, hold: {approvals: 1, approvers: [alice]}}\n"
	writePolicy(t, env.PolicyFile, doc)
	if _, err := env.WaitLog(ctx, time.Minute, `msg="policy loaded"`, "rules=1"); err != nil {
		t.Fatal(err)
	}
	bunker, err := env.BunkerURI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	aliceURI, err := env.Cosigner(ctx, "bunker-uri", "--perms", "approve,psbt_status")
	if err != nil {
		t.Fatal(err)
	}
	aliceURI = strings.TrimSpace(aliceURI)
	built := fundAndBuildPayment(t, ctx, env)
	done := make(chan scenario.NIP46Answer, 1)
	go func() {
		ans, err := env.NIP46(ctx, bunker, env.ClientSK, "sign_psbt", built.PSBT)
		if err != nil {
			t.Error(err)
		}
		done <- ans
	}()
	if _, err := env.WaitLog(ctx, time.Minute, `decision=held`); err != nil {
		t.Fatal(err)
	}
	st := nip46(t, ctx, env, aliceURI, aliceSK, "psbt_status", built.TxID)
	if st.Error != "" || !strings.Contains(st.Result, "held") {
		t.Fatalf("psbt_status of the held request = %+v, want its held state", st)
	}
	ap := nip46(t, ctx, env, aliceURI, aliceSK, "approve", built.TxID, "approve")
	if ap.Error != "" {
		t.Fatalf("approve = %+v", ap)
	}
	ans := <-done
	t.Logf("answer: result %d chars, error %q", len(ans.Result), ans.Error)
	if ans.Error != "" || !strings.HasPrefix(ans.Result, "cHNidP8") {
		t.Fatalf("approved request answered %+v", ans)
	}
}

// TestHoldCoolingOff: a rule holds every request for 15 s; the answer comes after the delay.
func TestHoldCoolingOff(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the local test network")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	env, err := scenario.Setup(ctx, scenario.Options{Dir: t.TempDir(), MaxPerTx: "1 BTC", Race: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		t.Logf("cosigner log (tail):\n%s", env.LogTail(40))
		env.Close()
	}()
	npub, _ := nip19.EncodePublicKey(env.ClientPK)
	doc := "version: 1\nclients:\n  - {name: coordinator, pubkey: " + npub + "}\nlimits:\n  max_per_tx: 1 BTC\nrules:\n  - {name: wait, action: hold, hold: {cooling_off: 15s}}\n"
	writePolicy(t, env.PolicyFile, doc)
	if _, err := env.WaitLog(ctx, time.Minute, `msg="policy loaded"`, "rules=1"); err != nil {
		t.Fatal(err)
	}
	bunker, err := env.BunkerURI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	built := fundAndBuildPayment(t, ctx, env)
	start := time.Now()
	ans := nip46(t, ctx, env, bunker, env.ClientSK, "sign_psbt", built.PSBT)
	t.Logf("answer after %s: result %d chars, error %q", time.Since(start), len(ans.Result), ans.Error)
	if ans.Error != "" || !strings.HasPrefix(ans.Result, "cHNidP8") {
		t.Fatalf("held request answered %+v", ans)
	}
	if _, err := env.WaitLog(ctx, 10*time.Second, `msg="held request answered"`); err != nil {
		t.Fatal(err)
	}
}

// fundAndBuildPayment funds the wallet with one confirmed coin of 1 BTC and has BDK build (and
// sign with key B) a payment of 0.1 BTC at 5 sat/vB to an external address.
func fundAndBuildPayment(t *testing.T, ctx context.Context, env *scenario.Env) scenario.Built {
	t.Helper()
	if _, err := env.FundConfirmed(ctx, btcutil.Amount(btcutil.SatoshiPerBitcoin)); err != nil {
		t.Fatal(err)
	}
	payee, err := env.ExternalAddress()
	if err != nil {
		t.Fatal(err)
	}
	built, err := env.BuildPayment(ctx, payee, 10_000_000, 5)
	if err != nil {
		t.Fatal(err)
	}
	return built
}

// writePolicy replaces the policy file atomically (as an editor's save-by-rename would).
func writePolicy(t *testing.T, path, doc string) {
	t.Helper()
	if err := os.WriteFile(path+".tmp", []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}
