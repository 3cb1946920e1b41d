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

// ChainwatchUTXO is one row of chainwatch_utxos. ValueSat is in satoshis; Height 0 = mempool or
// not yet proven; BlockHash (display hex, "" when unconfirmed) and Coinbase come from the SPV
// proof of its transaction.
type ChainwatchUTXO struct {
	ChainwatchOutPoint
	ValueSat  int64
	PkScript  []byte
	Branch    uint32
	Index     uint32
	Height    int32
	BlockHash string
	Coinbase  bool
}

// ChainwatchTx is one row of chainwatch_txs (see migration 0003).
type ChainwatchTx struct {
	TxID      string
	Height    int32
	Verified  bool
	BlockHash string
	Coinbase  bool
}

// ChainwatchRawTx is one row of chainwatch_rawtxs (migration 0010): a wallet transaction's
// serialization (TxID hex in display byte order).
type ChainwatchRawTx struct {
	TxID string
	Raw  []byte
}

// ChainwatchEvent is one row of the event outbox: ID is assigned on insert; Payload is JSON.
type ChainwatchEvent struct {
	ID      uint64
	Kind    string
	Payload []byte
}

// ChainwatchTip is the best header seen: Hash is hex in display byte order.
type ChainwatchTip struct {
	Height int32
	Hash   string
}

// ChainwatchState is everything chainwatch persists. HasTip is false before the first header.
type ChainwatchState struct {
	Scripts   []ChainwatchScript // ordered by branch, index
	UTXOs     []ChainwatchUTXO   // ordered by height (mempool last), txid, vout
	Tip       ChainwatchTip
	HasTip    bool
	Txs       []ChainwatchTx      // ordered by txid
	RawTxs    []ChainwatchRawTx   // serialized wallet transactions, ordered by txid
	Histories map[string][]string // scripthash → txids in the server's order
	Headers   [][]byte            // 80-byte headers from height HeadersFrom up, contiguous
	// HeadersFrom is the height of Headers[0]: 1 for a chain kept from genesis, or the first
	// height of the checkpointed period a checkpointed chain starts from.
	HeadersFrom int32
	Unacked     []ChainwatchEvent // events not acknowledged, by id
}

// ChainwatchUpdate is one change to chainwatch's state, written in one transaction: PutScripts
// are upserted by (branch, index); RemoveUTXOs are deleted, then PutUTXOs are upserted by
// outpoint; Tip, if non-nil, replaces the tip; RemoveTxs deleted (with their raw
// transactions), PutTxs upserted, PutRawTxs upserted; each entry of
// Histories replaces that script's history; Headers (80 bytes each) replace every stored header
// from height HeadersFrom up; Events are appended to the outbox.
type ChainwatchUpdate struct {
	PutScripts  []ChainwatchScript
	RemoveUTXOs []ChainwatchOutPoint
	PutUTXOs    []ChainwatchUTXO
	Tip         *ChainwatchTip
	RemoveTxs   []string
	PutTxs      []ChainwatchTx
	PutRawTxs   []ChainwatchRawTx
	Histories   map[string][]string
	HeadersFrom int32
	Headers     [][]byte
	Events      []ChainwatchEvent
}

// Empty reports whether u changes nothing.
func (u ChainwatchUpdate) Empty() bool {
	return len(u.PutScripts) == 0 && len(u.RemoveUTXOs) == 0 && len(u.PutUTXOs) == 0 && u.Tip == nil &&
		len(u.RemoveTxs) == 0 && len(u.PutTxs) == 0 && len(u.PutRawTxs) == 0 && len(u.Histories) == 0 && len(u.Headers) == 0 && len(u.Events) == 0
}

