package chainwatch

import (
	"errors"
	"reflect"
	"testing"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/store"
)

// TestEventRoundTrip: every event kind survives the outbox encoding with its id, so a
// redelivered event equals the one first delivered.
func TestEventRoundTrip(t *testing.T) {
	u := UTXO{OutPoint: wire.OutPoint{Hash: txid('a'), Index: 2}, Value: 12345, PkScript: []byte{0, 20, 1}, Branch: 1, Index: 7, Height: 101, BlockHash: chainhash.Hash{9}, Coinbase: true}
	by := txid('b')
	for _, ev := range []Event{
		FundingSeen{UTXO: u},
		FundingConfirmed{UTXO: u, Confs: 3},
		FundingMatured{UTXO: u, Tip: Tip{Height: 200, Hash: chainhash.Hash{8}}},
		FundingImmature{UTXO: u, Tip: Tip{Height: 199, Hash: chainhash.Hash{6}}},
		Spent{OutPoint: u.OutPoint, UTXO: u, SpentBy: &by},
		Spent{OutPoint: u.OutPoint, UTXO: u},
		FundingDropped{UTXO: u},
		FundingReorged{UTXO: u},
		NewTip{Tip: Tip{Height: 5, Hash: chainhash.Hash{7}}, Fork: 3, Reorged: true},
	} {
		e, err := encodeEvent(ev)
		if err != nil {
			t.Fatal(err)
		}
		e.ID = 42
		got, err := decodeEvent(e)
		if err != nil {
			t.Fatal(err)
		}
		if EventKind(ev) == "unknown" {
			t.Fatalf("%T has no stored kind", ev)
		}
		if want := withID(ev, 42); !reflect.DeepEqual(got, want) || got.EventID() != 42 {
			t.Fatalf("%s: got %#v, want %#v", e.Kind, got, want)
		}
	}
	for _, bad := range []store.ChainwatchEvent{{ID: 1, Kind: "nope", Payload: []byte("{}")}, {ID: 2, Kind: kindSpent, Payload: []byte("{")}} {
		if _, err := decodeEvent(bad); !errors.Is(err, ErrStore) {
			t.Fatalf("decode %+v: %v", bad, err)
		}
	}
}
