package e2e

// outbound_test.go — issue 6 end to end: two cosigner instances hold keys A and B of a 2-of-3
// wsh(sortedmulti) wallet (key C stays offline). A deposit confirms; A's sweep automation builds
// the PSBT, signs its share through its own policy, asks B over NIP-46 (sign_psbt) through the
// relays; B signs under its own policy; A finalizes, broadcasts and follows the sweep to
// confirmation. Variations: B offline then back, relays killed during coordination, A killed
// with SIGKILL mid-way, a reorg that reports the same funding again, B's policy denying, and the
// fee bump. One pair serves the cases whose state allows it (subtests in order); the fee bump
// needs a network of its own.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
	"github.com/nbd-wtf/go-nostr"

	"github.com/custodyagents/cosigner/internal/scenario"
)

// progress bounds one wait for the engine (a build, a round trip to B, a broadcast).
const progress = 2 * time.Minute

// startPair starts a pair (race-built daemons) or fails the test. Defer the returned stop: it
// prints both daemons' log tails if the test failed, then stops everything.
func startPair(ctx context.Context, t *testing.T, o scenario.PairOptions) (*scenario.Pair, func()) {
	t.Helper()
	o.Dir, o.Race = t.TempDir(), true
	p, err := scenario.SetupPair(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return p, func() {
		for _, d := range []*scenario.Daemon{p.A, p.B} {
			if t.Failed() {
				t.Logf("cosigner %s log (the engine's and decisions' lines, last 60):\n%s", d.Name, grepLog(t, d, 60,
					`component=outbound`, `component=cosign`, `msg="sign_psbt decided"`, `level=ERROR`, `level=WARN msg="chain`))
			}
			if r := d.RaceReports(); r != "" {
				t.Errorf("race reports in cosigner %s:\n%s", d.Name, r)
			}
		}
		p.Close()
	}
}

// deposit pays amount to the wallet's next receive address and mines it into a block, so that
// a funding_confirmed: 1 trigger fires.
func deposit(ctx context.Context, t *testing.T, p *scenario.Pair, amount btcutil.Amount, feerate int64) wire.OutPoint {
	t.Helper()
	op, err := p.Deposit(ctx, amount, feerate)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return op
}

// waitFor waits until the proposal fired by op is in one of states.
func waitFor(ctx context.Context, t *testing.T, p *scenario.Pair, op wire.OutPoint, states ...string) scenario.Proposal {
	t.Helper()
	pr, err := p.WaitProposal(ctx, progress, scenario.ForTrigger(op, states...))
	if err != nil {
		t.Fatalf("proposal for the deposit %s in %v: %v", op, states, err)
	}
	return pr
}

// confirmSweep waits until the proposal fired by op is broadcast, checks that the node has its
// transaction in the mempool, mines a block and waits until A reports it confirmed.
func confirmSweep(ctx context.Context, t *testing.T, p *scenario.Pair, op wire.OutPoint) scenario.Proposal {
	t.Helper()
	pr := waitFor(ctx, t, p, op, "broadcast")
	h, err := chainhash.NewHashFromStr(pr.TxID)
	if err != nil {
		t.Fatalf("broadcast proposal %s has txid %q: %v", pr.ID, pr.TxID, err)
	}
	if _, err := p.Net.RPC().GetRawTransaction(h); err != nil {
		t.Fatalf("A says %s is broadcast but btcd does not know it: %v", pr.TxID, err)
	}
	if _, err := p.Net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	return waitFor(ctx, t, p, op, "confirmed")
}

// checkSwept checks on btcd that the proposal's transaction spends op (and nothing outside the
// wallet's deposits) and pays everything but its fee to the cold vault, and that exactly one
// proposal exists for op.
func checkSwept(ctx context.Context, t *testing.T, p *scenario.Pair, pr scenario.Proposal, op wire.OutPoint, amount btcutil.Amount) {
	t.Helper()
	h, _ := chainhash.NewHashFromStr(pr.TxID)
	tx, err := p.Net.RPC().GetRawTransaction(h)
	if err != nil {
		t.Fatalf("sweep %s: %v", pr.TxID, err)
	}
	msg := tx.MsgTx()
	spends := false
	for _, in := range msg.TxIn {
		if in.PreviousOutPoint == op {
			spends = true
		}
	}
	if !spends {
		t.Fatalf("sweep %s does not spend the deposit %s", pr.TxID, op)
	}
	var toVault int64
	for i, out := range msg.TxOut {
		if _, _, ok := p.Vault.Match(out.PkScript, 100); !ok {
			t.Fatalf("sweep %s output %d (%d sat) does not pay the cold vault", pr.TxID, i, out.Value)
		}
		toVault += out.Value
	}
	if len(msg.TxIn) == 1 && toVault+pr.FeeSat != int64(amount) {
		t.Fatalf("sweep %s pays %d sat to the vault with fee %d sat; the deposit was %d sat", pr.TxID, toVault, pr.FeeSat, amount)
	}
	if pr.FeeSat <= 0 || pr.FeeRate <= 0 {
		t.Fatalf("sweep %s reports fee %d sat, feerate %v sat/vB", pr.TxID, pr.FeeSat, pr.FeeRate)
	}
	assertOneProposal(ctx, t, p, op)
}

// assertOneProposal fails unless A has exactly one proposal fired by op that is not a fee bump.
func assertOneProposal(ctx context.Context, t *testing.T, p *scenario.Pair, op wire.OutPoint) {
	t.Helper()
	ps, err := p.Proposals(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, pr := range ps {
		if scenario.HasOutPoint(pr.Trigger, op) && pr.Replaces == "" {
			mine = append(mine, fmt.Sprintf("%s (%s)", pr.ID, pr.State))
		}
	}
	if len(mine) != 1 {
		t.Fatalf("A has %d proposals for the deposit %s, want exactly one: %v", len(mine), op, mine)
	}
}

// grepLog returns the last n lines of a daemon's log that hold any of parts.
func grepLog(t *testing.T, d *scenario.Daemon, n int, parts ...string) string {
	t.Helper()
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		return err.Error()
	}
	var keep []string
	for _, line := range strings.Split(string(b), "\n") {
		for _, s := range parts {
			if strings.Contains(line, s) {
				keep = append(keep, line)
				break
			}
		}
	}
	return strings.Join(keep[max(0, len(keep)-n):], "\n")
}

// countLog counts the lines of a daemon's log holding every one of parts.
func countLog(t *testing.T, d *scenario.Daemon, parts ...string) int {
	t.Helper()
	b, err := os.ReadFile(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		all := true
		for _, s := range parts {
			all = all && strings.Contains(line, s)
		}
		if all {
			n++
		}
	}
	return n
}

// waitLogCount waits until a daemon's log has at least n lines holding every one of parts.
func waitLogCount(t *testing.T, d *scenario.Daemon, n int, parts ...string) {
	t.Helper()
	deadline := time.Now().Add(progress)
	for countLog(t, d, parts...) < n {
		if time.Now().After(deadline) {
			t.Fatalf("cosigner %s logged %d lines with %q within %s, want %d", d.Name, countLog(t, d, parts...), parts, progress, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestOutboundSweep runs the sweep automation on one pair through the cases whose state allows
// sharing: each case starts with an empty wallet (every earlier sweep confirmed).
func TestOutboundSweep(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test: needs the local test network (make test)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	// The operator gets A's notices as NIP-17 direct messages.
	operatorSK := nostr.GeneratePrivateKey()
	operatorPK, _ := nostr.GetPublicKey(operatorSK)
	p, stop := startPair(ctx, t, scenario.PairOptions{ExtraEnvA: []string{"COSIGNER_NOTIFY_NPUB=" + operatorPK}})
	defer stop()
	const amount = btcutil.Amount(50_000_000)

	var first wire.OutPoint
	var firstSweep scenario.Proposal
	t.Run("happy sweep", func(t *testing.T) {
		vault0, err := p.VaultBalance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		first = deposit(ctx, t, p, amount, 0)
		pr := confirmSweep(ctx, t, p, first)
		checkSwept(ctx, t, p, pr, first, amount)
		if pr.Automation != "sweep_deposits" || pr.Reason != "" {
			t.Fatalf("proposal %+v", pr)
		}
		for _, ev := range []string{"proposed", "self_signed", "requested", "answered", "finalized", "broadcast", "confirmed"} {
			if len(pr.Events(ev)) == 0 {
				t.Errorf("timeline of %s has no %q: %+v", pr.ID, ev, pr.Timeline)
			}
		}
		if len(pr.Cosigners) != 1 || pr.Cosigners[0].PubKey != p.B.Key.NostrPubKey || pr.Cosigners[0].State != "signed" {
			t.Errorf("co-signers of %s: %+v, want B signed", pr.ID, pr.Cosigners)
		}
		// B decided under its own policy, and says so in its audit log.
		dec, err := p.B.LastDecision(ctx, "sign_psbt")
		if err != nil || dec.Decision != "signed" || dec.UnsignedTxID != pr.UnsignedTxID {
			t.Fatalf("B's audit entry %+v, %v; want signed for %s", dec, err, pr.UnsignedTxID)
		}
		// The vault got the money, as BDK sees it through ElectrumX.
		vault, err := p.VaultBalance(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := vault.Confirmed - vault0.Confirmed; got != int64(amount)-pr.FeeSat {
			t.Fatalf("the vault received %d sat, want the deposit less the fee: %d", got, int64(amount)-pr.FeeSat)
		}
		firstSweep = pr
	})
	if firstSweep.ID == "" {
		t.Fatal("no sweep went through; stopping")
	}

	t.Run("B offline, then back; meanwhile a reorg reports the same funding again", func(t *testing.T) {
		// B is offline, so A's request waits and the deposit stays unspent while its block is
		// replaced: the watcher takes its confirmation back and reports it confirmed again in
		// the new chain. When B is back, A's repeated request is answered late and completes.
		if err := p.B.StopDaemon(); err != nil {
			t.Fatal(err)
		}
		op := deposit(ctx, t, p, amount, 0)
		pr := waitFor(ctx, t, p, op, "awaiting_cosigners")
		if len(pr.Events("requested")) == 0 {
			t.Fatalf("A awaits co-signers but did not record asking B: %+v", pr.Timeline)
		}
		confirmedLine := []string{`msg="funding confirmed"`, "outpoint=" + op.String()}
		before := countLog(t, p.A, confirmedLine...)
		if before == 0 {
			t.Fatalf("A made proposal %s but never logged the deposit %s confirmed", pr.ID, op)
		}
		res, err := p.Net.Reorg(ctx, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.A.WaitLog(ctx, progress, `msg="funding reorged out`, "outpoint="+op.String()); err != nil {
			t.Fatal(err)
		}
		t.Logf("reorg: fork at %d, new tip %s", res.ForkHeight, res.New[len(res.New)-1])
		waitLogCount(t, p.A, before+1, confirmedLine...)
		assertOneProposal(ctx, t, p, op)
		if err := p.B.StartDaemon(ctx); err != nil {
			t.Fatal(err)
		}
		done := confirmSweep(ctx, t, p, op)
		if done.ID != pr.ID {
			t.Fatalf("the deposit's sweep is proposal %s, but A had proposed %s before the reorg", done.ID, pr.ID)
		}
		checkSwept(ctx, t, p, done, op, amount)
	})

	t.Run("two of three relays down during coordination", func(t *testing.T) {
		if err := p.B.StopDaemon(); err != nil {
			t.Fatal(err)
		}
		op := deposit(ctx, t, p, amount, 0)
		waitFor(ctx, t, p, op, "awaiting_cosigners")
		for _, i := range []int{0, 1} {
			if err := p.Net.StopRelay(i); err != nil {
				t.Fatal(err)
			}
		}
		if err := p.B.StartDaemon(ctx); err != nil {
			t.Fatal(err)
		}
		pr := waitFor(ctx, t, p, op, "broadcast")
		for _, i := range []int{0, 1} {
			if err := p.Net.StartRelay(i); err != nil {
				t.Fatal(err)
			}
		}
		pr = confirmSweep(ctx, t, p, op)
		checkSwept(ctx, t, p, pr, op, amount)
	})

	t.Run("A killed -9 while awaiting B", func(t *testing.T) {
		if err := p.B.StopDaemon(); err != nil {
			t.Fatal(err)
		}
		op := deposit(ctx, t, p, amount, 0)
		pr := waitFor(ctx, t, p, op, "awaiting_cosigners")
		if err := p.A.KillDaemon(); err != nil {
			t.Fatal(err)
		}
		if err := p.B.StartDaemon(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.A.StartDaemon(ctx); err != nil {
			t.Fatal(err)
		}
		done := confirmSweep(ctx, t, p, op)
		if done.ID != pr.ID || done.UnsignedTxID != pr.UnsignedTxID {
			t.Fatalf("after the restart A completed %s (unsigned %s), not the proposal it had signed: %s (unsigned %s)", done.ID, done.UnsignedTxID, pr.ID, pr.UnsignedTxID)
		}
		checkSwept(ctx, t, p, done, op, amount)
		// B evaluated the request once, however often A asked (before and after the crash).
		n := 0
		log, err := p.B.Audit(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range log {
			if a.Method == "sign_psbt" && a.UnsignedTxID == pr.UnsignedTxID && a.Decision == "signed" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("B signed the sweep %s %d times, want once", pr.UnsignedTxID, n)
		}
	})

	t.Run("A killed -9 after finalized, before broadcast", func(t *testing.T) {
		// B holds the request for a cooling-off delay (A sees auth_url and waits); meanwhile
		// ElectrumX stops, so when B's answer comes A can finalize but not broadcast: it sits in
		// finalized, where it is killed. After the restart it must broadcast the stored
		// transaction — the same txid — not build or sign anything again.
		loaded := countLog(t, p.B, `msg="policy loaded"`)
		if err := p.WritePolicyB(scenario.CosignerPolicyB("1 BTC") + "rules:\n  - {name: cooling, action: hold, hold: {cooling_off: 20s}}\n"); err != nil {
			t.Fatal(err)
		}
		waitLogCount(t, p.B, loaded+1, `msg="policy loaded"`)
		op := deposit(ctx, t, p, amount, 0)
		waitFor(ctx, t, p, op, "awaiting_cosigners")
		if _, err := p.WaitProposal(ctx, progress, func(pr scenario.Proposal) bool {
			return scenario.ForTrigger(op)(pr) && len(pr.Cosigners) == 1 && pr.Cosigners[0].State == "held"
		}); err != nil {
			t.Fatal(err)
		}
		if err := p.Net.StopElectrumX(ctx); err != nil {
			t.Fatal(err)
		}
		fin := waitFor(ctx, t, p, op, "finalized")
		if fin.TxID == "" {
			t.Fatalf("finalized proposal %s has no txid", fin.ID)
		}
		if err := p.A.KillDaemon(); err != nil {
			t.Fatal(err)
		}
		if err := p.Net.StartElectrumX(ctx); err != nil {
			t.Fatal(err)
		}
		if err := p.A.StartDaemon(ctx); err != nil {
			t.Fatal(err)
		}
		done := confirmSweep(ctx, t, p, op)
		if done.ID != fin.ID || done.TxID != fin.TxID {
			t.Fatalf("after the restart A confirmed %s (txid %s), not the finalized %s (txid %s)", done.ID, done.TxID, fin.ID, fin.TxID)
		}
		if n := len(done.Events("self_signed")); n != 1 {
			t.Fatalf("A signed its share %d times, want once: %+v", n, done.Timeline)
		}
		checkSwept(ctx, t, p, done, op, amount)
		// Back to B's plain policy (a loosening: B's policy has no loosen_delay).
		loaded = countLog(t, p.B, `msg="policy loaded"`)
		if err := p.WritePolicyB(scenario.CosignerPolicyB("1 BTC")); err != nil {
			t.Fatal(err)
		}
		waitLogCount(t, p.B, loaded+1, `msg="policy loaded"`)
	})

	// Last: B's policy tightens (applies at once) and stays tight.
	t.Run("B's policy denies", func(t *testing.T) {
		loaded := countLog(t, p.B, `msg="policy loaded"`)
		if err := p.WritePolicyB(scenario.CosignerPolicyB("0.1 BTC")); err != nil {
			t.Fatal(err)
		}
		waitLogCount(t, p.B, loaded+1, `msg="policy loaded"`)
		op := deposit(ctx, t, p, amount, 0)
		pr := waitFor(ctx, t, p, op, "abandoned")
		if !strings.Contains(pr.Reason, "policy_denied") || !strings.Contains(pr.Reason, "max_per_tx") {
			t.Fatalf("abandoned with reason %q, want B's policy_denied: max_per_tx", pr.Reason)
		}
		if len(pr.Cosigners) != 1 || pr.Cosigners[0].State != "denied" {
			t.Fatalf("co-signers %+v, want B denied", pr.Cosigners)
		}
		if pr.TxID != "" || len(pr.Events("broadcast")) != 0 || len(pr.Events("finalized")) != 0 {
			t.Fatalf("a denied proposal went further: txid %q, timeline %+v", pr.TxID, pr.Timeline)
		}
		// Nothing reached the network: the deposit is unspent, in the chain and in the mempool.
		out, err := p.Net.RPC().GetTxOut(&op.Hash, op.Index, true)
		if err != nil || out == nil {
			t.Fatalf("the deposit %s is no longer unspent on btcd (%v)", op, err)
		}
		assertOneProposal(ctx, t, p, op)
		// The operator was told, in a direct message from A's Nostr key that nostr-tools opens.
		deadline := time.Now().Add(progress)
		for {
			dms, err := p.OperatorInbox(ctx, operatorSK, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, dm := range dms {
				if dm.From == p.A.Key.NostrPubKey && strings.Contains(dm.Content, pr.ID) && strings.Contains(dm.Content, "policy_denied") {
					found = true
				}
			}
			if found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the operator got %d direct messages, none from A about %s's denial: %+v", len(dms), pr.ID, dms)
			}
		}
	})
}
