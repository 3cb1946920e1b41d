package chainwatch

import (
	"bytes"
	"context"
	"encoding/json"
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
	su := store.ChainwatchUTXO{
		ChainwatchOutPoint: outPointToStore(u.OutPoint),
		ValueSat:           int64(u.Value), PkScript: u.PkScript, Branch: u.Branch, Index: u.Index, Height: u.Height,
		Coinbase: u.Coinbase,
	}
	if u.Height > 0 {
		su.BlockHash = u.BlockHash.String()
	}
	return su
}

func outPointToStore(op wire.OutPoint) store.ChainwatchOutPoint {
	return store.ChainwatchOutPoint{TxID: op.Hash.String(), Vout: op.Index}
}

func utxoFromStore(u store.ChainwatchUTXO) (UTXO, error) {
	h, err := chainhash.NewHashFromStr(u.TxID)
	if err != nil {
		return UTXO{}, fmt.Errorf("%w: stored UTXO txid %q: %w", ErrStore, u.TxID, err)
	}
	out := UTXO{
		OutPoint: wire.OutPoint{Hash: *h, Index: u.Vout},
		Value:    btcutil.Amount(u.ValueSat), PkScript: u.PkScript, Branch: u.Branch, Index: u.Index, Height: u.Height,
		Coinbase: u.Coinbase,
	}
	if u.BlockHash != "" {
		bh, err := chainhash.NewHashFromStr(u.BlockHash)
		if err != nil {
			return UTXO{}, fmt.Errorf("%w: stored UTXO block hash %q: %w", ErrStore, u.BlockHash, err)
		}
		out.BlockHash = *bh
	}
	return out, nil
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
			if !out.Spendable(u) {
				out.Immature += u.Value
			}
		} else {
			out.Unconfirmed += u.Value
		}
	}
	sortUTXOs(out.UTXOs)
	out.Headers = int32(len(st.Headers))
	out.Txs = len(st.Txs)
	for _, x := range st.Txs {
		if x.Height > 0 && !x.Verified {
			out.Unproven++
		}
	}
	out.UnackedEvents = len(st.Unacked)
	return out, nil
}

// Event kinds as stored in the outbox.
const (
	kindFundingSeen      = "funding_seen"
	kindFundingConfirmed = "funding_confirmed"
	kindFundingMatured   = "funding_matured"
	kindFundingImmature  = "funding_immature"
	kindSpent            = "spent"
	kindFundingDropped   = "funding_dropped"
	kindFundingReorged   = "funding_reorged"
	kindNewTip           = "new_tip"
)

// EventKind returns the stable name of ev's type ("funding_seen", "funding_confirmed",
// "funding_matured", "funding_immature", "spent", "funding_dropped", "funding_reorged",
// "new_tip").
func EventKind(ev Event) string {
	switch ev.(type) {
	case FundingSeen:
		return kindFundingSeen
	case FundingConfirmed:
		return kindFundingConfirmed
	case FundingMatured:
		return kindFundingMatured
	case FundingImmature:
		return kindFundingImmature
	case Spent:
		return kindSpent
	case FundingDropped:
		return kindFundingDropped
	case FundingReorged:
		return kindFundingReorged
	case NewTip:
		return kindNewTip
	}
	return "unknown"
}

func encodeEvent(ev Event) (store.ChainwatchEvent, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return store.ChainwatchEvent{}, fmt.Errorf("chainwatch: encode %T: %w", ev, err)
	}
	return store.ChainwatchEvent{Kind: EventKind(ev), Payload: b}, nil
}

