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
)

// as16 rewrites ElectrumX's answers into protocol 1.6's shapes, as Fulcrum ≥ 2.1 sends them: it
// answers server.version with "1.6" and turns each blockchain.block.headers result's
// concatenated "hex" into a "headers" list. Counts what it rewrote.
type as16 struct {
	versions, headers atomic.Int32
}

var (
	versionResultRe = regexp.MustCompile(`("result":\s*\[\s*"[^"]*",\s*)"1\.4(\.\d+)*"`)
	headersHexRe    = regexp.MustCompile(`"hex":\s*"([0-9a-f]*)"`)
)

func (a *as16) rewrite(line string) string {
	if versionResultRe.MatchString(line) {
		a.versions.Add(1)
		return versionResultRe.ReplaceAllString(line, `${1}"1.6"`)
	}
	if strings.Contains(line, `"count"`) && strings.Contains(line, `"max"`) && !strings.Contains(line, `"method"`) {
		return headersHexRe.ReplaceAllStringFunc(line, func(m string) string {
			hexs := headersHexRe.FindStringSubmatch(m)[1]
			parts := make([]string, 0, len(hexs)/160)
			for i := 0; i+160 <= len(hexs); i += 160 {
				parts = append(parts, `"`+hexs[i:i+160]+`"`)
			}
			a.headers.Add(1)
			return `"headers": [` + strings.Join(parts, ", ") + `]`
		})
	}
	return line
}

// TestWatcherOnProtocol16: the watcher negotiates 1.6 with a server that offers it, syncs its
// header chain from "headers" lists (the initial 450 blocks, new blocks, a 2-block reorg), and
// sees a payment confirmed, ending equal to the node.
func TestWatcherOnProtocol16(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	net := startDevnet(ctx, t)
	params := net.Params()
	wallet := newP2WPKHWallet(t, params, 17)
	db := openStore(ctx, t, "v16.db")
	defer db.Close()
	a := &as16{}
	proxy := newProxy(t, net.ElectrumAddr(), a.rewrite)
	w := startWatcher(t, proxy.URL(), db, wallet, params)
	defer w.stop(t)
	if h := w.Health(); h.Protocol != "1.6" || a.versions.Load() == 0 || a.headers.Load() == 0 {
		t.Fatalf("protocol %q, %d version and %d headers answers rewritten; want 1.6 and both rewritten", h.Protocol, a.versions.Load(), a.headers.Load())
	}

	addr, _ := wallet.address(0, 1)
	txid, err := net.Fund(ctx, addr, 25_000_000)
	if err != nil {
		t.Fatal(err)
	}
	pk, _ := wallet.PkScript(0, 1)
	op, _ := findOut(t, net, txid, pk)
	if _, err := net.Mine(ctx, 3); err != nil {
		t.Fatal(err)
	}
	w.log.wait(t, "FundingConfirmed", func(e Event) bool { f, ok := e.(FundingConfirmed); return ok && f.UTXO.OutPoint == op })
	before := a.headers.Load()
	res, err := net.Reorg(ctx, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	tip := res.New[len(res.New)-1]
	waitFor(t, "the watcher on the new tip", func() bool { return w.Tip().Hash == tip })
	if a.headers.Load() == before {
		t.Fatal("the reorg was followed without a headers answer in the 1.6 shape")
	}
	checkAgainstNode(t, net, w.UTXOs(), map[wire.OutPoint]btcutil.Amount{op: 25_000_000})
}
