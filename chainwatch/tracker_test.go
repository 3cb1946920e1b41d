package chainwatch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/btcsuite/btcd/wire"
	"reflect"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
)

// fakeScripts derives a distinct 22-byte P2WPKH-shaped script per branch/index.
type fakeScripts struct{ branches int }

func (f fakeScripts) Branches() int { return f.branches }
func (f fakeScripts) PkScript(branch, index uint32) ([]byte, error) {
	pk := make([]byte, 22)
	pk[0], pk[1] = 0x00, 0x14
	pk[2], pk[3], pk[4] = byte(branch), byte(index>>8), byte(index)
	return pk, nil
}

func txid(c byte) chainhash.Hash {
	h, err := chainhash.NewHashFromStr(strings.Repeat(string([]byte{c}), 64))
	if err != nil {
		panic(err)
	}
	return *h
}

func TestScriptHashSpecVector(t *testing.T) {
	// Electrum protocol docs, "Script Hashes": P2PKH of 1DFkbzi…; sha256 of the script, reversed.
	pk := []byte{0x76, 0xa9, 0x14, 0x62, 0xe9, 0x07, 0xb1, 0x5c, 0xbf, 0x27, 0xd5, 0x42, 0x53, 0x99, 0xeb, 0xf6, 0xf0, 0xfb, 0x50, 0xeb, 0xb8, 0x8f, 0x18, 0x88, 0xac}
	if got, want := ScriptHash(pk), "8b01df4e368ea28f8dc0423bcf7a4923e3a12d307c875e47a0cfbf90b5c39161"; got != want {
		t.Fatalf("ScriptHash = %s, want %s", got, want)
	}
}

func TestElectrumStatus(t *testing.T) {
	a, b, c := txid('a'), txid('b'), txid('c')
	for _, tc := range []struct {
		name    string
		hist    []HistoryItem
		want    string
		wantErr error
	}{
		{name: "empty is null", hist: nil, want: ""},
		// Hand-computed: sha256("aaaa…aaaa:100:") (64 × 'a'), hex.
		{name: "one confirmed", hist: []HistoryItem{{a, 100}}, want: "5ff47635caf08b69b6788522ae9c7b6166d3fc1cdae36ebb3cbcd243d4c50185"},
		// sha256("aaaa…:100:bbbb…:101:cccc…:0:")
		{name: "confirmed then mempool", hist: []HistoryItem{{a, 100}, {b, 101}, {c, 0}}, want: "a200b0edd6370b183c24e252b47d5eb54a358e61462937706b91d529f30d80e5"},
		{name: "heights decrease", hist: []HistoryItem{{a, 101}, {b, 100}}, wantErr: ErrBadHistory},
		{name: "confirmed after mempool", hist: []HistoryItem{{c, 0}, {a, 100}}, wantErr: ErrBadHistory},
		{name: "height below -1", hist: []HistoryItem{{a, -2}}, wantErr: ErrBadHistory},
		{name: "mempool with unconfirmed parent", hist: []HistoryItem{{a, 5}, {b, -1}}, want: sha("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:5:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb:-1:")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ElectrumStatus(tc.hist)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("status = %q, want %q", got, tc.want)
			}
		})
	}
}

