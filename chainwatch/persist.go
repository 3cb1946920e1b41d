package chainwatch

import (
	"context"
	"fmt"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/store"
)

func scriptToStore(s ScriptState) store.ChainwatchScript {
	return store.ChainwatchScript{Branch: s.Branch, Index: s.Index, ScriptHash: s.ScriptHash, PkScript: s.PkScript, Status: s.Status}
}

func utxoToStore(u UTXO) store.ChainwatchUTXO {
	return store.ChainwatchUTXO{
		ChainwatchOutPoint: outPointToStore(u.OutPoint),
		ValueSat:           int64(u.Value), PkScript: u.PkScript, Branch: u.Branch, Index: u.Index, Height: u.Height,
	}
}

func outPointToStore(op wire.OutPoint) store.ChainwatchOutPoint {
	return store.ChainwatchOutPoint{TxID: op.Hash.String(), Vout: op.Index}
}

func utxoFromStore(u store.ChainwatchUTXO) (UTXO, error) {
	h, err := chainhash.NewHashFromStr(u.TxID)
	if err != nil {
		return UTXO{}, fmt.Errorf("%w: stored UTXO txid %q: %w", ErrStore, u.TxID, err)
	}
	return UTXO{
		OutPoint: wire.OutPoint{Hash: *h, Index: u.Vout},
		Value:    btcutil.Amount(u.ValueSat), PkScript: u.PkScript, Branch: u.Branch, Index: u.Index, Height: u.Height,
	}, nil
}

func tipFromStore(t store.ChainwatchTip) (Tip, error) {
	h, err := chainhash.NewHashFromStr(t.Hash)
	if err != nil {
		return Tip{}, fmt.Errorf("%w: stored tip hash %q: %w", ErrStore, t.Hash, err)
	}
	return Tip{Height: t.Height, Hash: *h}, nil
}

// ReadStatus reads the persisted tip, UTXO set and balances without connecting anywhere (for
// `cosigner status`). It reflects the last state a Watcher verified and wrote. Errors wrap
// ErrStore.
func ReadStatus(ctx context.Context, db *store.DB) (Status, error) {
	st, err := db.LoadChainwatch(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("%w: %w", ErrStore, err)
	}
	var out Status
	if st.HasTip {
		if out.Tip, err = tipFromStore(st.Tip); err != nil {
			return Status{}, err
		}
		out.HasTip = true
	}
	for _, s := range st.Scripts {
		out.ScriptsTracked++
		if s.Status != "" {
			out.ScriptsUsed++
		}
	}
	for _, su := range st.UTXOs {
		u, err := utxoFromStore(su)
		if err != nil {
			return Status{}, err
		}
		out.UTXOs = append(out.UTXOs, u)
		if u.Height > 0 {
			out.Confirmed += u.Value
		} else {
			out.Unconfirmed += u.Value
		}
	}
	sortUTXOs(out.UTXOs)
	return out, nil
}
