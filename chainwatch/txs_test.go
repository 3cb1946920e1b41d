package chainwatch

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/store"
)

// payTx returns a transaction spending ins and paying outs (script, value) in order; salt makes
// otherwise equal transactions differ.
func payTx(salt uint32, ins []wire.OutPoint, outs ...wire.TxOut) *wire.MsgTx {
	tx := wire.NewMsgTx(2)
	tx.LockTime = salt
	for _, op := range ins {
		tx.AddTxIn(wire.NewTxIn(&op, nil, nil))
	}
	if len(ins) == 0 { // a funding from outside the wallet
		tx.AddTxIn(wire.NewTxIn(&wire.OutPoint{Hash: txid('f'), Index: salt}, nil, nil))
	}
	for i := range outs {
		tx.AddTxOut(&outs[i])
	}
	return tx
}

func byID(txs ...*wire.MsgTx) map[chainhash.Hash]*wire.MsgTx {
	m := map[chainhash.Hash]*wire.MsgTx{}
	for _, tx := range txs {
		m[tx.TxHash()] = tx
	}
	return m
}

func pkAt(t *testing.T, tr *Tracker, branch, index uint32) []byte {
	t.Helper()
	pk, err := tr.src.PkScript(branch, index)
	if err != nil {
		t.Fatal(err)
	}
	return pk
}

// TestTrackerApplyTxs walks script 0/0 through funding, a spend in the mempool (to a script of
// the other branch and to a foreign script), RBF replacement of the spend and an eviction, with
// the UTXOs worked out from the transactions; it checks events, SpentBy, the UTXO values and
// which raw transactions the tracker holds.
func TestTrackerApplyTxs(t *testing.T) {
	tr := newTestTracker(t)
	s0, pk0 := sh(t, tr, 0, 0), pkAt(t, tr, 0, 0)
	s1, pk1 := sh(t, tr, 1, 0), pkAt(t, tr, 1, 0)
	foreign := []byte{0x51}
	fund := payTx(1, nil, wire.TxOut{Value: 50_000, PkScript: pk0}, wire.TxOut{Value: 9, PkScript: foreign}, wire.TxOut{Value: 7_000, PkScript: pk0})
	f := fund.TxHash()
	spend := payTx(2, []wire.OutPoint{{Hash: f, Index: 0}}, wire.TxOut{Value: 30_000, PkScript: foreign}, wire.TxOut{Value: 19_000, PkScript: pk1})
	sp := spend.TxHash()
	bump := payTx(3, []wire.OutPoint{{Hash: f, Index: 0}}, wire.TxOut{Value: 30_000, PkScript: foreign}, wire.TxOut{Value: 18_000, PkScript: pk1})
	bp := bump.TxHash()

	apply := func(sh string, hist []HistoryItem, supply ...*wire.MsgTx) (Update, error) {
		t.Helper()
		return tr.ApplyTxs(sh, status(t, hist), hist, byID(supply...))
	}
	utxos := func() map[wire.OutPoint]int64 {
		out := map[wire.OutPoint]int64{}
		for _, u := range tr.UTXOs() {
			out[u.OutPoint] = int64(u.Value)
		}
		return out
	}
	eq := func(got, want map[wire.OutPoint]int64) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("UTXOs = %v, want %v", got, want)
		}
		for op, v := range want {
			if got[op] != v {
				t.Fatalf("UTXOs = %v, want %v", got, want)
			}
		}
	}

	// A history whose transaction is neither held nor supplied is refused; nothing changes.
	if _, err := apply(s0, []HistoryItem{{f, 0}}); !errors.Is(err, ErrBadHistory) {
		t.Fatalf("missing tx: err = %v, want ErrBadHistory", err)
	}
	if got := tr.MissingTxs([]HistoryItem{{f, 0}, {f, 0}}); len(got) != 1 || got[0] != f {
		t.Fatalf("MissingTxs = %v, want [%s]", got, f)
	}
	// A supplied transaction that the history does not list is not taken.
	if _, err := apply(s0, []HistoryItem{{f, 0}}, spend); !errors.Is(err, ErrBadHistory) {
		t.Fatalf("unlisted tx supplied: err = %v, want ErrBadHistory", err)
	}

	up, err := apply(s0, []HistoryItem{{f, 0}}, fund)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventKinds(up.Events); got != "seen "+f.String()[:1]+":0@0, seen "+f.String()[:1]+":2@0" {
		t.Fatalf("funding events = %q", got)
	}
	if len(up.RawTxs) != 1 || up.RawTxs[0] != fund || !tr.HasTx(f) {
		t.Fatalf("raw txs held after funding: update %d, held %v", len(up.RawTxs), tr.HasTx(f))
	}
	eq(utxos(), map[wire.OutPoint]int64{{Hash: f, Index: 0}: 50_000, {Hash: f, Index: 2}: 7_000})

	// The spend: output 0 is spent (SpentBy = spend); the change pays 1/0.
	up, err = apply(s0, []HistoryItem{{f, 0}, {sp, -1}}, spend, fund /* held already: ignored */)
	if err != nil {
		t.Fatal(err)
	}
	if len(up.Events) != 1 {
		t.Fatalf("spend events = %q", eventKinds(up.Events))
	}
	if e, ok := up.Events[0].(Spent); !ok || e.OutPoint != (wire.OutPoint{Hash: f, Index: 0}) || e.SpentBy == nil || *e.SpentBy != sp {
		t.Fatalf("spend event = %+v, want Spent of %s:0 by %s", up.Events[0], f, sp)
	}
	if len(up.RawTxs) != 1 || up.RawTxs[0] != spend {
		t.Fatalf("raw txs of the spend update: %d", len(up.RawTxs))
	}
	if got := tr.MissingTxs([]HistoryItem{{sp, -1}}); len(got) != 0 {
		t.Fatalf("spend held by 0/0 still missing for 1/0: %v", got)
	}
	if _, err := apply(s1, []HistoryItem{{sp, -1}}); err != nil { // held: nothing to supply
		t.Fatal(err)
	}
	eq(utxos(), map[wire.OutPoint]int64{{Hash: f, Index: 2}: 7_000, {Hash: sp, Index: 1}: 19_000})

	// RBF: the bump replaces the spend in both histories; the spend's raw transaction goes.
	up, err = apply(s0, []HistoryItem{{f, 0}, {bp, -1}}, bump)
	if err != nil {
		t.Fatal(err)
	}
	if tr.HasTx(sp) == false {
		t.Fatal("spend dropped while 1/0's history still lists it")
	}
	up2, err := apply(s1, []HistoryItem{{bp, -1}})
	if err != nil {
		t.Fatal(err)
	}
	up.Merge(up2)
	if tr.HasTx(sp) || !tr.HasTx(bp) {
		t.Fatalf("after RBF: spend held %v, bump held %v", tr.HasTx(sp), tr.HasTx(bp))
	}
	if len(up.RemoveTxs) != 1 || up.RemoveTxs[0] != sp {
		t.Fatalf("RemoveTxs = %v, want [%s]", up.RemoveTxs, sp)
	}
	eq(utxos(), map[wire.OutPoint]int64{{Hash: f, Index: 2}: 7_000, {Hash: bp, Index: 1}: 18_000})

	// Eviction of everything: the UTXOs go, and so do the raw transactions.
	if _, err := apply(s0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := apply(s1, nil); err != nil {
		t.Fatal(err)
	}
	eq(utxos(), map[wire.OutPoint]int64{})
	if len(tr.raw) != 0 {
		t.Fatalf("%d raw txs still held with empty histories", len(tr.raw))
	}

	// A transaction supplied under another txid is refused.
	if _, err := tr.ApplyTxs(s0, status(t, []HistoryItem{{f, 0}}), []HistoryItem{{f, 0}}, map[chainhash.Hash]*wire.MsgTx{f: spend}); !errors.Is(err, ErrBadHistory) {
		t.Fatalf("tx under a wrong txid: err = %v, want ErrBadHistory", err)
	}

	// An output value out of range is refused.
	bad := payTx(4, nil, wire.TxOut{Value: -1, PkScript: pk0})
	if _, err := apply(s0, []HistoryItem{{bad.TxHash(), 0}}, bad); !errors.Is(err, ErrBadHistory) {
		t.Fatalf("negative value: err = %v, want ErrBadHistory", err)
	}
}