func status(t *testing.T, h []HistoryItem) string {
	t.Helper()
	s, err := ElectrumStatus(h)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTestTracker(t *testing.T) *Tracker {
	t.Helper()
	tr, err := NewTracker(fakeScripts{branches: 2}, 20)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := tr.Extend()
	if err != nil {
		t.Fatal(err)
	}
	if len(fresh) != 40 {
		t.Fatalf("initial window = %d scripts, want 2×20", len(fresh))
	}
	return tr
}

func sh(t *testing.T, tr *Tracker, branch, index uint32) string {
	pk, _ := tr.src.PkScript(branch, index)
	return ScriptHash(pk)
}

func eventKinds(evs []Event) string {
	var out []string
	for _, e := range evs {
		switch e := e.(type) {
		case FundingSeen:
			out = append(out, fmt.Sprintf("seen %s:%d@%d", e.UTXO.OutPoint.Hash.String()[:1], e.UTXO.OutPoint.Index, e.UTXO.Height))
		case FundingConfirmed:
			out = append(out, fmt.Sprintf("confirmed %s:%d@%d/%d", e.UTXO.OutPoint.Hash.String()[:1], e.UTXO.OutPoint.Index, e.UTXO.Height, e.Confs))
		case Spent:
			out = append(out, fmt.Sprintf("spent %s:%d", e.OutPoint.Hash.String()[:1], e.OutPoint.Index))
		case FundingDropped:
			out = append(out, fmt.Sprintf("dropped %s:%d", e.UTXO.OutPoint.Hash.String()[:1], e.UTXO.OutPoint.Index))
		case NewTip:
			out = append(out, fmt.Sprintf("tip %d", e.Tip.Height))
		}
	}
	return strings.Join(out, ", ")
}

// TestTrackerLifecycle walks one script through the states a coin goes through. Each step
// applies a (history, unspent) answer against a status and checks the events and the UTXO set.
func TestTrackerLifecycle(t *testing.T) {
	a, b, c := txid('a'), txid('b'), txid('c')
	type step struct {
		name      string
		tip       int32
		hist      []HistoryItem
		unspent   []UnspentItem
		announced string // "" = computed from hist; "bogus" = a status that does not match
		wantErr   error
		want      string // events
		wantUTXOs int
	}
	steps := []step{
		{name: "funding in mempool", tip: 100, hist: []HistoryItem{{a, 0}}, unspent: []UnspentItem{{a, 1, 0, 50_000}}, want: "seen a:1@0", wantUTXOs: 1},
		{name: "same answer again changes nothing", tip: 100, hist: []HistoryItem{{a, 0}}, unspent: []UnspentItem{{a, 1, 0, 50_000}}, want: "", wantUTXOs: 1},
		{name: "history not matching the announced status is refused", tip: 101, hist: []HistoryItem{{a, 101}}, unspent: []UnspentItem{{a, 1, 101, 50_000}}, announced: "bogus", wantErr: ErrStatusMismatch, wantUTXOs: 1},
		{name: "unspent output missing from history is refused", tip: 101, hist: []HistoryItem{{a, 101}}, unspent: []UnspentItem{{c, 0, 101, 1}}, wantErr: ErrBadHistory, wantUTXOs: 1},
		{name: "confirmed", tip: 102, hist: []HistoryItem{{a, 101}}, unspent: []UnspentItem{{a, 1, 101, 50_000}}, want: "confirmed a:1@101/2", wantUTXOs: 1},
		{name: "second funding found already confirmed", tip: 102, hist: []HistoryItem{{a, 101}, {b, 102}}, unspent: []UnspentItem{{a, 1, 101, 50_000}, {b, 0, 102, 7_000}}, want: "seen b:0@102, confirmed b:0@102/1", wantUTXOs: 2},
		{name: "spent in mempool", tip: 102, hist: []HistoryItem{{a, 101}, {b, 102}, {c, 0}}, unspent: []UnspentItem{{b, 0, 102, 7_000}}, want: "spent a:1", wantUTXOs: 1},
		{name: "funding vanished (reorg/eviction)", tip: 102, hist: []HistoryItem{{a, 101}, {c, 0}}, unspent: nil, want: "dropped b:0", wantUTXOs: 0},
	}
	tr := newTestTracker(t)
	s0 := sh(t, tr, 0, 0)
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			tr.SetTip(Tip{Height: st.tip})
			ann := st.announced
			if ann == "" {
				ann = status(t, st.hist)
			}
			up, err := tr.Apply(s0, ann, st.hist, st.unspent)
			if !errors.Is(err, st.wantErr) {
				t.Fatalf("err = %v, want %v", err, st.wantErr)
			}
			if got := eventKinds(up.Events); got != st.want {
				t.Fatalf("events = %q, want %q", got, st.want)
			}
			if n := len(tr.UTXOs()); n != st.wantUTXOs {
				t.Fatalf("UTXOs = %d, want %d", n, st.wantUTXOs)
			}
			if err == nil && (up.Script.Status != ann || !up.Script.Verified) {
				t.Fatalf("script state %+v, want verified status %q", up.Script, ann)
			}
		})
	}
}

