package store

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"testing"
)

func TestChainwatchRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := db.LoadChainwatch(ctx)
	if err != nil || len(st.Scripts) != 0 || len(st.UTXOs) != 0 || st.HasTip {
		t.Fatalf("empty state = %+v, %v", st, err)
	}
	s0 := ChainwatchScript{Branch: 0, Index: 0, ScriptHash: "aa", PkScript: []byte{0, 20, 1}, Status: "st0"}
	s1 := ChainwatchScript{Branch: 1, Index: 3, ScriptHash: "bb", PkScript: []byte{0, 20, 2}}
	u1 := ChainwatchUTXO{ChainwatchOutPoint{"t1", 0}, 5000, []byte{0, 20, 1}, 0, 0, 0, "", false}
	u2 := ChainwatchUTXO{ChainwatchOutPoint{"t2", 1}, 7000, []byte{0, 20, 1}, 0, 0, 101, "bb", true}
	tip := ChainwatchTip{Height: 101, Hash: "ff"}
	hdr := func(b byte) []byte { return bytes.Repeat([]byte{b}, 80) }
	ids, err := db.ApplyChainwatchUpdate(ctx, ChainwatchUpdate{
		PutScripts: []ChainwatchScript{s0, s1}, PutUTXOs: []ChainwatchUTXO{u1, u2}, Tip: &tip,
		PutTxs:      []ChainwatchTx{{TxID: "t1", Height: 0}, {TxID: "t2", Height: 101, Verified: true, BlockHash: "bb", Coinbase: true}},
		PutRawTxs:   []ChainwatchRawTx{{TxID: "t2", Raw: []byte{2, 2}}, {TxID: "t1", Raw: []byte{1}}},
		Histories:   map[string][]string{"aa": {"t2", "t1"}},
		HeadersFrom: 1, Headers: [][]byte{hdr(1), hdr(2), hdr(3)},
		Events: []ChainwatchEvent{{Kind: "seen", Payload: []byte(`{"a":1}`)}, {Kind: "tip", Payload: []byte(`{}`)}},
	})
	if err != nil || len(ids) != 2 || ids[1] != ids[0]+1 {
		t.Fatal(ids, err)
	}
	if err := db.AckChainwatchEvent(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := db.AckChainwatchEvent(ctx, ids[0]); err != nil {
		t.Fatalf("second ack: %v", err)
	}
	if all, err := db.ChainwatchEvents(ctx); err != nil || len(all) != 1 || all[0].ID != ids[1] {
		t.Fatalf("outbox after ack: %+v, %v", all, err)
	}
	if err := db.AckChainwatchEvent(ctx, 0); !errors.Is(err, ErrNoSuchEvent) {
		t.Fatalf("ack of id 0: %v", err)
	}
	if err := db.AckChainwatchEvent(ctx, 999); !errors.Is(err, ErrNoSuchEvent) {
		t.Fatalf("ack of an unknown id: %v", err)
	}
	// Headers with a gap are refused, atomically.
	if _, err := db.ApplyChainwatchUpdate(ctx, ChainwatchUpdate{HeadersFrom: 5, Headers: [][]byte{hdr(5)}, PutTxs: []ChainwatchTx{{TxID: "zz"}}}); err == nil {
		t.Fatal("headers with a gap accepted")
	}
	// Confirm u1, remove u2, change s0's status.
	u1.Height = 102
	s0.Status = "st1"
	tip = ChainwatchTip{Height: 102, Hash: "ee"}
	// ... remove t2, replace headers from 2 (a reorg), drop the history.
	if _, err := db.ApplyChainwatchUpdate(ctx, ChainwatchUpdate{PutScripts: []ChainwatchScript{s0}, RemoveUTXOs: []ChainwatchOutPoint{u2.ChainwatchOutPoint}, PutUTXOs: []ChainwatchUTXO{u1}, Tip: &tip,
		RemoveTxs: []string{"t2"}, Histories: map[string][]string{"aa": {"t1"}}, HeadersFrom: 2, Headers: [][]byte{hdr(9)}}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, err = Open(ctx, path) // reopen: migrations are not applied twice
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st, err = db.LoadChainwatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := ChainwatchState{Scripts: []ChainwatchScript{s0, s1}, UTXOs: []ChainwatchUTXO{u1}, Tip: tip, HasTip: true,
		Txs: []ChainwatchTx{{TxID: "t1"}}, RawTxs: []ChainwatchRawTx{{TxID: "t1", Raw: []byte{1}}},
		Histories: map[string][]string{"aa": {"t1"}}, Headers: [][]byte{hdr(1), hdr(9)}, HeadersFrom: 1,
		Unacked: []ChainwatchEvent{{ID: ids[1], Kind: "tip", Payload: []byte(`{}`)}}}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("state =\n%+v\nwant\n%+v", st, want)
	}
}

func TestChainwatchUpdateIsAtomic(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "c.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// A UTXO for a script that does not exist violates the foreign key: nothing is written.
	tip := ChainwatchTip{Height: 1, Hash: "aa"}
	_, err = db.ApplyChainwatchUpdate(ctx, ChainwatchUpdate{
		PutScripts: []ChainwatchScript{{Branch: 0, Index: 0, ScriptHash: "aa", PkScript: []byte{1}}},
		PutUTXOs:   []ChainwatchUTXO{{ChainwatchOutPoint: ChainwatchOutPoint{"t", 0}, ValueSat: 1, PkScript: []byte{1}, Branch: 9, Index: 9}},
		Tip:        &tip,
	})
	if err == nil {
		t.Fatal("update with a dangling UTXO succeeded")
	}
	st, err := db.LoadChainwatch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Scripts) != 0 || len(st.UTXOs) != 0 || st.HasTip {
		t.Fatalf("partial write: %+v", st)
	}
}

// TestChainwatchHeadersFromABase: a checkpointed chain stores its headers from its base (not
// height 1); they load with that HeadersFrom, and a later write must continue the run.
func TestChainwatchHeadersFromABase(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(t.TempDir(), "base.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	hdr := func(b byte) []byte { return bytes.Repeat([]byte{b}, 80) }
	if _, err := db.ApplyChainwatchUpdate(ctx, ChainwatchUpdate{HeadersFrom: 4032, Headers: [][]byte{hdr(1), hdr(2)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ApplyChainwatchUpdate(ctx, ChainwatchUpdate{HeadersFrom: 4035, Headers: [][]byte{hdr(4)}}); err == nil {
		t.Fatal("a gap after 4033 accepted")
	}
	if _, err := db.ApplyChainwatchUpdate(ctx, ChainwatchUpdate{HeadersFrom: 4034, Headers: [][]byte{hdr(3)}}); err != nil {
		t.Fatal(err)
	}
	st, err := db.LoadChainwatch(ctx)
	if err != nil || st.HeadersFrom != 4032 || len(st.Headers) != 3 || st.Headers[2][0] != 3 {
		t.Fatalf("loaded from %d, %d headers, %v", st.HeadersFrom, len(st.Headers), err)
	}
}
