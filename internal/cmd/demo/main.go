// Command demo runs the whole product once, for real, on a local regtest network, and tells a
// multisig user what happens (`make demo`). It exits non-zero if any step fails.
//
// A 2-of-3 wallet: key A lives in `cosigner run`, key B in a BDK wallet (bdkpython), key C is an
// xpub only. The wallet is funded; BDK builds a payment and signs it, a Nostr client
// (nostr-tools' BunkerSigner) sends it to the cosigner as a NIP-46 sign_psbt request over three
// relays, the cosigner checks it against the chain and its policy and signs, BDK finalizes and
// broadcasts through ElectrumX, a block is mined and the cosigner reports the spend. A second
// payment over the policy's cap is refused with the rule that decided.
//
// Then the other direction: two cosigner daemons, A and B, hold two keys of a second 2-of-3
// wallet (C offline). A's policy has an automation that sweeps every confirmed deposit to a cold
// vault; a deposit arrives, A builds the PSBT, signs its share, asks B over Nostr, B signs under
// its own policy, A finalizes and broadcasts, and the sweep confirms. The demo prints the
// proposal's timeline.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/btcsuite/btcd/btcutil"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/internal/scenario"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "\nDEMO FAILED: %v\n", err)
		stop()
		os.Exit(1)
	}
}

var began = time.Now()

func step(format string, args ...any) {
	fmt.Printf("\n[%5.1fs] ", time.Since(began).Seconds())
	fmt.Printf(format+"\n", args...)
}

func say(format string, args ...any) { fmt.Printf("         "+format+"\n", args...) }