func TestTrackerWindowCascades(t *testing.T) {
	tr := newTestTracker(t)
	use := func(branch, index uint32, c byte) {
		t.Helper()
		h := []HistoryItem{{txid(c), 10}}
		if _, err := tr.Apply(sh(t, tr, branch, index), status(t, h), h, []UnspentItem{{txid(c), 0, 10, 1000}}); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (int, int) {
		n := [2]int{}
		for _, s := range tr.Scripts() {
			n[s.Branch]++
		}
		return n[0], n[1]
	}
	for _, tc := range []struct {
		name           string
		branch, index  uint32
		wantR, wantC   int
		wantFreshAfter int
	}{
		{"last index of the initial window", 0, 19, 40, 20, 20},
		{"index found only after the first extension", 0, 39, 60, 20, 20},
		{"a use below the highest changes nothing", 0, 5, 60, 20, 0},
		{"change branch extends on its own", 1, 3, 60, 24, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tr.Script(sh(t, tr, tc.branch, tc.index)); !ok {
				t.Fatalf("script %d/%d not tracked before use", tc.branch, tc.index)
			}
			use(tc.branch, tc.index, 'a'+byte(tc.index%6))
			fresh, err := tr.Extend()
			if err != nil {
				t.Fatal(err)
			}
			if len(fresh) != tc.wantFreshAfter {
				t.Fatalf("Extend derived %d, want %d", len(fresh), tc.wantFreshAfter)
			}
			if r, c := count(); r != tc.wantR || c != tc.wantC {
				t.Fatalf("window = %d receive, %d change; want %d, %d", r, c, tc.wantR, tc.wantC)
			}
		})
	}
	pk, _ := tr.src.PkScript(0, 59)
	if b, i, ok := tr.Lookup(pk); !ok || b != 0 || i != 59 {
		t.Fatalf("Lookup(0/59) = %d %d %v", b, i, ok)
	}
	pk, _ = tr.src.PkScript(0, 60)
	if _, _, ok := tr.Lookup(pk); ok {
		t.Fatal("Lookup found a script beyond the window")
	}
}

func TestTrackerRestore(t *testing.T) {
	tr := newTestTracker(t)
	h := []HistoryItem{{txid('a'), 10}}
	if _, err := tr.Apply(sh(t, tr, 0, 19), status(t, h), h, []UnspentItem{{txid('a'), 0, 10, 1000}}); err != nil {
		t.Fatal(err)
	}
	tr.Extend()
	tip := Tip{Height: 12}
	scripts, utxos := tr.Scripts(), tr.UTXOs()

	t.Run("same wallet", func(t *testing.T) {
		tr2, _ := NewTracker(fakeScripts{branches: 2}, 20)
		if err := tr2.Restore(scripts, utxos, &tip); err != nil {
			t.Fatal(err)
		}
		if fresh, _ := tr2.Extend(); len(fresh) != 0 {
			t.Fatalf("restored window not full: %d new", len(fresh))
		}
		if !reflect.DeepEqual(tr2.UTXOs(), utxos) || !tr2.UpToDate(sh(t, tr, 0, 19), status(t, h)) {
			t.Fatal("restored state differs")
		}
		if got, _ := tr2.Tip(); got != tip {
			t.Fatalf("tip = %v", got)
		}
	})
	t.Run("other wallet", func(t *testing.T) {
		tr2, _ := NewTracker(otherScripts{}, 20)
		if err := tr2.Restore(scripts, utxos, &tip); !errors.Is(err, ErrWalletMismatch) {
			t.Fatalf("err = %v, want ErrWalletMismatch", err)
		}
	})
	t.Run("gap in stored scripts", func(t *testing.T) {
		tr2, _ := NewTracker(fakeScripts{branches: 2}, 20)
		if err := tr2.Restore(scripts[1:], nil, nil); !errors.Is(err, ErrWalletMismatch) {
			t.Fatalf("err = %v, want ErrWalletMismatch", err)
		}
	})
}

type otherScripts struct{}

func (otherScripts) Branches() int { return 2 }
func (otherScripts) PkScript(branch, index uint32) ([]byte, error) {
	pk, _ := fakeScripts{}.PkScript(branch, index)
	pk[21] = 0xff
	return pk, nil
}

func TestConfirmations(t *testing.T) {
	tip := Tip{Height: 110}
	for _, tc := range []struct {
		h    int32
		want int32
	}{{0, 0}, {110, 1}, {101, 10}, {111, 0}} {
		if got := (UTXO{Height: tc.h}).Confirmations(tip); got != tc.want {
			t.Errorf("Confirmations(height %d at tip 110) = %d, want %d", tc.h, got, tc.want)
		}
	}
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func newTx() *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(wire.NewTxIn(&wire.OutPoint{Hash: txid('a')}, nil, nil))
	tx.AddTxOut(wire.NewTxOut(1000, []byte{0x51}))
	return tx
}
