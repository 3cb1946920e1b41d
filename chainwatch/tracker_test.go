package chainwatch

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
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

// testChain mines regtest headers whose blocks hold chosen transactions: blocks[h] lists the
// txids of block h after a made-up coinbase (a distinct leaf per height and fork salt).
type testChain struct {
	t      testing.TB
	blocks map[int32][]chainhash.Hash
	salt   byte
}

func coinbaseLeaf(h int32, salt byte) chainhash.Hash {
	return chainhash.Hash{0xcb, byte(h), byte(h >> 8), salt}
}

func (tc *testChain) leaves(h int32) []chainhash.Hash {
	return append([]chainhash.Hash{coinbaseLeaf(h, tc.salt)}, tc.blocks[h]...)
}

// headers mines heights from..to on top of prev.
func (tc *testChain) headers(prev wire.BlockHeader, from, to int32) []wire.BlockHeader {
	var out []wire.BlockHeader
	for h := from; h <= to; h++ {
		root, _ := merkleBranch(tc.leaves(h), 0)
		hdr := wire.BlockHeader{Version: 4, PrevBlock: prev.BlockHash(), MerkleRoot: root, Timestamp: prev.Timestamp.Add(10 * 60 * 1e9), Bits: prev.Bits}
		target := blockchain.CompactToBig(hdr.Bits)
		for n := uint32(0); ; n++ {
			hdr.Nonce = n
			hash := hdr.BlockHash()
			if blockchain.HashToBig(&hash).Cmp(target) <= 0 {
				break
			}
		}
		out = append(out, hdr)
		prev = hdr
	}
	return out
}

// proof returns the merkle proof of txid in block h.
func (tc *testChain) proof(h int32, id chainhash.Hash) MerkleProof {
	leaves := tc.leaves(h)
	for i, l := range leaves {
		if l == id {
			_, br := merkleBranch(leaves, i)
			return MerkleProof{Height: h, Branch: br, Pos: uint32(i)}
		}
	}
	tc.t.Fatalf("tx %s not in block %d", id, h)
	return MerkleProof{}
}

func newTestTracker(t *testing.T) *Tracker {
	t.Helper()
	tr, err := NewTracker(fakeScripts{branches: 2}, 20, NewHeaderChain(&chaincfg.RegressionNetParams, 10))
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

// growTo connects tc's headers up to height to.
func growTo(t *testing.T, tr *Tracker, tc *testChain, to int32) Update {
	t.Helper()
	from := tr.Chain().Height() + 1
	prev, _ := tr.Chain().Header(from - 1)
	up, err := tr.ConnectHeaders(from, tc.headers(prev, from, to))
	if err != nil {
		t.Fatal(err)
	}
	return up
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
		case FundingMatured:
			out = append(out, fmt.Sprintf("matured %s:%d@%d at %d", e.UTXO.OutPoint.Hash.String()[:1], e.UTXO.OutPoint.Index, e.UTXO.Height, e.Tip.Height))
		case FundingImmature:
			out = append(out, fmt.Sprintf("immature %s:%d@%d at %d", e.UTXO.OutPoint.Hash.String()[:1], e.UTXO.OutPoint.Index, e.UTXO.Height, e.Tip.Height))
		case Spent:
			out = append(out, fmt.Sprintf("spent %s:%d", e.OutPoint.Hash.String()[:1], e.OutPoint.Index))
		case FundingDropped:
			out = append(out, fmt.Sprintf("dropped %s:%d", e.UTXO.OutPoint.Hash.String()[:1], e.UTXO.OutPoint.Index))
		case FundingReorged:
			out = append(out, fmt.Sprintf("reorged %s:%d@%d", e.UTXO.OutPoint.Hash.String()[:1], e.UTXO.OutPoint.Index, e.UTXO.Height))
		case NewTip:
			if e.Reorged {
				out = append(out, fmt.Sprintf("tip %d fork %d", e.Tip.Height, e.Fork))
			} else {
				out = append(out, fmt.Sprintf("tip %d", e.Tip.Height))
			}
		}
	}
	return strings.Join(out, ", ")
}