func run(ctx context.Context) error {
	dir, err := filepath.Abs(".demo")
	if err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(mustMkdir(dir), "harness.log"))
	if err != nil {
		return err
	}
	defer logf.Close()

	fmt.Println("cosigner demo: a 2-of-3 multisig wallet co-signed over Nostr, on a local regtest network")
	fmt.Printf("(everything runs on 127.0.0.1; logs and data in %s)\n", dir)

	step("Starting btcd (regtest), ElectrumX, three Nostr relays, and cosigner with a fresh key…")
	const capText = "1 BTC"
	env, err := scenario.Setup(ctx, scenario.Options{Dir: dir, MaxPerTx: capText, Logger: slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		return err
	}
	defer env.Close()
	say("Electrum server  %s", env.Net.ElectrumURL())
	say("Nostr relays     %s", strings.Join(env.Net.RelayURLs(), "  "))

	step("The wallet: 2-of-3 P2WSH multisig (any two of three keys can spend)")
	say("key A  cosigner (made by `cosigner init`, encrypted at rest)  %s", env.KeyA.KeyOrigin())
	say("key B  BDK coordinator wallet                               %s", env.KeyB.XpubKey)
	say("key C  offline backup, xpub only                            %s", env.KeyC.XpubKey)
	say("descriptor registered in the cosigner:")
	say("  %s", env.Descriptor.String())
	say("cosigner's Nostr identity (remote signer): %s", env.KeyA.NPub())
	say("policy: only the coordinator's Nostr key may ask for signatures; at most %s leaves the wallet per transaction (fee included)", capText)

	step("Funding the wallet")
	fund := btcutil.Amount(2 * btcutil.SatoshiPerBitcoin)
	txid, addr, err := env.Fund(ctx, 0, fund)
	if err != nil {
		return err
	}
	say("%s sent to the wallet's first receive address %s (txid %s)", fund, addr, txid)
	if _, err := env.Net.Mine(ctx, 1); err != nil {
		return err
	}
	st, err := env.WaitStatus(ctx, 30*time.Second, func(s chainwatch.Status) bool { return s.Confirmed == fund })
	if err != nil {
		return err
	}
	say("one block mined; the cosigner's watcher (via ElectrumX) sees %s confirmed in %d UTXO(s)", st.Confirmed, len(st.UTXOs))

	step("Connecting a Nostr app to the cosigner")
	bunker, err := env.BunkerURI(ctx)
	if err != nil {
		return err
	}
	say("`cosigner bunker-uri` printed (the secret is good for one connect):")
	say("  %s", bunker)

	// Payment 1: within the policy.
	payee, err := env.ExternalAddress()
	if err != nil {
		return err
	}
	amount := btcutil.Amount(40_000_000)
	step("Payment 1: %s to %s, within the policy", amount, payee)
	built, err := env.BuildPayment(ctx, payee, amount, 5)
	if err != nil {
		return err
	}
	say("BDK built the PSBT at 5 sat/vB (a rate the demo picks; a real coordinator asks its fee estimator) — fee %s —", btcutil.Amount(built.Fee))
	say("and signed it with key B: 1 of the 2 signatures the wallet needs")
	say("relay 3 goes down now, to show redundancy: the request travels over the other two")
	if err := env.Net.StopRelay(2); err != nil {
		return err
	}
	t0 := time.Now()
	ans, err := env.NIP46(ctx, bunker, env.ClientSK, "sign_psbt", built.PSBT)
	if err != nil {
		return err
	}
	if ans.Error != "" {
		return fmt.Errorf("the cosigner refused payment 1: %s", ans.Error)
	}
	dec, err := env.LastDecision(ctx, "sign_psbt")
	if err != nil {
		return err
	}
	say("nostr-tools BunkerSigner: connect, then sign_psbt → answered in %s", time.Since(t0).Round(time.Millisecond))
	say("cosigner decision: %s by rule %q: %s", dec.Decision, dec.Rule, dec.Reason)
	if dec.Rule == "within_limits" {
		say("  (within_limits: the policy has no rule list, only global limits, and the payment passed all of them;")
		say("   with rules, the first rule that matches decides instead and is named here)")
	}
	say("  (it checked every input is this wallet's and unspent with the amount the chain shows,")
	say("   recognised the change by re-deriving it, and counted %s leaving the wallet)", btcutil.Amount(dec.OutflowSat))
	fin, err := env.Finalize(ctx, ans.Result)
	if err != nil {
		return err
	}
	say("BDK finalized it (keys B and A have signed: 2 of 3, enough) and broadcast it through ElectrumX")
	say("txid %s, fee %s, %d vB", fin.TxID, btcutil.Amount(fin.Fee), fin.VSize)
	if err := env.Net.StartRelay(2); err != nil {
		return err
	}
	say("relay 3 is back up; cosigner reconnects to it by itself")
	if _, err := env.Net.Mine(ctx, 1); err != nil {
		return err
	}
	want := fund - amount - btcutil.Amount(fin.Fee)
	st, err = env.WaitStatus(ctx, 30*time.Second, func(s chainwatch.Status) bool {
		return s.Confirmed == want && s.Unconfirmed == 0
	})
	if err != nil {
		return err
	}
	line, err := env.WaitLog(ctx, 10*time.Second, `msg="coin spent"`, "outpoint="+txid+":")
	if err != nil {
		return err
	}
	say("a block is mined; the cosigner's log says:")
	say("  %s", truncate(line[strings.Index(line, "msg="):], 160))
	say("and its wallet view holds only the change now:")
	for _, u := range st.UTXOs {
		kind := "receive"
		if u.Branch == 1 {
			kind = "change"
		}
		say("  %s  %s (%s #%d)", u.OutPoint, u.Value, kind, u.Index)
	}
	say("balance now %s", st.Confirmed)
	// The spend exposure (docs/spend-exposure.md): what the policy's limits count.
	exp, err := env.Cosigner(ctx, "exposure", "list", "--all")
	if err != nil {
		return err
	}
	say("`cosigner exposure list --all` — what the policy's limits count: a signature counts from the moment")
	say("it is given (the client may never broadcast it) until its transaction confirms, then at its")
	say("confirmation time; `cosigner exposure invalidate TXID` ends one that will never be used:")
	for _, l := range strings.Split(strings.TrimRight(exp, "\n"), "\n") {
		say("  %s", truncate(l, 150))
	}

	// Payment 2: over the cap.
	big := btcutil.Amount(150_000_000)
	step("Payment 2: %s to %s, more than the policy's %s cap", big, payee, capText)
	built2, err := env.BuildPayment(ctx, payee, big, 5)
	if err != nil {
		return err
	}
	bunker2, err := env.BunkerURI(ctx)
	if err != nil {
		return err
	}
	say("a second `cosigner bunker-uri` (each secret is good for one connect; the app connects again with it):")
	say("  %s", bunker2)
	ans2, err := env.NIP46(ctx, bunker2, env.ClientSK, "sign_psbt", built2.PSBT)
	if err != nil {
		return err
	}
	if ans2.Error == "" || !strings.HasPrefix(ans2.Error, "policy_denied:") {
		return fmt.Errorf("payment 2 should have been refused by the policy, got result=%.20q error=%q", ans2.Result, ans2.Error)
	}
	say("cosigner refused: %s", ans2.Error)
	say("nothing was signed; the coins stay where they are (balance %s)", st.Confirmed)

	step("Done. What happened is in the cosigner's audit log:")
	log, err := env.Audit(ctx, 10)
	if err != nil {
		return err
	}
	for i := len(log) - 1; i >= 0; i-- {
		a := log[i]
		say("%s  %-14s %-9s rule %-14s %s", a.At.Format("15:04:05"), a.Method, a.Decision, a.Rule, truncate(a.Reason, 90))
	}
	if err := automatedSweep(ctx, env, dir, logf); err != nil {
		return fmt.Errorf("automated sweep: %w", err)
	}

	fmt.Printf("\nThe demo took %s. Logs: %s (cosigner.log, sweep/a/cosigner.log and sweep/b/cosigner.log for part 2, network/*.log)\n", time.Since(began).Round(time.Second), dir)
	fmt.Println("Next: README.md, \"Quick start\", and docs/configuration.md show how to do the same with your own wallet:")
	fmt.Println("`cosigner init` for the key, COSIGNER_DESCRIPTOR for the wallet, a policy file, `cosigner run`, and")
	fmt.Println("`cosigner bunker-uri` for each app that should be able to ask for signatures. To have it sweep")
	fmt.Println("or forward deposits itself, add an `automations:` section (docs/automations.md; example in")
	fmt.Println("examples/sweep-to-vault.yaml) and follow it with `cosigner proposals list`.")
	return nil
}

