package synthchain

import (
	"testing"

	"github.com/btcsuite/btcd/blockchain"
	"github.com/btcsuite/btcd/wire"
)

// TestChainShape: headers link, meet their target, keep Bits across retargets (every period
// spans exactly the target timespan), and a placed transaction's merkle proof leads to its
// block's root.
func TestChainShape(t *testing.T) {
	tx := wire.NewMsgTx(2)
	tx.AddTxIn(&wire.TxIn{PreviousOutPoint: wire.OutPoint{Index: 7}})
	tx.AddTxOut(&wire.TxOut{Value: 1000, PkScript: []byte{0, 20, 1, 2, 3}})
	c, err := New(2*Interval+10, map[int32][]*wire.MsgTx{300: {tx}})
	if err != nil {
		t.Fatal(err)
	}
	hs := c.Headers(0, 3*Interval)
	if len(hs) != int(c.Height)+1 || hs[0].BlockHash() != *c.Params.GenesisHash {
		t.Fatalf("%d headers, genesis %s", len(hs), hs[0].BlockHash())
	}
	for i := 1; i < len(hs); i++ {
		hash := hs[i].BlockHash()
		if hs[i].PrevBlock != hs[i-1].BlockHash() || blockchain.HashToBig(&hash).Cmp(blockchain.CompactToBig(hs[i].Bits)) > 0 || hashOf(&hs[i]) != hash {
			t.Fatalf("header %d", i)
		}
	}
	span := hs[Interval-1].Timestamp.Sub(hs[0].Timestamp)
	if span != c.Params.TargetTimespan {
		t.Fatalf("period span %v", span)
	}
	if got := c.Headers(Interval+5, 3); len(got) != 3 || got[0] != hs[Interval+5] {
		t.Fatal("Headers from the middle of a period")
	}
	branch, pos, ok := c.Proof(300, tx.TxHash())
	if !ok || pos != 1 || len(branch) != 1 {
		t.Fatalf("proof %v %d %v", branch, pos, ok)
	}
	if root := pair(branch[0], tx.TxHash()); root != hs[300].MerkleRoot {
		t.Fatal("proof does not reach the root")
	}
	if cps := c.Checkpoints(c.Height); len(cps) != 2 || cps[1][0] != hs[2*Interval-1].BlockHash().String() {
		t.Fatalf("checkpoints %v", cps)
	}
}
