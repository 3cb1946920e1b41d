package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/txscript"
	"github.com/nbd-wtf/go-nostr/nip19"

	"github.com/custodyagents/cosigner/internal/scenario"
	"github.com/custodyagents/cosigner/policy"
)

// TestPolicyReloadAndLedger runs the policy in the real daemon: the file is edited while
// cosigner runs (hot reload: tightening at once, a bad file refused with line:col and the
// running policy kept, a loosening held back by loosen_delay), and the spend ledger counts an
// RBF fee bump of a signed payment once. Payments are built and signed by BDK and sent with
// nostr-tools over the relays.
func TestPolicyReloadAndLedger(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	env, stop := startDaemon(ctx, t, scenario.Options{Race: true})
	defer stop()
	bunker, err := env.BunkerURI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fund := btcutil.Amount(btcutil.SatoshiPerBitcoin)
	if _, err := env.FundConfirmed(ctx, fund); err != nil {
		t.Fatal(err)
	}
	npub, _ := nip19.EncodePublicKey(env.ClientPK)
	write := func(t *testing.T, body string) string {
		t.Helper()
		doc := "version: 1\nclients:\n  - {name: coordinator, pubkey: " + npub + ", methods: [sign_psbt]}\n" + body
		writePolicy(t, env.PolicyFile, doc) // as editors save
		return policy.HashBytes([]byte(doc))
	}
	payee, _ := env.ExternalAddress()
	// Every payment below spends the wallet's one coin: each is a replacement of the others.
	sign := func(t *testing.T, amount btcutil.Amount, feerate int) scenario.NIP46Answer {
		t.Helper()
		built, err := env.BuildPayment(ctx, payee, amount, feerate)
		if err != nil {
			t.Fatal(err)
		}
		return nip46(t, ctx, env, bunker, env.ClientSK, "sign_psbt", built.PSBT)
	}

	t.Run("sighash opt-in", func(t *testing.T) {
		// BDK's PSBT with every input asking for SIGHASH_ALL|ANYONECANPAY (BIP-174
		// PSBT_IN_SIGHASH_TYPE): refused unless the running policy opts in, then signed with it.
		askACP := func(t *testing.T) string {
			built, err := env.BuildPayment(ctx, payee, 1_000_000, 5)
			if err != nil {
				t.Fatal(err)
			}
			p := decodePSBT(t, built.PSBT)
			for i := range p.Inputs {
				p.Inputs[i].SighashType = txscript.SigHashAll | txscript.SigHashAnyOneCanPay
			}
			var buf bytes.Buffer
			if err := p.Serialize(&buf); err != nil {
				t.Fatal(err)
			}
			return base64.StdEncoding.EncodeToString(buf.Bytes())
		}
		hash := write(t, "limits:\n  max_per_tx: 1 BTC\n")
		if _, err := env.WaitLog(ctx, time.Minute, `msg="policy loaded"`, "hash="+hash); err != nil {
			t.Fatal(err)
		}
		if ans := nip46(t, ctx, env, bunker, env.ClientSK, "sign_psbt", askACP(t)); !strings.HasPrefix(ans.Error, "unsafe_psbt: sighash: ") {
			t.Fatalf("ALL|ANYONECANPAY without opting in answered %+v", ans)
		}
		hash = write(t, "limits:\n  max_per_tx: 1 BTC\n  allow_sighash: [ALL, ALL|ANYONECANPAY]\n")
		if _, err := env.WaitLog(ctx, time.Minute, `msg="policy loaded"`, "hash="+hash); err != nil {
			t.Fatal(err)
		}
		ans := nip46(t, ctx, env, bunker, env.ClientSK, "sign_psbt", askACP(t))
		if ans.Error != "" {
			t.Fatalf("ALL|ANYONECANPAY opted in: %s", ans.Error)
		}
		signed := 0
		for i, in := range decodePSBT(t, ans.Result).Inputs {
			for _, ps := range in.PartialSigs {
				if h := txscript.SigHashType(ps.Signature[len(ps.Signature)-1]); h == txscript.SigHashAll|txscript.SigHashAnyOneCanPay {
					signed++
				} else if h != txscript.SigHashAll {
					t.Fatalf("input %d: a signature with sighash %#x", i, h)
				}
			}
		}
		if signed == 0 {
			t.Fatal("no ALL|ANYONECANPAY signature was added")
		}
	})

	t.Run("tighten applies at once", func(t *testing.T) {
		hash := write(t, "limits:\n  max_per_tx: 0.2 BTC\n")
		if _, err := env.WaitLog(ctx, time.Minute, `msg="policy loaded"`, "hash="+hash); err != nil {
			t.Fatal(err)
		}
		if ans := sign(t, 30_000_000, 5); !strings.HasPrefix(ans.Error, "policy_denied: max_per_tx: ") {
			t.Fatalf("0.3 BTC under a 0.2 BTC cap answered %+v", ans)
		}
	})

	t.Run("a bad file is refused and the running policy kept", func(t *testing.T) {
		write(t, "limits:\n  max_per_tx: 5 BTC\n  max_fees: 1 sat\n")
		if _, err := env.WaitLog(ctx, time.Minute, `msg="policy file refused; the running policy is kept"`, `:6:3: unknown key \"max_fees\"`); err != nil {
			t.Fatal(err)
		}
		if ans := sign(t, 30_000_000, 5); !strings.HasPrefix(ans.Error, "policy_denied: max_per_tx: ") {
			t.Fatalf("after a refused file, 0.3 BTC answered %+v", ans)
		}
	})

	t.Run("an RBF fee bump is counted once", func(t *testing.T) {
		// Loosening from the running policy (loosen_delay 0): applies at once. A 0.35 BTC day.
		hash := write(t, "loosen_delay: 7d\nlimits:\n  max_per_tx: 1 BTC\n  velocity: [{window: 24h, max: 0.35 BTC}]\n")
		if _, err := env.WaitLog(ctx, time.Minute, `msg="policy loaded"`, "hash="+hash); err != nil {
			t.Fatal(err)
		}
		if ans := sign(t, 30_000_000, 5); ans.Error != "" {
			t.Fatalf("0.3 BTC within the day's 0.35 BTC refused: %s", ans.Error)
		}
		// The same payment at a higher feerate spends the same coin: it replaces the first.
		if ans := sign(t, 30_000_000, 20); ans.Error != "" {
			t.Fatalf("the fee bump was counted twice: %s", ans.Error)
		}
		dec, err := env.LastDecision(ctx, "sign_psbt")
		if err != nil || dec.Decision != "signed" {
			t.Fatalf("audit %+v, %v", dec, err)
		}
		// The audit log keeps the deciding policy's hash and the rule-by-rule explanation.
		if dec.PolicyHash != hash || !strings.Contains(dec.Explanation, `"rule":"velocity_1d","result":"pass"`) {
			t.Fatalf("audit policy_hash %q (want %s), explanation %s", dec.PolicyHash, hash, dec.Explanation)
		}
	})

	t.Run("loosen later", func(t *testing.T) {
		hash := write(t, "loosen_delay: 7d\nlimits:\n  max_per_tx: 1 BTC\n  velocity: [{window: 24h, max: 5 BTC}]\n")
		if _, err := env.WaitLog(ctx, time.Minute, `msg="policy loosened`, "hash="+hash); err != nil {
			t.Fatal(err)
		}
		// Another replacement of 0.4 BTC: over the 0.35 BTC day that still applies for 7 days.
		if ans := sign(t, 40_000_000, 25); !strings.HasPrefix(ans.Error, "policy_denied: velocity_1d: ") {
			t.Fatalf("during the loosen delay, 0.4 BTC answered %+v", ans)
		}
	})
}