// secretParam is a bunker URI's connect secret, left out of what the demo prints.
var secretParam = regexp.MustCompile(`(secret=)[^&"\s]*`)

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func mustMkdir(d string) string {
	if err := os.MkdirAll(d, 0o755); err != nil {
		panic(err)
	}
	return d
}

// automatedSweep is the demo's second part: two cosigner daemons on the same network, A with a
// sweep automation, B co-signing over Nostr.
func automatedSweep(ctx context.Context, env *scenario.Env, dir string, logf *os.File) error {
	step("Part 2: an automated sweep, co-signed by a second cosigner over Nostr")
	say("two more cosigner daemons, daemon A and daemon B (each made by `cosigner init`), hold two keys of a")
	say("new 2-of-3 wallet (not part 1's wallet: part 1's key B was a BDK wallet); its third key stays offline.")
	say("Daemon A's policy sweeps every confirmed deposit to a cold vault and asks daemon B for the second")
	say("signature; daemon B's policy lets daemon A's Nostr key ask, only for payments to that vault.")
	p, err := scenario.SetupPair(ctx, scenario.PairOptions{Dir: filepath.Join(dir, "sweep"), Net: env.Net,
		Logger: slog.New(slog.NewTextHandler(logf, nil))})
	if err != nil {
		return err
	}
	defer p.Close()
	say("daemon A  %s  (Nostr %s)", p.A.Key.KeyOrigin(), truncate(p.A.Key.NPub(), 24))
	say("daemon B  %s  (Nostr %s)", p.B.Key.KeyOrigin(), truncate(p.B.Key.NPub(), 24))
	say("daemon A's automation (from %s):", p.A.PolicyFile)
	doc, err := os.ReadFile(p.A.PolicyFile)
	if err != nil {
		return err
	}
	if i := strings.Index(string(doc), "automations:"); i >= 0 {
		for _, line := range strings.Split(strings.TrimRight(string(doc[i:]), "\n"), "\n") {
			say("  %s", truncate(secretParam.ReplaceAllString(line, "${1}…"), 110))
		}
	}

	amount := btcutil.Amount(30_000_000)
	op, err := p.Deposit(ctx, amount, 0)
	if err != nil {
		return err
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		return err
	}
	step("A deposit of %s to the wallet is confirmed (%s)", amount, op)
	pr, err := p.WaitProposal(ctx, 2*time.Minute, scenario.ForTrigger(op, "broadcast", "confirmed", "abandoned"))
	if err != nil {
		return err
	}
	if pr.State == "abandoned" {
		return fmt.Errorf("proposal %s abandoned: %s", pr.ID, pr.Reason)
	}
	if sent := pr.Events("broadcast"); len(sent) > 0 {
		say("daemon A built, signed, asked daemon B, finalized and broadcast the sweep in %s: txid %s", sent[0].At.Sub(pr.CreatedAt).Round(time.Millisecond), pr.TxID)
		say("(the fee rate is the automation's fee strategy: the Electrum server's estimate for the target")
		say(" number of blocks (blockchain.estimatefee, which ElectrumX asks btcd), capped by max_feerate)")
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		return err
	}
	if pr, err = p.WaitProposal(ctx, time.Minute, scenario.ForTrigger(op, "confirmed")); err != nil {
		return err
	}
	say("a block is mined; `cosigner proposals show %s` on daemon A:", pr.ID)
	say("  automation %s, trigger %s", pr.Automation, pr.Trigger)
	say("  state %s, fee %s (%.1f sat/vB), txid %s", pr.State, btcutil.Amount(pr.FeeSat), pr.FeeRate, pr.TxID)
	for _, c := range pr.Cosigners {
		say("  co-signer daemon B %s…: %s (%s)", c.PubKey[:16], c.State, truncate(c.Detail, 60))
	}
	say("  timeline:")
	for _, ev := range pr.Timeline {
		say("    +%6.3fs  %-12s %s", ev.At.Sub(pr.CreatedAt).Seconds(), ev.Event, truncate(ev.Detail, 80))
	}
	vault, err := p.VaultBalance(ctx)
	if err != nil {
		return err
	}
	say("the cold vault (read by BDK through ElectrumX) now holds %s: the deposit less the fee", btcutil.Amount(vault.Confirmed))
	if vault.Confirmed != int64(amount)-pr.FeeSat {
		return fmt.Errorf("the vault holds %d sat, want %d", vault.Confirmed, int64(amount)-pr.FeeSat)
	}
	return nil
}
