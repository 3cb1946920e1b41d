package chainwatch

import (
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// TestProvenSpenders: a wallet coin's spender is reported only once its merkle proof checked
// against the header chain, with its block and the header's time; not while it is in the
// mempool or unproven, and no longer once a reorg took its block away. A signed legacy-style
// transaction (signature script set) is reported with its unsigned txid.
func TestProvenSpenders(t *testing.T) {
	tr := newTestTracker(t)
	s0, pk0 := sh(t, tr, 0, 0), pkAt(t, tr, 0, 0)
	fund := payTx(1, nil, wire.TxOut{Value: 50_000, PkScript: pk0})
	f := fund.TxHash()
	op := wire.OutPoint{Hash: f, Index: 0}
	spend := payTx(2, []wire.OutPoint{op}, wire.TxOut{Value: 40_000, PkScript: []byte{0x51}})
	spend.TxIn[0].SignatureScript = []byte{0x01, 0x02}
	sp := spend.TxHash()
	tc := &testChain{t: t, blocks: map[int32][]chainhash.Hash{101: {f}, 102: {sp}}}
	growTo(t, tr, tc, 102)
	apply := func(hist []HistoryItem, supply ...*wire.MsgTx) {
		t.Helper()
		if _, err := tr.ApplyTxs(s0, status(t, hist), hist, byID(supply...)); err != nil {
			t.Fatal(err)
		}
	}
	apply([]HistoryItem{{f, 101}, {sp, -1}}, fund, spend)
	if got := tr.provenSpenders([]wire.OutPoint{op}); len(got) != 0 {
		t.Fatalf("a mempool spend is reported as proven: %+v", got)
	}
	apply([]HistoryItem{{f, 101}, {sp, 102}})
	if got := tr.provenSpenders([]wire.OutPoint{op}); len(got) != 0 {
		t.Fatalf("a spend the server calls confirmed, without a proof, is reported: %+v", got)
	}
	if _, err := tr.ApplyProof(sp, tc.proof(102, sp)); err != nil {
		t.Fatal(err)
	}
	got := tr.provenSpenders([]wire.OutPoint{op, {Hash: f, Index: 9}})
	hdr, _ := tr.Chain().Header(102)
	ps, ok := got[op]
	if len(got) != 1 || !ok || ps.TxID != sp || ps.Height != 102 || ps.BlockHash != hdr.BlockHash() || !ps.BlockTime.Equal(hdr.Timestamp) {
		t.Fatalf("proven spenders = %+v", got)
	}
	unsigned := spend.Copy()
	unsigned.TxIn[0].SignatureScript = nil
	if ps.UnsignedTxID != unsigned.TxHash() || ps.UnsignedTxID == sp {
		t.Fatalf("unsigned txid %s, want %s", ps.UnsignedTxID, unsigned.TxHash())
	}
	// A reorg takes block 102 away: the spend is no longer proven.
	fork := &testChain{t: t, blocks: map[int32][]chainhash.Hash{101: {f}}, salt: 'f'}
	prev, _ := tr.Chain().Header(101)
	if _, err := tr.ConnectHeaders(102, fork.headers(prev, 102, 103)); err != nil {
		t.Fatal(err)
	}
	if got := tr.provenSpenders([]wire.OutPoint{op}); len(got) != 0 {
		t.Fatalf("after the reorg: %+v", got)
	}
}