// FuzzTrackerApplyTxs builds a random set of transactions among three wallet scripts and a
// foreign one, applies each script's history (every transaction touching it) with ApplyTxs, and
// compares the UTXO set with a model: the outputs paying a wallet script that no transaction
// spends. Applying the same again must change nothing.
func FuzzTrackerApplyTxs(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Add([]byte{3, 0, 0, 9, 1, 1, 0, 2, 5, 5, 5, 1, 7, 3})
	f.Add([]byte{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		tr, err := NewTracker(fakeScripts{branches: 2}, 3, NewHeaderChain(paramsRegtest(), 0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tr.Extend(); err != nil {
			t.Fatal(err)
		}
		pks := [][]byte{pkAt(t, tr, 0, 0), pkAt(t, tr, 0, 1), pkAt(t, tr, 1, 0), {0x51}}
		var txs []*wire.MsgTx
		var outs []wire.OutPoint // every output made so far
		spent := map[wire.OutPoint]bool{}
		for len(data) >= 2 && len(txs) < 12 {
			nIn, nOut := int(data[0]%3), int(data[1]%3)+1
			data = data[2:]
			var ins []wire.OutPoint
			for i := 0; i < nIn && len(data) > 0 && len(outs) > 0; i++ {
				op := outs[int(data[0])%len(outs)]
				data = data[1:]
				if !spent[op] { // the mempool and the chain hold no conflicts
					spent[op] = true
					ins = append(ins, op)
				}
			}
			var tos []wire.TxOut
			for i := 0; i < nOut; i++ {
				k := 0
				if len(data) > 0 {
					k = int(data[0] % 4)
					data = data[1:]
				}
				tos = append(tos, wire.TxOut{Value: int64(1000 + len(txs)*10 + i), PkScript: pks[k]})
			}
			tx := payTx(uint32(len(txs)), ins, tos...)
			txs = append(txs, tx)
			for i := range tos {
				outs = append(outs, wire.OutPoint{Hash: tx.TxHash(), Index: uint32(i)})
			}
		}
		byTx := map[chainhash.Hash]*wire.MsgTx{}
		for _, tx := range txs {
			byTx[tx.TxHash()] = tx
		}
		for pass := 0; pass < 2; pass++ {
			for _, pk := range pks[:3] {
				var hist []HistoryItem
				for _, tx := range txs { // in creation order: parents first, all in the mempool
					touches := false
					for _, o := range tx.TxOut {
						touches = touches || string(o.PkScript) == string(pk)
					}
					for _, in := range tx.TxIn {
						if p := byTx[in.PreviousOutPoint.Hash]; p != nil && string(p.TxOut[in.PreviousOutPoint.Index].PkScript) == string(pk) {
							touches = true
						}
					}
					if touches {
						hist = append(hist, HistoryItem{TxHash: tx.TxHash(), Height: 0})
					}
				}
				sort.SliceStable(hist, func(i, j int) bool { return hist[i].TxHash.String() < hist[j].TxHash.String() })
				st, err := ElectrumStatus(hist)
				if err != nil {
					t.Fatal(err)
				}
				up, err := tr.ApplyTxs(ScriptHash(pk), st, hist, byTx)
				if err != nil {
					t.Fatal(err)
				}
				if pass == 1 && (len(up.Events) != 0 || len(up.Put)+len(up.Remove)+len(up.RawTxs) != 0) {
					t.Fatalf("second pass changed something: %+v", up)
				}
			}
		}
		want := map[wire.OutPoint]int64{}
		for _, op := range outs {
			o := byTx[op.Hash].TxOut[op.Index]
			if !spent[op] && string(o.PkScript) != string(pks[3]) {
				want[op] = o.Value
			}
		}
		got := tr.UTXOs()
		if len(got) != len(want) {
			t.Fatalf("%d UTXOs, model has %d", len(got), len(want))
		}
		for _, u := range got {
			if v, ok := want[u.OutPoint]; !ok || int64(u.Value) != v {
				t.Fatalf("UTXO %v = %d, model %d (listed %v)", u.OutPoint, u.Value, v, ok)
			}
		}
	})
}

// TestRawTxsAcrossRestart: the transactions a tracker takes are written with its update and
// loaded by the next Watcher, which then needs none of them fetched again; a stored raw
// transaction that does not hash to its txid stops the load with ErrStore.
func TestRawTxsAcrossRestart(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	newWatcher := func() *Watcher {
		w, err := New(Config{ServerURL: "tcp://127.0.0.1:1", Scripts: fakeScripts{branches: 2}, DB: db, Params: &chaincfg.RegressionNetParams, Lookahead: 20})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := newWatcher()
	if err := w.load(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := w.tr.Extend(); err != nil {
		t.Fatal(err)
	}
	pk := pkAt(t, w.tr, 0, 0)
	fund := payTx(1, nil, wire.TxOut{Value: 5_000, PkScript: pk})
	f := fund.TxHash()
	hist := []HistoryItem{{f, 0}}
	up, err := w.tr.ApplyTxs(ScriptHash(pk), status(t, hist), hist, byID(fund))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.commit(ctx, up); err != nil {
		t.Fatal(err)
	}

	w2 := newWatcher()
	if err := w2.load(ctx); err != nil {
		t.Fatal(err)
	}
	if !w2.tr.HasTx(f) || len(w2.tr.MissingTxs(hist)) != 0 {
		t.Fatalf("restarted tracker holds the funding tx: %v", w2.tr.HasTx(f))
	}
	if got := w2.UTXOs(); len(got) != 1 || got[0].OutPoint != (wire.OutPoint{Hash: f}) || got[0].Value != 5_000 {
		t.Fatalf("restored UTXOs = %+v", got)
	}

	if _, err := db.SQL.ExecContext(ctx, `UPDATE chainwatch_rawtxs SET raw = ?`, []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if err := newWatcher().load(ctx); !errors.Is(err, ErrStore) {
		t.Fatalf("load with a corrupt raw tx: %v, want ErrStore", err)
	}
}

// TestRunStopsOnCorruptStoredEvent: the unacknowledged events are delivered again in the
// background, but a stored event that does not decode still stops Run with ErrStore.
func TestRunStopsOnCorruptStoredEvent(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ApplyChainwatchUpdate(ctx, store.ChainwatchUpdate{Events: []store.ChainwatchEvent{{Kind: kindSpent, Payload: []byte("{")}}}); err != nil {
		t.Fatal(err)
	}
	w, err := New(Config{ServerURL: "tcp://127.0.0.1:1", Scripts: fakeScripts{branches: 2}, DB: db, Params: &chaincfg.RegressionNetParams,
		ReconnectMin: time.Millisecond, ReconnectMax: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range w.Events() {
		}
	}()
	if err := w.Run(ctx); !errors.Is(err, ErrStore) {
		t.Fatalf("Run = %v, want ErrStore", err)
	}
}