// LoadChainwatch reads chainwatch's persisted state (empty on a new database).
func (db *DB) LoadChainwatch(ctx context.Context) (ChainwatchState, error) {
	var st ChainwatchState
	if err := eachRow(ctx, db.SQL, "load chainwatch scripts", `SELECT branch, idx, scripthash, pk_script, status FROM chainwatch_scripts ORDER BY branch, idx`, func(rows *sql.Rows) error {
		var s ChainwatchScript
		var status sql.NullString
		if err := rows.Scan(&s.Branch, &s.Index, &s.ScriptHash, &s.PkScript, &status); err != nil {
			return err
		}
		s.Status = status.String
		st.Scripts = append(st.Scripts, s)
		return nil
	}); err != nil {
		return st, err
	}

	if err := eachRow(ctx, db.SQL, "load chainwatch utxos", `SELECT txid, vout, value_sat, pk_script, branch, idx, height, block_hash, coinbase FROM chainwatch_utxos
		ORDER BY CASE WHEN height <= 0 THEN 1 ELSE 0 END, height, txid, vout`, func(rows *sql.Rows) error {
		var u ChainwatchUTXO
		if err := rows.Scan(&u.TxID, &u.Vout, &u.ValueSat, &u.PkScript, &u.Branch, &u.Index, &u.Height, &u.BlockHash, &u.Coinbase); err != nil {
			return err
		}
		st.UTXOs = append(st.UTXOs, u)
		return nil
	}); err != nil {
		return st, err
	}

	err := db.SQL.QueryRowContext(ctx, `SELECT height, hash FROM chainwatch_tip WHERE id = 1`).Scan(&st.Tip.Height, &st.Tip.Hash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return st, fmt.Errorf("store: load chainwatch tip: %w", err)
	default:
		st.HasTip = true
	}
	if err := db.loadChainwatchExtra(ctx, &st); err != nil {
		return st, err
	}
	return st, nil
}

func (db *DB) loadChainwatchExtra(ctx context.Context, st *ChainwatchState) error {
	if err := eachRow(ctx, db.SQL, "load chainwatch txs", `SELECT txid, height, verified, block_hash, coinbase FROM chainwatch_txs ORDER BY txid`, func(rows *sql.Rows) error {
		var x ChainwatchTx
		if err := rows.Scan(&x.TxID, &x.Height, &x.Verified, &x.BlockHash, &x.Coinbase); err != nil {
			return err
		}
		st.Txs = append(st.Txs, x)
		return nil
	}); err != nil {
		return err
	}

	if err := eachRow(ctx, db.SQL, "load chainwatch raw txs", `SELECT txid, raw FROM chainwatch_rawtxs ORDER BY txid`, func(rows *sql.Rows) error {
		var x ChainwatchRawTx
		if err := rows.Scan(&x.TxID, &x.Raw); err != nil {
			return err
		}
		st.RawTxs = append(st.RawTxs, x)
		return nil
	}); err != nil {
		return err
	}

	st.Histories = map[string][]string{}
	if err := eachRow(ctx, db.SQL, "load chainwatch history", `SELECT scripthash, txid FROM chainwatch_history ORDER BY scripthash, pos`, func(rows *sql.Rows) error {
		var sh, id string
		if err := rows.Scan(&sh, &id); err != nil {
			return err
		}
		st.Histories[sh] = append(st.Histories[sh], id)
		return nil
	}); err != nil {
		return err
	}

	if err := eachRow(ctx, db.SQL, "load chainwatch headers", `SELECT height, header FROM chainwatch_headers ORDER BY height`, func(rows *sql.Rows) error {
		var h int32
		var b []byte
		if err := rows.Scan(&h, &b); err != nil {
			return err
		}
		if len(st.Headers) == 0 {
			st.HeadersFrom = h
		} else if int(h) != int(st.HeadersFrom)+len(st.Headers) {
			return fmt.Errorf("gap before height %d", h)
		}
		st.Headers = append(st.Headers, b)
		return nil
	}); err != nil {
		return err
	}

	evs, err := db.ChainwatchEvents(ctx)
	if err != nil {
		return err
	}
	st.Unacked = evs
	return nil
}

