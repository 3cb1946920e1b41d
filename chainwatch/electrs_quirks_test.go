package chainwatch

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// electrsQuirks sits in front of ElectrumX and reproduces, on demand, what electrs 0.12 was seen
// doing on this network, so that the watcher's tolerance is tested on every run:
//   - dup: every scripthash notification is sent twice (electrs notified twice for one block);
//   - during a reorg electrs briefly announced a null status for a script with history, and
//     answered its history as empty, then announced the real status again once it had indexed
//     the new chain. nullSH makes each headers notification carry a null status notification
//     for that scripthash and blanks the history answers listing blankTxid; realStatus, once
//     set, makes the next headers notification carry the real status again.
type electrsQuirks struct {
	dup        atomic.Bool
	mu         sync.Mutex
	nullSH     string
	blankTxid  string
	realSH     string
	realStatus string
	blanked    atomic.Int32 // history answers blanked so far
}

var headersNotifyRe = regexp.MustCompile(`"method":\s*"blockchain\.headers\.subscribe"`)

func (q *electrsQuirks) rewrite(line string) string {
	if q.dup.Load() && strings.Contains(line, `"blockchain.scripthash.subscribe"`) && !strings.Contains(line, `"id"`) {
		line += line
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.blankTxid != "" {
		re := regexp.MustCompile(`("result":\s*)\[[^\]]*"` + q.blankTxid + `"[^\]]*\]`)
		if re.MatchString(line) {
			line = re.ReplaceAllString(line, "${1}[]")
			q.blanked.Add(1)
		}
	}
	if headersNotifyRe.MatchString(line) {
		if q.nullSH != "" {
			line += fmt.Sprintf(`{"jsonrpc":"2.0","method":"blockchain.scripthash.subscribe","params":["%s",null]}`+"\n", q.nullSH)
		}
		if q.realStatus != "" {
			line += fmt.Sprintf(`{"jsonrpc":"2.0","method":"blockchain.scripthash.subscribe","params":["%s","%s"]}`+"\n", q.realSH, q.realStatus)
			q.realStatus = ""
		}
	}
	return line
}

func countEvents(evs []Event, match func(Event) bool) int {
	n := 0
	for _, ev := range evs {
		if match(ev) {
			n++
		}
	}
	return n
}

// TestWatcherToleratesElectrsQuirks: duplicated scripthash notifications produce no duplicated
// events; a null status (with an empty history) announced for a script that has a confirmed coin
// and then the real status again leave the watcher equal to the node (the coin may be reported
// gone meanwhile, but it is back, confirmed, at the end).
func TestWatcherToleratesElectrsQuirks(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	net := startDevnet(ctx, t)
	params := net.Params()
	wallet := newP2WPKHWallet(t, params, 13)
	db := openStore(ctx, t, "quirks.db")
	defer db.Close()
	q := &electrsQuirks{}
	proxy := newProxy(t, net.ElectrumAddr(), q.rewrite)
	w := startWatcher(t, proxy.URL(), db, wallet, params)
	defer w.stop(t)

	pay := func(index uint32, amount btcutil.Amount) wire.OutPoint {
		t.Helper()
		addr, _ := wallet.address(0, index)
		txid, err := net.Fund(ctx, addr, amount)
		if err != nil {
			t.Fatal(err)
		}
		pk, _ := wallet.PkScript(0, index)
		op, _ := findOut(t, net, txid, pk)
		return op
	}
	isConfirmed := func(op wire.OutPoint) func(Event) bool {
		return func(e Event) bool { f, ok := e.(FundingConfirmed); return ok && f.UTXO.OutPoint == op }
	}
	isSeen := func(op wire.OutPoint) func(Event) bool {
		return func(e Event) bool { f, ok := e.(FundingSeen); return ok && f.UTXO.OutPoint == op }
	}

	// Two notifications for every change: one FundingSeen and one FundingConfirmed each.
	q.dup.Store(true)
	op1 := pay(2, 40_000_000)
	w.log.wait(t, "FundingSeen of op1", isSeen(op1))
	if _, err := net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	w.log.wait(t, "FundingConfirmed of op1", isConfirmed(op1))
	op2 := pay(3, 20_000_000)
	w.log.wait(t, "FundingSeen of op2", isSeen(op2))
	if _, err := net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	w.log.wait(t, "FundingConfirmed of op2", isConfirmed(op2))
	checkAgainstNode(t, net, w.UTXOs(), map[wire.OutPoint]btcutil.Amount{op1: 40_000_000, op2: 20_000_000})
	evs := w.log.snapshot()
	for _, op := range []wire.OutPoint{op1, op2} {
		if s, c := countEvents(evs, isSeen(op)), countEvents(evs, isConfirmed(op)); s != 1 || c != 1 {
			t.Fatalf("%v: %d FundingSeen and %d FundingConfirmed with doubled notifications, want 1 each; events %s", op, s, c, eventKinds(evs))
		}
	}
	q.dup.Store(false)

	// A brief null status for the script of op1 (with an empty history), as electrs announced
	// during a reorg, then its real status again.
	pk1, _ := wallet.PkScript(0, 2)
	sh1 := ScriptHash(pk1)
	ec, err := electrum.Dial(ctx, net.ElectrumURL(), electrum.Options{ClientName: "quirks-test", PingInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ec.Close()
	var real *string
	if err := ec.Call(ctx, "blockchain.scripthash.subscribe", []any{sh1}, &real); err != nil || real == nil {
		t.Fatalf("real status of op1's script: %v %v", real, err)
	}
	q.mu.Lock()
	q.nullSH, q.blankTxid = sh1, op1.Hash.String()
	q.mu.Unlock()
	if _, err := net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	// Wait until the watcher has asked for the history after the null status and got it blank.
	waitFor(t, "the watcher to fetch the blanked history", func() bool { return q.blanked.Load() > 0 })
	q.mu.Lock()
	q.nullSH, q.blankTxid = "", ""
	q.realSH, q.realStatus = sh1, *real
	q.mu.Unlock()
	if _, err := net.Mine(ctx, 1); err != nil {
		t.Fatal(err)
	}
	want := map[wire.OutPoint]btcutil.Amount{op1: 40_000_000, op2: 20_000_000}
	waitFor(t, "the watcher to hold op1 and op2 confirmed again", func() bool {
		us := w.UTXOs()
		if len(us) != len(want) {
			return false
		}
		for _, u := range us {
			if _, ok := want[u.OutPoint]; !ok || u.Height <= 0 {
				return false
			}
		}
		return true
	})
	checkAgainstNode(t, net, w.UTXOs(), want)
	evs = w.log.snapshot()
	t.Logf("events for op1 during the null status: %s", eventKinds(evs))
	if h := w.Health(); !h.Connected || !h.Ready {
		t.Fatalf("health after the quirks = %+v", h)
	}
}
