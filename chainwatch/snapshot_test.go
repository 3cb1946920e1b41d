package chainwatch

import (
	"errors"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/store"
)

// TestSnapshotSpendableCoin: a stored snapshot answers SpendableCoin with the tracker's rule — a
// coinbase output only with CoinbaseMaturity confirmations at the stored tip (spendable in the
// next block), an unconfirmed coinbase output never, any other output at once (SpendableUTXOs
// alike) — while UTXOs still lists every stored output; a stored txid that does not parse is ErrStore.
func TestSnapshotSpendableCoin(t *testing.T) {
	cb := wire.OutPoint{Hash: chainhash.Hash{1}}
	reorged := wire.OutPoint{Hash: chainhash.Hash{2}}
	plain := wire.OutPoint{Hash: chainhash.Hash{3}, Index: 1}
	row := func(op wire.OutPoint, height int32, coinbase bool) store.ChainwatchUTXO {
		u := store.ChainwatchUTXO{ChainwatchOutPoint: store.ChainwatchOutPoint{TxID: op.Hash.String(), Vout: op.Index},
			ValueSat: 5_000, PkScript: []byte{0x51}, Branch: 0, Index: 4, Height: height, Coinbase: coinbase}
		if height > 0 {
			u.BlockHash = chainhash.Hash{8}.String()
		}
		return u
	}
	state := func(tip int32) store.ChainwatchState {
		return store.ChainwatchState{
			Scripts: []store.ChainwatchScript{{Branch: 0, Index: 4, PkScript: []byte{0x51}}},
			UTXOs:   []store.ChainwatchUTXO{row(cb, 10, true), row(reorged, 0, true), row(plain, 0, false)},
			Tip:     store.ChainwatchTip{Height: tip, Hash: chainhash.Hash{9}.String()}, HasTip: true,
		}
	}
	for _, c := range []struct {
		tip       int32
		spendable bool
	}{{10 + CoinbaseMaturity - 2, false}, {10 + CoinbaseMaturity - 1, true}} {
		s, err := SnapshotOf(state(c.tip))
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s.SpendableCoin(cb); ok != c.spendable {
			t.Errorf("tip %d: coinbase output mined at 10 spendable = %v, want %v", c.tip, ok, c.spendable)
		}
		if _, ok := s.SpendableCoin(reorged); ok {
			t.Errorf("tip %d: an unconfirmed coinbase output is spendable", c.tip)
		}
		if u, ok := s.SpendableCoin(plain); !ok || u.Value != 5_000 || u.Index != 4 {
			t.Errorf("tip %d: plain mempool output = %+v, %v", c.tip, u, ok)
		}
		if len(s.UTXOs) != 3 || s.Scripts() != 1 || s.Tip.Height != c.tip {
			t.Errorf("tip %d: %d UTXOs, %d scripts, tip %d", c.tip, len(s.UTXOs), s.Scripts(), s.Tip.Height)
		}
		if got := s.SpendableUTXOs(); c.spendable && (len(got) != 2 || got[0].OutPoint != cb || got[1].OutPoint != plain) ||
			!c.spendable && (len(got) != 1 || got[0].OutPoint != plain) {
			t.Errorf("tip %d: SpendableUTXOs = %+v", c.tip, got)
		}
		if b, i, ok := s.Lookup([]byte{0x51}); !ok || b != 0 || i != 4 {
			t.Errorf("Lookup = %d/%d %v", b, i, ok)
		}
	}
	bad := state(200)
	bad.UTXOs[0].TxID = "not hex"
	if _, err := SnapshotOf(bad); !errors.Is(err, ErrStore) {
		t.Fatalf("bad stored txid: %v", err)
	}
}
