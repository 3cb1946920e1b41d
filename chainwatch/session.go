package chainwatch

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

const (
	subscribeBatch   = 100 // scripthashes per blockchain.scripthash.subscribe batch
	fetchBatch       = 50  // scripts per get_history+listunspent batch
	maxSpenderLookup = 10  // transactions fetched to find who spent one UTXO
	retryMin         = 500 * time.Millisecond
	retryMax         = 30 * time.Second
)

// syncState is one session's work queue. It is owned by the session goroutine.
type syncState struct {
	pending    map[string]string // scripthash → announced status to fetch against ("" = null)
	resub      map[string]bool   // refresh the announced status with the fetch (after a mismatch)
	retry      map[string]*retryInfo
	proofTried map[chainhash.Hash]int32 // txid → header height at the last failed proof attempt
	proofRetry time.Time                // when failed proofs are tried again without a new header
	foreign    *foreignSession          // RegisterConfirmationsNtfn/RegisterSpendNtfn watches
}

// proofRetryAfter is how long a failed merkle proof waits before it is asked again when no new
// header comes first (a server still busy with a reorg may answer for the old block).
const proofRetryAfter = 10 * time.Second

type retryInfo struct {
	announced string
	attempt   int
	due       time.Time
}

type headerJSON struct {
	Hex    string `json:"hex"`
	Height int32  `json:"height"`
}

type historyJSON struct {
	TxHash string `json:"tx_hash"`
	Height int32  `json:"height"`
}

type unspentJSON struct {
	TxHash string `json:"tx_hash"`
	TxPos  uint32 `json:"tx_pos"`
	Height int32  `json:"height"`
	Value  int64  `json:"value"`
}

// session runs one connection: a server from the pool (handshake done), network check, tip, subscriptions,
// the sync to a verified state, then following notifications until the connection or ctx ends.
// synced reports whether the initial sync completed on this connection.
func (w *Watcher) session(ctx context.Context) (synced bool, err error) {
	c, err := w.pool.Connect(ctx)
	if err != nil {
		return false, err
	}
	w.mu.Lock()
	w.client = c
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.client = nil
		w.mu.Unlock()
		c.Close()
	}()
	w.log.Info("connected to Electrum server", "server", c.Server(), "software", c.ServerSoftware, "protocol", c.Protocol)

	if err := w.checkNetwork(ctx, c); err != nil {
		return false, err
	}
	var hdr headerJSON
	if err := c.Call(ctx, "blockchain.headers.subscribe", nil, &hdr); err != nil {
		return false, fmt.Errorf("chainwatch: blockchain.headers.subscribe: %w", err)
	}
	if err := w.syncHeaders(ctx, c, hdr); err != nil {
		return false, err
	}

	s := &syncState{pending: map[string]string{}, resub: map[string]bool{}, retry: map[string]*retryInfo{}, proofTried: map[chainhash.Hash]int32{}, foreign: newForeignSession()}
	defer w.outstanding.Store(0)
	w.mu.RLock()
	known := w.tr.Scripts()
	w.mu.RUnlock()
	var upd Update
	if err := w.subscribe(ctx, c, s, known, &upd); err != nil {
		return false, err
	}
	if err := w.extend(ctx, c, s, &upd); err != nil {
		return false, err
	}
	if err := w.commit(ctx, upd); err != nil {
		return false, err
	}

	notifs := c.Notifications()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
	drain: // take what has arrived, so a burst is fetched in few batches
		for {
			select {
			case n, ok := <-notifs:
				if !ok {
					return synced, connErr(c)
				}
				if err := w.handleNotification(ctx, c, s, n); err != nil {
					return synced, err
				}
			default:
				break drain
			}
		}
		w.outstanding.Store(int64(len(s.pending) + len(s.retry)))
		if len(s.pending) > 0 {
			if err := w.fetch(ctx, c, s); err != nil {
				return synced, err
			}
			continue
		}
		if err := w.prove(ctx, c, s); err != nil {
			return synced, err
		}
		if err := w.serviceForeign(ctx, c, s.foreign); err != nil {
			return synced, err
		}
		if !synced && len(s.retry) == 0 {
			synced = true
			w.markReady()
		}
		var retryC <-chan time.Time
		if due, ok := nextDue(s); ok {
			timer.Reset(max(time.Until(due), 0))
			retryC = timer.C
		}
		select {
		case <-ctx.Done():
			return synced, ctx.Err()
		case n, ok := <-notifs:
			if !ok {
				return synced, connErr(c)
			}
			if err := w.handleNotification(ctx, c, s, n); err != nil {
				return synced, err
			}
		case <-w.reg.wake:
		case <-retryC:
			now := time.Now()
			if !s.proofRetry.IsZero() && !s.proofRetry.After(now) {
				clear(s.proofTried)
				s.proofRetry = time.Time{}
			}
			for sh, r := range s.retry {
				if !r.due.After(now) {
					s.pending[sh] = r.announced
					s.resub[sh] = true
				}
			}
		}
	}
}

