package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ChainwatchScript is one row of chainwatch_scripts: a wallet script at (Branch, Index) of the
// descriptor, its Electrum scripthash (hex), and the last verified Electrum status ("" = null,
// no history).
type ChainwatchScript struct {
	Branch     uint32
	Index      uint32
	ScriptHash string
	PkScript   []byte
	Status     string
}

// ChainwatchOutPoint names an output: TxID is hex in display byte order.
type ChainwatchOutPoint struct {
	TxID string
	Vout uint32
}

// ChainwatchUTXO is one row of chainwatch_utxos. ValueSat is in satoshis; Height 0 = mempool.
type ChainwatchUTXO struct {
	ChainwatchOutPoint
	ValueSat int64
	PkScript []byte
	Branch   uint32
	Index    uint32
	Height   int32
}

// ChainwatchTip is the best header seen: Hash is hex in display byte order.
type ChainwatchTip struct {
	Height int32
	Hash   string
}

// ChainwatchState is everything chainwatch persists. HasTip is false before the first header.
type ChainwatchState struct {
	Scripts []ChainwatchScript // ordered by branch, index
	UTXOs   []ChainwatchUTXO   // ordered by height (mempool last), txid, vout
	Tip     ChainwatchTip
	HasTip  bool
}

// ChainwatchUpdate is one change to chainwatch's state, written in one transaction: PutScripts
// are upserted by (branch, index); RemoveUTXOs are deleted, then PutUTXOs are upserted by
// outpoint; Tip, if non-nil, replaces the tip.
type ChainwatchUpdate struct {
	PutScripts  []ChainwatchScript
	RemoveUTXOs []ChainwatchOutPoint
	PutUTXOs    []ChainwatchUTXO
	Tip         *ChainwatchTip
}

// Empty reports whether u changes nothing.
func (u ChainwatchUpdate) Empty() bool {
	return len(u.PutScripts) == 0 && len(u.RemoveUTXOs) == 0 && len(u.PutUTXOs) == 0 && u.Tip == nil
}

// LoadChainwatch reads chainwatch's persisted state (empty on a new database).
func (db *DB) LoadChainwatch(ctx context.Context) (ChainwatchState, error) {
	var st ChainwatchState
	rows, err := db.SQL.QueryContext(ctx, `SELECT branch, idx, scripthash, pk_script, status FROM chainwatch_scripts ORDER BY branch, idx`)
	if err != nil {
		return st, fmt.Errorf("store: load chainwatch scripts: %w", err)
	}
	for rows.Next() {
		var s ChainwatchScript
		var status sql.NullString
		if err := rows.Scan(&s.Branch, &s.Index, &s.ScriptHash, &s.PkScript, &status); err != nil {
			rows.Close()
			return st, fmt.Errorf("store: load chainwatch scripts: %w", err)
		}
		s.Status = status.String
		st.Scripts = append(st.Scripts, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("store: load chainwatch scripts: %w", err)
	}

	rows, err = db.SQL.QueryContext(ctx, `SELECT txid, vout, value_sat, pk_script, branch, idx, height FROM chainwatch_utxos
		ORDER BY CASE WHEN height <= 0 THEN 1 ELSE 0 END, height, txid, vout`)
	if err != nil {
		return st, fmt.Errorf("store: load chainwatch utxos: %w", err)
	}
	for rows.Next() {
		var u ChainwatchUTXO
		if err := rows.Scan(&u.TxID, &u.Vout, &u.ValueSat, &u.PkScript, &u.Branch, &u.Index, &u.Height); err != nil {
			rows.Close()
			return st, fmt.Errorf("store: load chainwatch utxos: %w", err)
		}
		st.UTXOs = append(st.UTXOs, u)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("store: load chainwatch utxos: %w", err)
	}

	err = db.SQL.QueryRowContext(ctx, `SELECT height, hash FROM chainwatch_tip WHERE id = 1`).Scan(&st.Tip.Height, &st.Tip.Hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("store: load chainwatch tip: %w", err)
	default:
		st.HasTip = true
	}
	return st, nil
}

// ApplyChainwatchUpdate writes u in one transaction: all of it or none of it.
func (db *DB) ApplyChainwatchUpdate(ctx context.Context, u ChainwatchUpdate) error {
	if u.Empty() {
		return nil
	}
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		for _, s := range u.PutScripts {
			var status any
			if s.Status != "" {
				status = s.Status
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO chainwatch_scripts(branch, idx, scripthash, pk_script, status) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT(branch, idx) DO UPDATE SET scripthash = excluded.scripthash, pk_script = excluded.pk_script, status = excluded.status`,
				s.Branch, s.Index, s.ScriptHash, s.PkScript, status); err != nil {
				return fmt.Errorf("script %d/%d: %w", s.Branch, s.Index, err)
			}
		}
		for _, op := range u.RemoveUTXOs {
			if _, err := tx.ExecContext(ctx, `DELETE FROM chainwatch_utxos WHERE txid = ? AND vout = ?`, op.TxID, op.Vout); err != nil {
				return fmt.Errorf("remove utxo %s:%d: %w", op.TxID, op.Vout, err)
			}
		}
		for _, o := range u.PutUTXOs {
			if _, err := tx.ExecContext(ctx, `INSERT INTO chainwatch_utxos(txid, vout, value_sat, pk_script, branch, idx, height) VALUES (?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT(txid, vout) DO UPDATE SET value_sat = excluded.value_sat, pk_script = excluded.pk_script,
				branch = excluded.branch, idx = excluded.idx, height = excluded.height`,
				o.TxID, o.Vout, o.ValueSat, o.PkScript, o.Branch, o.Index, o.Height); err != nil {
				return fmt.Errorf("put utxo %s:%d: %w", o.TxID, o.Vout, err)
			}
		}
		if u.Tip != nil {
			if _, err := tx.ExecContext(ctx, `INSERT INTO chainwatch_tip(id, height, hash) VALUES (1, ?, ?)
				ON CONFLICT(id) DO UPDATE SET height = excluded.height, hash = excluded.hash`, u.Tip.Height, u.Tip.Hash); err != nil {
				return fmt.Errorf("tip: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: chainwatch update: %w", err)
	}
	return nil
}