// TestTrackerLifecycle walks one script through the states a coin goes through. Each step
// connects headers up to tip, applies a (history, unspent) answer against a status, then applies
// the merkle proofs of the txids in prove, and checks the events and the UTXO set.
func TestTrackerLifecycle(t *testing.T) {
	a, b, c := txid('a'), txid('b'), txid('c')
	tc := &testChain{t: t, blocks: map[int32][]chainhash.Hash{101: {a}, 102: {b}}}
	type step struct {
		name      string
		tip       int32
		hist      []HistoryItem
		unspent   []UnspentItem
		announced string // "" = computed from hist; "bogus" = a status that does not match
		prove     []chainhash.Hash
		wantErr   error
		want      string // events
		wantUTXOs int
	}
	steps := []step{
		{name: "funding in mempool", tip: 100, hist: []HistoryItem{{a, 0}}, unspent: []UnspentItem{{a, 1, 0, 50_000}}, want: "seen a:1@0", wantUTXOs: 1},
		{name: "same answer again changes nothing", tip: 100, hist: []HistoryItem{{a, 0}}, unspent: []UnspentItem{{a, 1, 0, 50_000}}, want: "", wantUTXOs: 1},
		{name: "history not matching the announced status is refused (wait for the newer one)", tip: 101, hist: []HistoryItem{{a, 101}}, unspent: []UnspentItem{{a, 1, 101, 50_000}}, announced: "bogus", wantErr: ErrStatusMismatch, wantUTXOs: 1},
		{name: "unspent output missing from history is refused", tip: 101, hist: []HistoryItem{{a, 101}}, unspent: []UnspentItem{{c, 0, 101, 1}}, wantErr: ErrBadHistory, wantUTXOs: 1},
		{name: "confirmed per the server: still unconfirmed until proven", tip: 101, hist: []HistoryItem{{a, 101}}, unspent: []UnspentItem{{a, 1, 101, 50_000}}, want: "", wantUTXOs: 1},
		{name: "proven: confirmed", tip: 102, hist: []HistoryItem{{a, 101}}, unspent: []UnspentItem{{a, 1, 101, 50_000}}, prove: []chainhash.Hash{a}, want: "confirmed a:1@101/2", wantUTXOs: 1},
		{name: "second funding found already confirmed", tip: 102, hist: []HistoryItem{{a, 101}, {b, 102}}, unspent: []UnspentItem{{a, 1, 101, 50_000}, {b, 0, 102, 7_000}}, prove: []chainhash.Hash{b}, want: "seen b:0@0, confirmed b:0@102/1", wantUTXOs: 2},
		{name: "spent in mempool (height -1: unconfirmed parent)", tip: 102, hist: []HistoryItem{{a, 101}, {b, 102}, {c, -1}}, unspent: []UnspentItem{{b, 0, 102, 7_000}}, want: "spent a:1", wantUTXOs: 1},
		{name: "spend's parent confirms: -1 becomes 0", tip: 102, hist: []HistoryItem{{a, 101}, {b, 102}, {c, 0}}, unspent: []UnspentItem{{b, 0, 102, 7_000}}, want: "", wantUTXOs: 1},
		{name: "funding vanished (reorg/eviction)", tip: 102, hist: []HistoryItem{{a, 101}, {c, 0}}, unspent: nil, want: "dropped b:0", wantUTXOs: 0},
	}
	tr := newTestTracker(t)
	s0 := sh(t, tr, 0, 0)
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if tr.Chain().Height() < st.tip {
				growTo(t, tr, tc, st.tip)
			}
			ann := st.announced
			if ann == "" {
				ann = status(t, st.hist)
			}
			up, err := tr.Apply(s0, ann, st.hist, st.unspent)
			if !errors.Is(err, st.wantErr) {
				t.Fatalf("err = %v, want %v", err, st.wantErr)
			}
			for _, id := range st.prove {
				x, _ := tr.Tx(id)
				u, err := tr.ApplyProof(id, tc.proof(x.Height, id))
				if err != nil {
					t.Fatal(err)
				}
				up.Merge(u)
			}
			if got := eventKinds(up.Events); got != st.want {
				t.Fatalf("events = %q, want %q", got, st.want)
			}
			if n := len(tr.UTXOs()); n != st.wantUTXOs {
				t.Fatalf("UTXOs = %d, want %d", n, st.wantUTXOs)
			}
			if err == nil {
				if sc, _ := tr.Script(s0); sc.Status != ann || !sc.Verified {
					t.Fatalf("script state %+v, want verified status %q", sc, ann)
				}
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
	scripts, utxos := tr.Scripts(), tr.UTXOs()

	t.Run("same wallet", func(t *testing.T) {
		tr2, _ := NewTracker(fakeScripts{branches: 2}, 20, NewHeaderChain(&chaincfg.RegressionNetParams, 0))
		if _, err := tr2.Restore(scripts, utxos, tr.Txs(), tr.hist, nil); err != nil {
			t.Fatal(err)
		}
		if fresh, _ := tr2.Extend(); len(fresh) != 0 {
			t.Fatalf("restored window not full: %d new", len(fresh))
		}
		if !reflect.DeepEqual(tr2.UTXOs(), utxos) || !tr2.UpToDate(sh(t, tr, 0, 19), status(t, h)) {
			t.Fatal("restored state differs")
		}

	})
	t.Run("other wallet", func(t *testing.T) {
		tr2, _ := NewTracker(otherScripts{}, 20, NewHeaderChain(&chaincfg.RegressionNetParams, 0))
		if _, err := tr2.Restore(scripts, utxos, tr.Txs(), tr.hist, nil); !errors.Is(err, ErrWalletMismatch) {
			t.Fatalf("err = %v, want ErrWalletMismatch", err)
		}
	})
	t.Run("tampered stored scripts", func(t *testing.T) {
		// A middle script whose pkScript no longer hashes to its scripthash: ErrStore.
		bad := append([]ScriptState(nil), scripts...)
		bad[5].PkScript = append([]byte{0x51}, bad[5].PkScript[1:]...)
		tr2, _ := NewTracker(fakeScripts{branches: 2}, 20, NewHeaderChain(&chaincfg.RegressionNetParams, 0))
		if _, err := tr2.Restore(bad, nil, nil, nil, nil); !errors.Is(err, ErrStore) {
			t.Fatalf("err = %v, want ErrStore", err)
		}
		// The last script of a branch replaced consistently (script and scripthash) by another
		// wallet's: caught by re-deriving it.
		bad = append([]ScriptState(nil), scripts...)
		last := -1
		for i, s := range bad {
			if s.Branch == 0 && (last < 0 || s.Index > bad[last].Index) {
				last = i
			}
		}
		other, _ := otherScripts{}.PkScript(0, bad[last].Index)
		bad[last].PkScript, bad[last].ScriptHash = other, ScriptHash(other)
		tr3, _ := NewTracker(fakeScripts{branches: 2}, 20, NewHeaderChain(&chaincfg.RegressionNetParams, 0))
		if _, err := tr3.Restore(bad, nil, nil, nil, nil); !errors.Is(err, ErrWalletMismatch) {
			t.Fatalf("err = %v, want ErrWalletMismatch", err)
		}
	})
	t.Run("gap in stored scripts", func(t *testing.T) {
		// Index 0 missing (a window stored in part): derived again and returned for storing.
		tr2, _ := NewTracker(fakeScripts{branches: 2}, 20, NewHeaderChain(&chaincfg.RegressionNetParams, 0))
		repaired, err := tr2.Restore(scripts[1:], nil, nil, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(repaired) != 1 || repaired[0].Branch != 0 || repaired[0].Index != 0 || repaired[0].Verified || !reflect.DeepEqual(tr2.Scripts()[0].PkScript, scripts[0].PkScript) {
			t.Fatalf("repaired = %+v, want script 0/0 unverified", repaired)
		}
		if fresh, _ := tr2.Extend(); len(fresh) != 0 {
			t.Fatalf("repaired window not full: %d new", len(fresh))
		}
		// The same gap in another wallet's store is still another wallet.
		tr3, _ := NewTracker(otherScripts{}, 20, NewHeaderChain(&chaincfg.RegressionNetParams, 0))
		if _, err := tr3.Restore(scripts[1:], nil, nil, nil, nil); !errors.Is(err, ErrWalletMismatch) {
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
