package chainwatch

import (
	"context"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/btcsuite/btcd/chaincfg"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/store"
)

// TestRestartSameAsRunning: the tracker keeps only a slim view in memory (the server's and the
// published UTXOs as value and script, a reference count per transaction); a watcher restarted
// from the store must hold the same UTXOs, transactions and scripts as the one that wrote it,
// and answer the same next changes (payments, spends, a dropped transaction, a payment to a
// script with several outputs) with the same events and state.
func TestRestartSameAsRunning(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(t.TempDir(), "w.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	newWatcher := func() *Watcher {
		w, err := New(Config{ServerURL: "tcp://127.0.0.1:1", Scripts: fakeScripts{branches: 2}, DB: db, Params: &chaincfg.RegressionNetParams, Lookahead: 20, EventBuffer: 1 << 16})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.load(ctx); err != nil {
			t.Fatal(err)
		}
		return w
	}
	running := newWatcher()
	fresh, err := running.tr.Extend()
	if err != nil {
		t.Fatal(err)
	}
	if err := running.commit(ctx, Update{Scripts: fresh}); err != nil {
		t.Fatal(err)
	}

	// The model: every transaction made, and each script's history (in the mempool: height 0).
	rng := rand.New(rand.NewPCG(1, 2))
	all := map[chainhash.Hash]*wire.MsgTx{}
	hist := map[string][]HistoryItem{}
	var unspent []wire.OutPoint
	pkOf := map[wire.OutPoint][]byte{}
	salt := uint32(0)
	// step makes one transaction (spending up to two UTXOs, paying up to three scripts, two
	// outputs to the same script sometimes) and applies the histories it changes to every
	// tracker in trs, returning each tracker's update.
	step := func(trs ...*Tracker) []Update {
		salt++
		var ins []wire.OutPoint
		for range rng.IntN(3) {
			if len(unspent) == 0 {
				break
			}
			i := rng.IntN(len(unspent))
			ins = append(ins, unspent[i])
			unspent = append(unspent[:i], unspent[i+1:]...)
		}
		var outs []wire.TxOut
		for range 1 + rng.IntN(3) {
			pk := pkAt(t, trs[0], uint32(rng.IntN(2)), uint32(rng.IntN(10)))
			outs = append(outs, wire.TxOut{Value: int64(1_000 + rng.IntN(1_000_000)), PkScript: pk})
			if rng.IntN(4) == 0 {
				outs = append(outs, wire.TxOut{Value: 777, PkScript: pk})
			}
		}
		tx := payTx(salt, ins, outs...)
		id := tx.TxHash()
		all[id] = tx
		touched := map[string][]byte{}
		for _, op := range ins {
			touched[string(pkOf[op])] = pkOf[op]
		}
		for i, o := range outs {
			op := wire.OutPoint{Hash: id, Index: uint32(i)}
			pkOf[op] = o.PkScript
			unspent = append(unspent, op)
			touched[string(o.PkScript)] = o.PkScript
		}
		ups := make([]Update, len(trs))
		for _, pk := range touched {
			sh := ScriptHash(pk)
			hist[sh] = append(hist[sh], HistoryItem{TxHash: id, Height: 0})
			for i, tr := range trs {
				u, err := tr.ApplyTxs(sh, status(t, hist[sh]), hist[sh], all)
				if err != nil {
					t.Fatal(err)
				}
				ups[i].Merge(u)
			}
		}
		return ups
	}
	for range 60 {
		if err := running.commit(ctx, step(running.tr)[0]); err != nil {
			t.Fatal(err)
		}
	}
	// A payment dropped from the mempool (its script's history loses it).
	var dropSH string
	for sh, h := range hist {
		if len(h) > 1 {
			dropSH = sh
			break
		}
	}
	h := hist[dropSH]
	last := h[len(h)-1]
	hist[dropSH] = h[:len(h)-1]
	up, err := running.tr.ApplyTxs(dropSH, status(t, hist[dropSH]), hist[dropSH], all)
	if err != nil {
		t.Fatal(err)
	}
	if err := running.commit(ctx, up); err != nil {
		t.Fatal(err)
	}
	hist[dropSH] = append(hist[dropSH], last) // it comes back below

	restarted := newWatcher()
	same := func(when string) {
		t.Helper()
		if a, b := running.UTXOs(), restarted.UTXOs(); !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: UTXOs differ:\nrunning   %+v\nrestarted %+v", when, a, b)
		}
		if a, b := running.tr.Txs(), restarted.tr.Txs(); !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: transactions differ", when)
		}
		// A script stored before its first fetch loads as verified with the null status (load).
		norm := func(ss []ScriptState) []ScriptState {
			for i := range ss {
				ss[i].Verified = ss[i].Verified || ss[i].Status == ""
			}
			return ss
		}
		if a, b := norm(running.tr.Scripts()), norm(restarted.tr.Scripts()); !reflect.DeepEqual(a, b) {
			t.Fatalf("%s: scripts differ", when)
		}
		for op, pk := range pkOf {
			ab, ai, aok := running.Lookup(pk)
			bb, bi, bok := restarted.Lookup(pk)
			if ab != bb || ai != bi || aok != bok {
				t.Fatalf("%s: Lookup of %v's script differs", when, op)
			}
		}
	}
	same("after restart")
	if len(running.UTXOs()) == 0 {
		t.Fatal("the scenario left no UTXO")
	}
	up, err = running.tr.ApplyTxs(dropSH, status(t, hist[dropSH]), hist[dropSH], all)
	if err != nil {
		t.Fatal(err)
	}
	up2, err := restarted.tr.ApplyTxs(dropSH, status(t, hist[dropSH]), hist[dropSH], all)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(up.Events, up2.Events) || len(up.Events) == 0 {
		t.Fatalf("the dropped payment's return: events %+v, restarted %+v", up.Events, up2.Events)
	}
	// A transaction of the first ones, listed by several scripts' histories, leaves them one
	// script at a time (as a reorg or replacement is fetched): it stays a wallet transaction
	// until the last history drops it, in both trackers.
	var multi chainhash.Hash
	var listing []string
	for id := range all {
		var shs []string
		for sh, h := range hist {
			for _, it := range h {
				if it.TxHash == id {
					shs = append(shs, sh)
				}
			}
		}
		if len(shs) >= 2 && (len(listing) == 0 || id.String() < multi.String()) {
			multi, listing = id, shs
		}
	}
	if len(listing) < 2 {
		t.Fatal("the scenario made no transaction listed by two scripts")
	}
	for i, sh := range listing {
		var kept []HistoryItem
		for _, it := range hist[sh] {
			if it.TxHash != multi {
				kept = append(kept, it)
			}
		}
		hist[sh] = kept
		a, err := running.tr.ApplyTxs(sh, status(t, kept), kept, all)
		if err != nil {
			t.Fatal(err)
		}
		b, err := restarted.tr.ApplyTxs(sh, status(t, kept), kept, all)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a.Events, b.Events) || !reflect.DeepEqual(a.RemoveTxs, b.RemoveTxs) {
			t.Fatalf("%s left history %d of %d: events %+v removed %v, restarted %+v removed %v", multi, i+1, len(listing), a.Events, a.RemoveTxs, b.Events, b.RemoveTxs)
		}
		if _, held := restarted.tr.Tx(multi); held != (i < len(listing)-1) {
			t.Fatalf("%s left history %d of %d: still a wallet transaction: %v", multi, i+1, len(listing), held)
		}
	}
	same("after a transaction left its histories")
	for i := range 40 {
		ups := step(running.tr, restarted.tr)
		if !reflect.DeepEqual(ups[0].Events, ups[1].Events) || !reflect.DeepEqual(ups[0].Put, ups[1].Put) || !reflect.DeepEqual(ups[0].Remove, ups[1].Remove) {
			t.Fatalf("step %d after restart: events %+v, restarted %+v", i, ups[0].Events, ups[1].Events)
		}
	}
	same("after 40 more transactions")
}
