package chainwatch

import (
	"context"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/internal/devnet"
)

// liar forwards connections to the real ElectrumX and, while switched on, alters its answers
// line by line: lieMerkle replaces the first hash of every get_merkle branch (a proof that does
// not hold); lieHistory turns every mempool height 0 into -1 in get_history answers (a history
// that does not hash to the announced status). Requests pass through unchanged.
type liar struct {
	*devnet.Proxy
	lieMerkle  atomic.Bool
	lieHistory atomic.Bool
}

var (
	merkleRe  = regexp.MustCompile(`("merkle":\s*\[\s*")[0-9a-f]{64}`)
	historyRe = regexp.MustCompile(`("tx_hash":\s*"[0-9a-f]{64}",\s*"height":\s*)0(,\s*"fee")`)
)

func newLiar(t *testing.T, upstream string) *liar {
	t.Helper()
	l := &liar{}
	l.Proxy = newProxy(t, upstream, func(line string) string {
		if l.lieMerkle.Load() {
			line = merkleRe.ReplaceAllString(line, "${1}"+strings.Repeat("0", 64))
		}
		if l.lieHistory.Load() {
			line = historyRe.ReplaceAllString(line, "${1}-1${2}")
		}
		return line
	})
	return l
}

// waitFor polls cond (no timing assertion: it only bounds how long the test waits).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestWatcherDistrustsALyingServer runs the watcher through a proxy that falsifies ElectrumX's
// answers:
//   - a history that does not match its announced status is not taken: no FundingSeen while the
//     lie lasts (the watcher refetches with backoff); once the answers are honest again the
//     payment is seen;
//   - a merkle proof that does not hold leaves the funding unconfirmed (Height 0, no
//     FundingConfirmed, Health.Unproven 1, Health.SPVFailures counted), although the server says
//     it is confirmed; with honest proofs again it is confirmed (at the next block, or when the
//     failed proof is retried).
func TestWatcherDistrustsALyingServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	net := startDevnet(ctx, t)
	params := net.Params()
	wallet := newP2WPKHWallet(t, params, 11)
	db := openStore(ctx, t, "liar.db")
	defer db.Close()
	l := newLiar(t, net.ElectrumAddr())
	w := startWatcher(t, l.URL(), db, wallet, params)

	// A history that does not hash to its status.
	l.lieHistory.Store(true)
	addr, _ := wallet.address(0, 1)
	pk, _ := wallet.PkScript(0, 1)
	fund, err := net.Fund(ctx, addr, 3_000_000)
	if err != nil {
		t.Fatal(err)
	}
	op, _ := findOut(t, net, fund, pk)
	waitFor(t, "a refused history", func() bool { return strings.Contains(w.Health().LastError, "does not match the announced status") })
	for _, ev := range w.log.snapshot() {
		if f, ok := ev.(FundingSeen); ok && f.UTXO.OutPoint == op {
			t.Fatal("funding taken from a history that does not match its status")
		}
	}
	if _, ok := w.UTXO(op); ok {
		t.Fatal("UTXO taken from a history that does not match its status")
	}
	l.lieHistory.Store(false)
	w.log.wait(t, "FundingSeen once the history is honest", func(e Event) bool {
		f, ok := e.(FundingSeen)
		return ok && f.UTXO.OutPoint == op
	})

	// A merkle proof that does not hold.
	l.lieMerkle.Store(true)
	failures := w.Health().SPVFailures
	if _, err := net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a rejected proof", func() bool { return w.Health().SPVFailures > failures })
	if u, ok := w.UTXO(op); !ok || u.Height != 0 {
		t.Fatalf("UTXO with a false proof: %+v %v, want unconfirmed", u, ok)
	}
	if x, _ := w.Tx(fund); x.Height <= 0 || x.Verified || w.Health().Unproven != 1 {
		t.Fatalf("tx state %+v, health %+v", x, w.Health())
	}
	for _, ev := range w.log.snapshot() {
		if f, ok := ev.(FundingConfirmed); ok && f.UTXO.OutPoint == op {
			t.Fatal("FundingConfirmed on a false proof")
		}
	}
	l.lieMerkle.Store(false)
	if _, err := net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	conf := w.log.wait(t, "FundingConfirmed with an honest proof", func(e Event) bool {
		f, ok := e.(FundingConfirmed)
		return ok && f.UTXO.OutPoint == op
	}).(FundingConfirmed)
	if x, _ := w.Tx(fund); !x.Verified || conf.UTXO.Height != x.Height || w.Health().Unproven != 0 {
		t.Fatalf("confirmed %+v, tx %+v, health %+v", conf, x, w.Health())
	}
	checkAgainstNode(t, net, w.UTXOs(), map[wire.OutPoint]btcutil.Amount{op: 3_000_000})
	w.stop(t)
}

// TestWatcherFailsOver: with a dead server listed first, the watcher syncs through the second
// (electrum.Pool), and Health shows both servers' state.
func TestWatcherFailsOver(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	net := startDevnet(ctx, t)
	db := openStore(ctx, t, "failover.db")
	defer db.Close()
	dead := "tcp://127.0.0.1:1"
	b := newProxy(t, net.ElectrumAddr(), nil)
	w := startWatcher(t, dead, db, newP2WPKHWallet(t, net.Params(), 12), net.Params(), b.URL())
	h := w.Health()
	if !h.Connected || h.Server != b.URL() || len(h.Servers) != 2 || h.Servers[0].Failures == 0 || h.Servers[0].Connected || !h.Servers[1].Connected {
		t.Fatalf("health %+v", h)
	}
	w.stop(t)
}