// ChainwatchEvents returns the outbox's events (the unacknowledged ones) by id.
func (db *DB) ChainwatchEvents(ctx context.Context) ([]ChainwatchEvent, error) {
	var out []ChainwatchEvent
	if err := eachRow(ctx, db.SQL, "load chainwatch events", `SELECT id, kind, payload FROM chainwatch_events ORDER BY id`, func(rows *sql.Rows) error {
		var e ChainwatchEvent
		var payload string
		if err := rows.Scan(&e.ID, &e.Kind, &payload); err != nil {
			return err
		}
		e.Payload = []byte(payload)
		out = append(out, e)
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// ErrNoSuchEvent is returned by AckChainwatchEvent for an id that is not in the outbox.
var ErrNoSuchEvent = errors.New("store: no such chainwatch event")

// AckChainwatchEvent acknowledges event id: the row leaves the outbox (AUTOINCREMENT never
// hands an id out twice, so the table stays small and ids stay unique). Acknowledging again is
// fine. It returns ErrNoSuchEvent for an id never stored.
func (db *DB) AckChainwatchEvent(ctx context.Context, id uint64) error {
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM chainwatch_events WHERE id = ?`, id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n > 0 {
			return nil
		}
		var seq uint64
		err = tx.QueryRowContext(ctx, `SELECT seq FROM sqlite_sequence WHERE name = 'chainwatch_events'`).Scan(&seq)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if id == 0 || id > seq {
			return fmt.Errorf("%w: %d", ErrNoSuchEvent, id)
		}
		return nil // acknowledged before
	})
	if err != nil && !errors.Is(err, ErrNoSuchEvent) {
		return fmt.Errorf("store: ack chainwatch event %d: %w", id, err)
	}
	return err
}

// ApplyChainwatchUpdate writes u in one transaction: all of it or none of it. It returns the ids
// given to u.Events, in order.
func (db *DB) ApplyChainwatchUpdate(ctx context.Context, u ChainwatchUpdate) ([]uint64, error) {
	if u.Empty() {
		return nil, nil
	}
	var ids []uint64
	err := db.Tx(ctx, func(tx *sql.Tx) error {
		w := &updateWriter{ctx: ctx, tx: tx, stmts: map[string]*sql.Stmt{}}
		defer w.close()
		for _, step := range []func(ChainwatchUpdate) error{w.putScripts, w.putUTXOs, w.putTip, w.putTxs, w.putHistories, w.putHeaders} {
			if err := step(u); err != nil {
				return err
			}
		}
		var err error
		ids, err = w.appendEvents(u.Events)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: chainwatch update: %w", err)
	}
	return ids, nil
}

// updateWriter writes one ChainwatchUpdate inside tx, with one prepared statement per query for
// the whole transaction: an update of a large wallet writes thousands of rows, and preparing
// the same SQL for each was a large part of its cost.
type updateWriter struct {
	ctx   context.Context
	tx    *sql.Tx
	stmts map[string]*sql.Stmt
}

func (w *updateWriter) exec(query string, args ...any) (sql.Result, error) {
	st, ok := w.stmts[query]
	if !ok {
		var err error
		if st, err = w.tx.PrepareContext(w.ctx, query); err != nil {
			return nil, err
		}
		w.stmts[query] = st
	}
	return st.ExecContext(w.ctx, args...)
}

func (w *updateWriter) close() {
	for _, st := range w.stmts {
		st.Close()
	}
}

// putScripts upserts u.PutScripts by (branch, index).
func (w *updateWriter) putScripts(u ChainwatchUpdate) error {
	for _, s := range u.PutScripts {
		var status any
		if s.Status != "" {
			status = s.Status
		}
		if _, err := w.exec(`INSERT INTO chainwatch_scripts(branch, idx, scripthash, pk_script, status) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(branch, idx) DO UPDATE SET scripthash = excluded.scripthash, pk_script = excluded.pk_script, status = excluded.status`,
			s.Branch, s.Index, s.ScriptHash, s.PkScript, status); err != nil {
			return fmt.Errorf("script %d/%d: %w", s.Branch, s.Index, err)
		}
	}
	return nil
}

// putUTXOs deletes u.RemoveUTXOs, then upserts u.PutUTXOs by outpoint.
func (w *updateWriter) putUTXOs(u ChainwatchUpdate) error {
	for _, op := range u.RemoveUTXOs {
		if _, err := w.exec(`DELETE FROM chainwatch_utxos WHERE txid = ? AND vout = ?`, op.TxID, op.Vout); err != nil {
			return fmt.Errorf("remove utxo %s:%d: %w", op.TxID, op.Vout, err)
		}
	}
	for _, o := range u.PutUTXOs {
		if _, err := w.exec(`INSERT INTO chainwatch_utxos(txid, vout, value_sat, pk_script, branch, idx, height, block_hash, coinbase) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(txid, vout) DO UPDATE SET value_sat = excluded.value_sat, pk_script = excluded.pk_script,
			branch = excluded.branch, idx = excluded.idx, height = excluded.height, block_hash = excluded.block_hash, coinbase = excluded.coinbase`,
			o.TxID, o.Vout, o.ValueSat, o.PkScript, o.Branch, o.Index, o.Height, o.BlockHash, o.Coinbase); err != nil {
			return fmt.Errorf("put utxo %s:%d: %w", o.TxID, o.Vout, err)
		}
	}
	return nil
}

// putTip replaces the tip when u.Tip is set.
func (w *updateWriter) putTip(u ChainwatchUpdate) error {
	if u.Tip == nil {
		return nil
	}
	if _, err := w.exec(`INSERT INTO chainwatch_tip(id, height, hash) VALUES (1, ?, ?)
		ON CONFLICT(id) DO UPDATE SET height = excluded.height, hash = excluded.hash`, u.Tip.Height, u.Tip.Hash); err != nil {
		return fmt.Errorf("tip: %w", err)
	}
	return nil
}

// putTxs deletes u.RemoveTxs (with their raw transactions), then upserts u.PutTxs and
// u.PutRawTxs by txid.
func (w *updateWriter) putTxs(u ChainwatchUpdate) error {
	for _, id := range u.RemoveTxs {
		if _, err := w.exec(`DELETE FROM chainwatch_txs WHERE txid = ?`, id); err != nil {
			return fmt.Errorf("remove tx %s: %w", id, err)
		}
		if _, err := w.exec(`DELETE FROM chainwatch_rawtxs WHERE txid = ?`, id); err != nil {
			return fmt.Errorf("remove raw tx %s: %w", id, err)
		}
	}
	for _, x := range u.PutTxs {
		if _, err := w.exec(`INSERT INTO chainwatch_txs(txid, height, verified, block_hash, coinbase) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT(txid) DO UPDATE SET height = excluded.height, verified = excluded.verified,
			block_hash = excluded.block_hash, coinbase = excluded.coinbase`, x.TxID, x.Height, x.Verified, x.BlockHash, x.Coinbase); err != nil {
			return fmt.Errorf("put tx %s: %w", x.TxID, err)
		}
	}
	for _, x := range u.PutRawTxs {
		if _, err := w.exec(`INSERT INTO chainwatch_rawtxs(txid, raw) VALUES (?, ?) ON CONFLICT(txid) DO UPDATE SET raw = excluded.raw`, x.TxID, x.Raw); err != nil {
			return fmt.Errorf("put raw tx %s: %w", x.TxID, err)
		}
	}
	return nil
}

// putHistories replaces the history of each script of u.Histories.
func (w *updateWriter) putHistories(u ChainwatchUpdate) error {
	for sh, hist := range u.Histories {
		if _, err := w.exec(`DELETE FROM chainwatch_history WHERE scripthash = ?`, sh); err != nil {
			return fmt.Errorf("history %s: %w", sh, err)
		}
		for i, id := range hist {
			if _, err := w.exec(`INSERT INTO chainwatch_history(scripthash, pos, txid) VALUES (?, ?, ?)`, sh, i, id); err != nil {
				return fmt.Errorf("history %s: %w", sh, err)
			}
		}
	}
	return nil
}

// putHeaders replaces every stored header from u.HeadersFrom up with u.Headers. Errors: genesis
// (height 0) asked to be stored; headers that would leave a gap after the stored run.
func (w *updateWriter) putHeaders(u ChainwatchUpdate) error {
	if len(u.Headers) == 0 {
		return nil
	}
	if u.HeadersFrom < 1 {
		return fmt.Errorf("headers from height %d: genesis is not stored", u.HeadersFrom)
	}
	if _, err := w.exec(`DELETE FROM chainwatch_headers WHERE height >= ?`, u.HeadersFrom); err != nil {
		return fmt.Errorf("headers: %w", err)
	}
	// The first headers may start anywhere (a checkpointed chain starts at its base); later
	// ones must continue the stored run.
	var n, top int32
	if err := w.tx.QueryRowContext(w.ctx, `SELECT count(*), coalesce(max(height), 0) FROM chainwatch_headers`).Scan(&n, &top); err != nil {
		return fmt.Errorf("headers: %w", err)
	}
	if n > 0 && top != u.HeadersFrom-1 {
		return fmt.Errorf("headers from height %d would leave a gap after %d", u.HeadersFrom, top)
	}
	for i, h := range u.Headers {
		if _, err := w.exec(`INSERT INTO chainwatch_headers(height, header) VALUES (?, ?)`, u.HeadersFrom+int32(i), h); err != nil {
			return fmt.Errorf("header %d: %w", u.HeadersFrom+int32(i), err)
		}
	}
	return nil
}

// appendEvents appends events to the outbox and returns the ids they were given, in order.
func (w *updateWriter) appendEvents(events []ChainwatchEvent) ([]uint64, error) {
	var ids []uint64
	for _, e := range events {
		res, err := w.exec(`INSERT INTO chainwatch_events(kind, payload) VALUES (?, ?)`, e.Kind, string(e.Payload))
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", e.Kind, err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", e.Kind, err)
		}
		ids = append(ids, uint64(id))
	}
	return ids, nil
}