func decodeEvent(e store.ChainwatchEvent) (Event, error) {
	var ev Event
	var err error
	switch e.Kind {
	case kindFundingSeen:
		ev, err = decodeAs[FundingSeen](e.Payload)
	case kindFundingConfirmed:
		ev, err = decodeAs[FundingConfirmed](e.Payload)
	case kindFundingMatured:
		ev, err = decodeAs[FundingMatured](e.Payload)
	case kindFundingImmature:
		ev, err = decodeAs[FundingImmature](e.Payload)
	case kindSpent:
		ev, err = decodeAs[Spent](e.Payload)
	case kindFundingDropped:
		ev, err = decodeAs[FundingDropped](e.Payload)
	case kindFundingReorged:
		ev, err = decodeAs[FundingReorged](e.Payload)
	case kindNewTip:
		ev, err = decodeAs[NewTip](e.Payload)
	default:
		return nil, fmt.Errorf("%w: stored event %d has kind %q", ErrStore, e.ID, e.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: stored event %d: %w", ErrStore, e.ID, err)
	}
	return withID(ev, e.ID), nil
}

// decodeAs decodes a stored event payload (JSON) into the value type T the channel carries.
func decodeAs[T Event](payload []byte) (Event, error) {
	var x T
	if err := json.Unmarshal(payload, &x); err != nil {
		return nil, err
	}
	return x, nil
}

func txToStore(x TxState) store.ChainwatchTx {
	st := store.ChainwatchTx{TxID: x.TxID.String(), Height: x.Height, Verified: x.Verified, Coinbase: x.Coinbase}
	if x.Verified {
		st.BlockHash = x.BlockHash.String()
	}
	return st
}

func txFromStore(x store.ChainwatchTx) (TxState, error) {
	id, err := chainhash.NewHashFromStr(x.TxID)
	if err != nil {
		return TxState{}, fmt.Errorf("%w: stored txid %q: %w", ErrStore, x.TxID, err)
	}
	out := TxState{TxID: *id, Height: x.Height, Verified: x.Verified, Coinbase: x.Coinbase}
	if x.Verified {
		bh, err := chainhash.NewHashFromStr(x.BlockHash)
		if err != nil {
			return TxState{}, fmt.Errorf("%w: stored block hash %q: %w", ErrStore, x.BlockHash, err)
		}
		out.BlockHash = *bh
	}
	return out, nil
}

// toStore converts a Tracker update plus its events into one store update.
func toStore(u Update) (store.ChainwatchUpdate, error) {
	var su store.ChainwatchUpdate
	for _, s := range u.Scripts {
		su.PutScripts = append(su.PutScripts, scriptToStore(s))
	}
	for _, op := range u.Remove {
		su.RemoveUTXOs = append(su.RemoveUTXOs, outPointToStore(op))
	}
	for _, x := range u.Put {
		su.PutUTXOs = append(su.PutUTXOs, utxoToStore(x))
	}
	for _, id := range u.RemoveTxs {
		su.RemoveTxs = append(su.RemoveTxs, id.String())
	}
	for _, x := range u.PutTxs {
		su.PutTxs = append(su.PutTxs, txToStore(x))
	}
	for _, tx := range u.RawTxs {
		id := tx.TxHash()
		var buf bytes.Buffer
		buf.Grow(tx.SerializeSize())
		if err := tx.Serialize(&buf); err != nil {
			return su, fmt.Errorf("chainwatch: serialize transaction %s: %w", id, err)
		}
		su.PutRawTxs = append(su.PutRawTxs, store.ChainwatchRawTx{TxID: id.String(), Raw: buf.Bytes()})
	}
	for sh, ids := range u.Histories {
		if su.Histories == nil {
			su.Histories = map[string][]string{}
		}
		strs := make([]string, len(ids))
		for i, id := range ids {
			strs[i] = id.String()
		}
		su.Histories[sh] = strs
	}
	if len(u.Headers) > 0 {
		su.HeadersFrom = u.HeadersFrom
		for _, h := range u.Headers {
			var buf bytes.Buffer
			if err := h.Serialize(&buf); err != nil {
				return su, fmt.Errorf("chainwatch: serialize header: %w", err)
			}
			su.Headers = append(su.Headers, buf.Bytes())
		}
		last := u.Headers[len(u.Headers)-1]
		su.Tip = &store.ChainwatchTip{Height: u.HeadersFrom + int32(len(u.Headers)) - 1, Hash: last.BlockHash().String()}
	}
	for _, ev := range u.Events {
		e, err := encodeEvent(ev)
		if err != nil {
			return su, err
		}
		su.Events = append(su.Events, e)
	}
	return su, nil
}
