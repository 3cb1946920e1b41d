package chainwatch

import (
	"bytes"
	"context"
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btcsuite/btcd/wire"
)

// forker is a proxy in front of ElectrumX that, while it has a fork, replaces the hex of real
// headers by forged ones in every answer and notification (blockchain.headers.subscribe and
// blockchain.block.headers carry headers as hex), and the tip's height where the forged tip is
// lower. Requests pass unchanged.
type forker struct {
	mu      sync.Mutex
	replace map[string]string // real header hex → forged header hex
	tipHex  string            // the forged tip's hex, whose "height" is rewritten to tipAt
	tipAt   int32
}

var heightRe = regexp.MustCompile(`("height":\s*)\d+`)

func (f *forker) rewrite(line string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	for real, forged := range f.replace {
		line = strings.ReplaceAll(line, real, forged)
	}
	if f.tipHex != "" && strings.Contains(line, f.tipHex) && !strings.Contains(line, `"count"`) {
		line = heightRe.ReplaceAllString(line, "${1}"+strconv.Itoa(int(f.tipAt)))
	}
	return line
}

func (f *forker) set(replace map[string]string, tipHex string, tipAt int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replace, f.tipHex, f.tipAt = replace, tipHex, tipAt
}

func hdrHex(t *testing.T, h wire.BlockHeader) string {
	t.Helper()
	var b bytes.Buffer
	if err := h.Serialize(&b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b.Bytes())
}

// TestWatcherRefusesALowerWorkFork: a server (a proxy in front of ElectrumX) that offers a fork
// with less work than the watcher's chain — a shorter one (its tip one block lower, replacing
// two blocks by one), then one of equal work (the tip replaced by another valid block) — is
// refused each time: the watcher keeps its tip, says why in Health.LastError (ErrForkLessWork),
// and stays connected; when the server is honest again it follows the real chain's next block.
// Without the chain-work rule the watcher would take both forks (their headers are valid
// regtest headers).
func TestWatcherRefusesALowerWorkFork(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	net := startDevnet(ctx, t)
	params := net.Params()
	db := openStore(ctx, t, "fork.db")
	defer db.Close()
	f := &forker{}
	p := newProxy(t, net.ElectrumAddr(), f.rewrite)
	w := startWatcher(t, p.URL(), db, newP2WPKHWallet(t, params, 13), params)
	defer w.stop(t)

	mined, err := net.Mine(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	waitTip(t, w.Watcher, mined[1])
	tip := w.Tip()
	w.mu.RLock()
	h1, _ := w.tr.Chain().Header(tip.Height - 1)
	h2, _ := w.tr.Chain().Header(tip.Height)
	h0, _ := w.tr.Chain().Header(tip.Height - 2)
	w.mu.RUnlock()

	for _, c := range []struct {
		name    string
		replace map[string]string
		tipHex  string
		tipAt   int32
	}{
		{
			// Shorter: one forged block on h0 stands for h1 and the tip h2 (one block less work).
			name: "shorter",
			replace: func() map[string]string {
				f1 := mineHeader(t, h0, h0.Bits, h1.Timestamp, 's', true)
				return map[string]string{hdrHex(t, h1): hdrHex(t, f1), hdrHex(t, h2): hdrHex(t, f1)}
			}(),
			tipAt: tip.Height - 1,
		},
		{
			// Equal work: another valid block at the tip's height.
			name: "equal work",
			replace: func() map[string]string {
				f2 := mineHeader(t, h1, h1.Bits, h2.Timestamp, 'e', true)
				return map[string]string{hdrHex(t, h2): hdrHex(t, f2)}
			}(),
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			tipHex := ""
			if c.tipAt != 0 {
				tipHex = c.replace[hdrHex(t, h2)]
			}
			before := w.Health().LastErrorAt
			f.set(c.replace, tipHex, c.tipAt)
			p.Cut() // the watcher reconnects and meets the fork at once
			waitFor(t, "the fork refused", func() bool {
				h := w.Health()
				return h.Connected && h.LastErrorAt.After(before) && strings.Contains(h.LastError, "does not have more work")
			})
			if got := w.Tip(); got != tip {
				t.Fatalf("tip %+v after a lower-work fork, want %+v", got, tip)
			}
			if h := w.Health(); !h.Connected || h.Headers != tip.Height {
				t.Fatalf("health %+v", h)
			}
			f.set(nil, "", 0)
		})
	}
	// Honest again: the next real block is followed.
	next, err := net.Mine(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	waitTip(t, w.Watcher, next[0])
}