func connErr(c *electrum.Client) error {
	if err := c.Err(); err != nil {
		return err
	}
	return electrum.ErrClosed
}

func nextDue(s *syncState) (time.Time, bool) {
	due := s.proofRetry
	for sh, r := range s.retry {
		if _, queued := s.pending[sh]; queued {
			continue
		}
		if due.IsZero() || r.due.Before(due) {
			due = r.due
		}
	}
	return due, !due.IsZero()
}

// checkNetwork compares the server's genesis header (blockchain.block.header 0) with Params.
func (w *Watcher) checkNetwork(ctx context.Context, c *electrum.Client) error {
	var hexHdr string
	if err := c.Call(ctx, "blockchain.block.header", []any{0}, &hexHdr); err != nil {
		return fmt.Errorf("chainwatch: blockchain.block.header 0: %w", err)
	}
	h, err := parseHeader(hexHdr)
	if err != nil {
		return err
	}
	if got := h.BlockHash(); got != *w.cfg.Params.GenesisHash {
		return fmt.Errorf("%w: genesis %s, want %s (%s)", ErrWrongNetwork, got, w.cfg.Params.GenesisHash, w.cfg.Params.Name)
	}
	return nil
}

func parseHeader(s string) (wire.BlockHeader, error) {
	var h wire.BlockHeader
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != 80 {
		return h, fmt.Errorf("%w: header %q is not 80 bytes of hex", ErrBadHistory, truncate(s))
	}
	if err := h.Deserialize(bytes.NewReader(b)); err != nil {
		return h, fmt.Errorf("%w: header: %w", ErrBadHistory, err)
	}
	return h, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// blockHeadersJSON is blockchain.block.headers' answer: "hex" (protocol 1.4) or "headers"
// (1.6), count headers in all.
type blockHeadersJSON struct {
	Count   int      `json:"count"`
	Hex     string   `json:"hex"`
	Headers []string `json:"headers"`
	Max     int      `json:"max"`
}

func (b blockHeadersJSON) parse() ([]wire.BlockHeader, error) {
	var raws []string
	switch {
	case len(b.Headers) > 0:
		raws = b.Headers
	default:
		if len(b.Hex) != b.Count*160 {
			return nil, fmt.Errorf("%w: block.headers: %d hex chars for %d headers", ErrBadHeader, len(b.Hex), b.Count)
		}
		for i := 0; i < b.Count; i++ {
			raws = append(raws, b.Hex[i*160:(i+1)*160])
		}
	}
	if len(raws) != b.Count {
		return nil, fmt.Errorf("%w: block.headers: %d headers, count says %d", ErrBadHeader, len(raws), b.Count)
	}
	out := make([]wire.BlockHeader, len(raws))
	for i, r := range raws {
		h, err := parseHeader(r)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

const maxHeadersPerCall = 2016 // ElectrumX's cap for blockchain.block.headers

// syncHeaders brings the header chain to the server's tip hj (from blockchain.headers.subscribe):
// it fetches the missing headers with blockchain.block.headers in chunks and connects them; a
// tip that skips heights is filled in, and one that does not connect (a reorg) makes it fetch
// from further back, doubling the distance, until the headers link to ours (the fork point) or
// the reorg safety limit is passed (ErrReorgTooDeep, which ends the session). Each chunk is
// committed with its events (FundingReorged for outputs above a fork, NewTip).
func (w *Watcher) syncHeaders(ctx context.Context, c *electrum.Client, hj headerJSON) error {
	tipHdr, err := parseHeader(hj.Hex)
	if err != nil {
		return err
	}
	if hj.Height < 1 {
		return fmt.Errorf("%w: tip height %d", ErrBadHeader, hj.Height)
	}
	target, tipHash := hj.Height, tipHdr.BlockHash()
	w.mu.RLock()
	limit := w.tr.Chain().limit
	w.mu.RUnlock()
	back := int32(0)
	for {
		w.mu.RLock()
		ours := w.tr.Chain().Height()
		have, _ := w.tr.Chain().Hash(target)
		w.mu.RUnlock()
		if ours >= target && have == tipHash {
			return nil
		}
		from := max(min(ours+1, target)-back, 1)
		reorg := false
		for from <= target {
			n := min(target-from+1, maxHeadersPerCall)
			var res blockHeadersJSON
			if err := c.Call(ctx, "blockchain.block.headers", []any{from, n}, &res); err != nil {
				return fmt.Errorf("chainwatch: blockchain.block.headers %d+%d: %w", from, n, err)
			}
			hdrs, err := res.parse()
			if err != nil {
				return err
			}
			if len(hdrs) == 0 {
				return fmt.Errorf("%w: blockchain.block.headers %d+%d returned none", ErrBadHeader, from, n)
			}
			w.mu.Lock()
			up, err := w.tr.ConnectHeaders(from, hdrs)
			w.mu.Unlock()
			if errors.Is(err, ErrHeaderNoConnect) {
				back = max(1, back*2)
				if back > limit+1 {
					return fmt.Errorf("%w: no fork point within %d headers of %d", ErrReorgTooDeep, limit, target)
				}
				reorg = true
				break
			}
			if err != nil {
				return err
			}
			// During a long catch-up only the last chunk's NewTip is published (and a reorg's).
			more := from+int32(len(hdrs)) <= target
			evs := up.Events[:0:0]
			for _, ev := range up.Events {
				if nt, ok := ev.(NewTip); ok {
					if nt.Reorged {
						w.log.Warn("reorg", "fork", nt.Fork, "tip", nt.Tip.Height, "hash", nt.Tip.Hash)
					} else if more {
						continue
					}
				}
				evs = append(evs, ev)
			}
			up.Events = evs
			if err := w.commit(ctx, up); err != nil {
				return err
			}
			from += int32(len(hdrs))
		}
		if !reorg {
			w.mu.RLock()
			have, _ = w.tr.Chain().Hash(target)
			w.mu.RUnlock()
			if have != tipHash {
				// The server's chain moved while we fetched; its next notification brings us on.
				w.log.Debug("tip changed during header sync", "target", target)
				return nil
			}
			return nil
		}
	}
}

const proofBatch = 50 // get_merkle requests per batch

// prove fetches blockchain.transaction.get_merkle for the wallet transactions that need a
// proof and applies them. A transaction whose proof fails (the server's error, or
// ErrMerkleProof) stays unconfirmed in the published view and is tried again once the header
// chain has moved (next block or reorg) or after proofRetryAfter; Health.SPVFailures counts the
// rejected proofs.
func (w *Watcher) prove(ctx context.Context, c *electrum.Client, s *syncState) error {
	w.mu.RLock()
	need := w.tr.ProofNeeded()
	height := w.tr.Chain().Height()
	w.mu.RUnlock()
	var todo []TxState
	for _, x := range need {
		if tried, ok := s.proofTried[x.TxID]; ok && tried == height {
			continue
		}
		todo = append(todo, x)
	}
	for start := 0; start < len(todo); start += proofBatch {
		chunk := todo[start:min(start+proofBatch, len(todo))]
		type merkleJSON struct {
			BlockHeight int32    `json:"block_height"`
			Merkle      []string `json:"merkle"`
			Pos         uint32   `json:"pos"`
		}
		res := make([]merkleJSON, len(chunk))
		calls := make([]*electrum.Call, len(chunk))
		for i, x := range chunk {
			calls[i] = &electrum.Call{Method: "blockchain.transaction.get_merkle", Params: []any{x.TxID.String(), x.Height}, Result: &res[i]}
		}
		if err := c.Batch(ctx, calls); err != nil {
			return fmt.Errorf("chainwatch: get_merkle: %w", err)
		}
		var up Update
		for i, x := range chunk {
			err := calls[i].Err
			if err == nil {
				p := MerkleProof{Height: res[i].BlockHeight, Pos: res[i].Pos}
				for _, m := range res[i].Merkle {
					h, perr := chainhash.NewHashFromStr(m)
					if perr != nil || len(m) != 64 {
						err = fmt.Errorf("%w: branch hash %q", ErrMerkleProof, truncate(m))
						break
					}
					p.Branch = append(p.Branch, *h)
				}
				if err == nil {
					w.mu.Lock()
					var u Update
					u, err = w.tr.ApplyProof(x.TxID, p)
					w.mu.Unlock()
					up.Merge(u)
				}
			}
			if err != nil {
				s.proofTried[x.TxID] = height
				if s.proofRetry.IsZero() {
					s.proofRetry = time.Now().Add(proofRetryAfter)
				}
				if errors.Is(err, ErrMerkleProof) {
					w.spvFailures.Add(1)
				}
				w.setErr(err)
				w.log.Warn("transaction not proven; it stays unconfirmed", "txid", x.TxID, "height", x.Height, "err", err)
				continue
			}
			delete(s.proofTried, x.TxID)
		}
		if err := w.commit(ctx, up); err != nil {
			return err
		}
	}
	return nil
}

func (w *Watcher) handleNotification(ctx context.Context, c *electrum.Client, s *syncState, n electrum.Notification) error {
	switch n.Method {
	case "blockchain.headers.subscribe":
		var ps []headerJSON
		if err := json.Unmarshal(n.Params, &ps); err != nil || len(ps) == 0 {
			return fmt.Errorf("%w: headers notification %s", ErrBadHistory, truncate(string(n.Params)))
		}
		return w.syncHeaders(ctx, c, ps[len(ps)-1])
	case "blockchain.scripthash.subscribe":
		var ps []*string
		if err := json.Unmarshal(n.Params, &ps); err != nil || len(ps) != 2 || ps[0] == nil {
			return fmt.Errorf("%w: scripthash notification %s", ErrBadHistory, truncate(string(n.Params)))
		}
		sh, status := *ps[0], deref(ps[1])
		w.mu.RLock()
		_, tracked := w.tr.Script(sh)
		upToDate := w.tr.UpToDate(sh, status)
		w.mu.RUnlock()
		if !tracked {
			if !w.foreignNotified(s.foreign, sh) {
				w.log.Debug("notification for an untracked scripthash", "scripthash", sh)
			}
			return nil
		}
		delete(s.retry, sh) // a newer announcement supersedes a pending retry
		if upToDate {
			delete(s.pending, sh)
			return nil
		}
		s.pending[sh] = status
		delete(s.resub, sh)
	default:
		w.log.Debug("ignoring notification", "method", n.Method)
	}
	return nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// subscribe sends blockchain.scripthash.subscribe for scripts in batches. A null status on a
// script not yet verified is applied at once (null status = empty history); a status equal to
// the verified one needs nothing; anything else is queued for fetching.
func (w *Watcher) subscribe(ctx context.Context, c *electrum.Client, s *syncState, scripts []ScriptState, upd *Update) error {
	for start := 0; start < len(scripts); {
		if err := w.pace.wait(ctx); err != nil {
			return err
		}
		chunk := scripts[start:min(start+w.pace.size(subscribeBatch), len(scripts))]
		start += len(chunk)
		calls := make([]*electrum.Call, len(chunk))
		results := make([]*string, len(chunk))
		for i, sc := range chunk {
			calls[i] = &electrum.Call{Method: "blockchain.scripthash.subscribe", Params: []any{sc.ScriptHash}, Result: &results[i]}
		}
		err := c.Batch(ctx, calls)
		w.pace.observe(batchThrottled(err, calls))
		if err != nil {
			return fmt.Errorf("chainwatch: subscribe: %w", err)
		}
		for i, sc := range chunk {
			if calls[i].Err != nil {
				return fmt.Errorf("chainwatch: subscribe %d/%d: %w", sc.Branch, sc.Index, calls[i].Err)
			}
			status := deref(results[i])
			w.mu.Lock()
			if w.tr.UpToDate(sc.ScriptHash, status) {
				w.mu.Unlock()
				if status != "" {
					w.skipped.Add(1)
				}
				continue
			}
			if status != "" {
				w.mu.Unlock()
				s.pending[sc.ScriptHash] = status
				continue
			}
			u, err := w.tr.Apply(sc.ScriptHash, "", nil, nil)
			w.mu.Unlock()
			if err != nil {
				return err
			}
			upd.Merge(u)
		}
	}
	return nil
}

// extend grows the lookahead windows (cascading is driven by the fetch loop: each applied
// history may raise a branch's highest used index) and subscribes the new scripts.
func (w *Watcher) extend(ctx context.Context, c *electrum.Client, s *syncState, upd *Update) error {
	w.mu.Lock()
	fresh, err := w.tr.Extend()
	w.mu.Unlock()
	if err != nil {
		return err
	}
	if len(fresh) == 0 {
		return nil
	}
	w.log.Debug("lookahead window extended", "new_scripts", len(fresh))
	return w.subscribe(ctx, c, s, fresh, upd)
}

// commit writes up (state and events) in one transaction, gives the events their stored ids,
// publishes them and updates the RegisterConf/RegisterSpend subscribers.
func (w *Watcher) commit(ctx context.Context, up Update) error {
	if up.Empty() {
		return nil
	}
	su, err := toStore(up)
	if err != nil {
		return err
	}
	ids, err := w.cfg.DB.ApplyChainwatchUpdate(ctx, su)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	evs := make([]Event, len(up.Events))
	for i, ev := range up.Events {
		evs[i] = withID(ev, ids[i])
	}
	if !w.emit(ctx, evs) {
		return ctx.Err()
	}
	w.dispatch(evs)
	return nil
}

// fetch takes up to fetchBatch queued scripts, fetches blockchain.scripthash.get_history and
// .listunspent for each in one batch (with .subscribe first for scripts being retried), verifies
// and applies them, grows the windows, writes everything in one transaction and publishes the
// events.
func (w *Watcher) fetch(ctx context.Context, c *electrum.Client, s *syncState) error {
	if err := w.pace.wait(ctx); err != nil {
		return err
	}
	size := w.pace.size(fetchBatch)
	shs := make([]string, 0, size)
	for sh := range s.pending {
		shs = append(shs, sh)
		if len(shs) == size {
			break
		}
	}
	sort.Strings(shs)
	type job struct {
		sh        string
		announced string
		sub       *electrum.Call
		status    *string
		hist      []historyJSON
		unspent   []unspentJSON
		histCall  *electrum.Call
		utxoCall  *electrum.Call
	}
	jobs := make([]*job, len(shs))
	var calls []*electrum.Call
	for i, sh := range shs {
		j := &job{sh: sh, announced: s.pending[sh]}
		if s.resub[sh] {
			j.sub = &electrum.Call{Method: "blockchain.scripthash.subscribe", Params: []any{sh}, Result: &j.status}
			calls = append(calls, j.sub)
		}
		j.histCall = &electrum.Call{Method: "blockchain.scripthash.get_history", Params: []any{sh}, Result: &j.hist}
		j.utxoCall = &electrum.Call{Method: "blockchain.scripthash.listunspent", Params: []any{sh}, Result: &j.unspent}
		calls = append(calls, j.histCall, j.utxoCall)
		jobs[i] = j
		delete(s.pending, sh)
		delete(s.resub, sh)
	}
	w.fetches.Add(uint64(len(jobs)))
	err := c.Batch(ctx, calls)
	w.pace.observe(batchThrottled(err, calls))
	if err != nil {
		for _, j := range jobs { // fetched again by the next session
			s.pending[j.sh] = j.announced
		}
		return fmt.Errorf("chainwatch: fetch histories: %w", err)
	}

	var upd Update
	histories := map[string][]HistoryItem{}
	for _, j := range jobs {
		announced := j.announced
		if j.sub != nil && j.sub.Err == nil {
			announced = deref(j.status)
		}
		hist, unspent, err := parseFetch(j.histCall, j.utxoCall, j.hist, j.unspent)
		var u Update
		if err == nil {
			w.mu.Lock()
			u, err = w.tr.Apply(j.sh, announced, hist, unspent)
			w.mu.Unlock()
		}
		if err != nil {
			r := s.retry[j.sh]
			if r == nil {
				r = &retryInfo{}
				s.retry[j.sh] = r
			}
			r.announced = announced
			delay := min(retryMin<<min(r.attempt, 10), retryMax)
			r.attempt++
			r.due = time.Now().Add(delay)
			w.setErr(err)
			w.log.Warn("script history not applied; will refetch", "scripthash", j.sh, "attempt", r.attempt, "in", delay, "err", err)
			continue
		}
		delete(s.retry, j.sh)
		histories[j.sh] = hist
		upd.Merge(u)
	}
	if err := w.extend(ctx, c, s, &upd); err != nil {
		return err
	}
	w.findSpenders(ctx, c, upd.Events, histories)
	return w.commit(ctx, upd)
}

// parseFetch turns the JSON answers into typed items (ErrBadHistory or the server's error).
func parseFetch(hc, uc *electrum.Call, hist []historyJSON, unspent []unspentJSON) ([]HistoryItem, []UnspentItem, error) {
	if hc.Err != nil {
		return nil, nil, hc.Err
	}
	if uc.Err != nil {
		return nil, nil, uc.Err
	}
	hs := make([]HistoryItem, len(hist))
	for i, h := range hist {
		txid, err := chainhash.NewHashFromStr(h.TxHash)
		if err != nil || len(h.TxHash) != 64 {
			return nil, nil, fmt.Errorf("%w: history tx_hash %q", ErrBadHistory, truncate(h.TxHash))
		}
		hs[i] = HistoryItem{TxHash: *txid, Height: h.Height}
	}
	us := make([]UnspentItem, len(unspent))
	for i, u := range unspent {
		txid, err := chainhash.NewHashFromStr(u.TxHash)
		if err != nil || len(u.TxHash) != 64 {
			return nil, nil, fmt.Errorf("%w: unspent tx_hash %q", ErrBadHistory, truncate(u.TxHash))
		}
		if u.Value < 0 || u.Value > btcutil.MaxSatoshi {
			return nil, nil, fmt.Errorf("%w: unspent value %d", ErrBadHistory, u.Value)
		}
		us[i] = UnspentItem{TxHash: *txid, TxPos: u.TxPos, Height: u.Height, Value: btcutil.Amount(u.Value)}
	}
	return hs, us, nil
}

// findSpenders fills Spent.SpentBy, best effort: it fetches (blockchain.transaction.get) the
// transactions of the script's history that could have spent the output and looks for the one
// whose input names it. Failures leave SpentBy nil.
func (w *Watcher) findSpenders(ctx context.Context, c *electrum.Client, evs []Event, histories map[string][]HistoryItem) {
	txs := map[chainhash.Hash]*wire.MsgTx{}
	for i, ev := range evs {
		sp, ok := ev.(Spent)
		if !ok {
			continue
		}
		hist := histories[ScriptHash(sp.UTXO.PkScript)]
		var want []chainhash.Hash
		for k := len(hist) - 1; k >= 0 && len(want) < maxSpenderLookup; k-- {
			h := hist[k]
			if h.TxHash == sp.OutPoint.Hash || (h.Height > 0 && h.Height < sp.UTXO.Height) {
				continue
			}
			if _, have := txs[h.TxHash]; !have {
				want = append(want, h.TxHash)
			}
		}
		if len(want) > 0 {
			calls := make([]*electrum.Call, len(want))
			raws := make([]string, len(want))
			for k, id := range want {
				calls[k] = &electrum.Call{Method: "blockchain.transaction.get", Params: []any{id.String()}, Result: &raws[k]}
			}
			if err := c.Batch(ctx, calls); err != nil {
				w.log.Debug("could not fetch candidate spenders", "err", err)
				continue
			}
			for k, id := range want {
				if calls[k].Err != nil {
					continue
				}
				b, err := hex.DecodeString(raws[k])
				if err != nil {
					continue
				}
				var tx wire.MsgTx
				if err := tx.Deserialize(bytes.NewReader(b)); err != nil || tx.TxHash() != id {
					continue
				}
				txs[id] = &tx
			}
		}
		for id, tx := range txs {
			for _, in := range tx.TxIn {
				if in.PreviousOutPoint == sp.OutPoint {
					id := id
					sp.SpentBy = &id
					evs[i] = sp
				}
			}
		}
	}
}

// Broadcast sends tx with blockchain.transaction.broadcast (electrum.Client.BroadcastTransaction)
// and returns its txid, checked against the server's answer. Errors: ErrNotConnected; a
// *electrum.BroadcastError when the server refuses it — errors.Is ErrBroadcastRejected and the
// recognised reason (electrum.ErrTxAlreadyKnown, ErrTxConflict, ErrFeeTooLow, ErrNonStandard,
// ErrMissingInputs), errors.As *electrum.ServerError for the node's words; transport errors.
func (w *Watcher) Broadcast(ctx context.Context, tx *wire.MsgTx) (chainhash.Hash, error) {
	w.mu.RLock()
	c := w.client
	w.mu.RUnlock()
	txid := tx.TxHash()
	if c == nil {
		return chainhash.Hash{}, fmt.Errorf("chainwatch: broadcast %s: %w", txid, ErrNotConnected)
	}
	var buf bytes.Buffer
	if err := tx.Serialize(&buf); err != nil {
		return chainhash.Hash{}, fmt.Errorf("chainwatch: broadcast %s: serialize: %w", txid, err)
	}
	if _, err := c.BroadcastTransaction(ctx, buf.Bytes()); err != nil {
		return chainhash.Hash{}, fmt.Errorf("chainwatch: %w", err)
	}
	w.log.Info("transaction broadcast", "txid", txid)
	return txid, nil
}

// EstimateFee asks the connected server for a feerate to confirm within blocks
// (blockchain.estimatefee through electrum.Client.EstimateFee: sat/vB, never below the minimum
// relay feerate, the fallback when the server has no plausible estimate). Not connected, it
// returns the fallback (electrum.DefaultFallbackFeeRate) with Reason ErrNotConnected.
func (w *Watcher) EstimateFee(ctx context.Context, blocks int) electrum.FeeEstimate {
	w.mu.RLock()
	c := w.client
	w.mu.RUnlock()
	if c == nil {
		return electrum.FeeEstimate{Rate: electrum.DefaultFallbackFeeRate, Reason: ErrNotConnected}
	}
	return c.EstimateFee(ctx, blocks, 0, 0)
}
