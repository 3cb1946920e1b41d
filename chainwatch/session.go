package chainwatch

import (
	"bytes"
	"cmp"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

const (
	subscribeBatch  = 100 // scripthashes per blockchain.scripthash.subscribe batch
	fetchBatch      = 50  // scripts per get_history batch
	batchesInFlight = 4   // batches sent at once (one while the server throttles)
	aheadMax        = 500 // scripts past a dense branch's window whose histories one fetch asks
	retryMin        = 500 * time.Millisecond
	retryMax        = 30 * time.Second
)

// syncState is one session's work queue. It is owned by the session goroutine.
type syncState struct {
	pending    map[string]string // scripthash → announced status to fetch against ("" = null)
	resub      map[string]bool   // refresh the announced status with the fetch (after a mismatch)
	retry      map[string]*retryInfo
	proofTried map[chainhash.Hash]int32 // txid → header height at the last failed proof attempt
	proofRetry time.Time                // when failed proofs are tried again without a new header
	foreign    *foreignSession          // RegisterConfirmationsNtfn/RegisterSpendNtfn watches

	// Histories fetched ahead of the window (see fetch): scripthash → history, applied (with
	// the status it hashes to, and subscribed right after, which checks it) when the window
	// reaches the script.
	early map[string][]HistoryItem
	// synced: this session's initial sync is done (nothing is fetched ahead from then on).
	synced bool
	// Transactions fetched (txid-checked) that the tracker may not hold yet: those of early
	// histories, and of the histories being applied.
	txs map[chainhash.Hash]*wire.MsgTx
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

	s := &syncState{pending: map[string]string{}, resub: map[string]bool{}, retry: map[string]*retryInfo{}, proofTried: map[chainhash.Hash]int32{}, foreign: newForeignSession(),
		early: map[string][]HistoryItem{}, txs: map[chainhash.Hash]*wire.MsgTx{}}
	defer w.outstanding.Store(0)
	w.mu.RLock()
	known := w.tr.Scripts()
	w.mu.RUnlock()
	// What the tracker applied is written even when a later batch fails (the tracker's memory
	// must not run ahead of the store, or its events would never be published).
	var upd Update
	began := time.Now()
	err = w.subscribe(ctx, c, s, known, &upd)
	if err == nil {
		w.log.Debug("stored scripts subscribed", "scripts", len(known), "to_fetch", len(s.pending), "took", time.Since(began))
		err = w.extend(ctx, c, s, &upd)
	}
	if cerr := w.commit(ctx, upd); cerr != nil {
		return false, cerr
	}
	if err != nil {
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
			s.synced = true
			clear(s.early) // fetching ahead is for the initial sync only
			clear(s.txs)
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
			w.mu.RLock()
			whole := !w.tr.Chain().Anchored() // the checkpointed base period comes whole
			w.mu.RUnlock()
			hdrs, err := fetchHeaders(ctx, c, from, n, whole)
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
			if errors.Is(err, ErrForkLessWork) {
				w.forkRefused(err) // keep our chain and this session; see forkRefused
				return nil
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
	if err := w.fetchBelowBase(ctx, c, todo); err != nil {
		return err
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

// subscribe sends blockchain.scripthash.subscribe for scripts in batches (batchesInFlight at
// once). A null status on a script not yet verified is applied at once (null status = empty
// history); a status equal to the verified one needs nothing; anything else is queued for
// fetching.
func (w *Watcher) subscribe(ctx context.Context, c *electrum.Client, s *syncState, scripts []ScriptState, upd *Update) error {
	for start := 0; start < len(scripts); {
		if err := w.pace.wait(ctx); err != nil {
			return err
		}
		size := w.pace.size(subscribeBatch)
		chunk := scripts[start:min(start+size*w.pace.parallel(batchesInFlight), len(scripts))]
		start += len(chunk)
		calls := make([]*electrum.Call, len(chunk))
		results := make([]*string, len(chunk))
		for i, sc := range chunk {
			calls[i] = &electrum.Call{Method: "blockchain.scripthash.subscribe", Params: []any{sc.ScriptHash}, Result: &results[i]}
		}
		err := batchParallel(ctx, c, calls, size)
		w.pace.observe(batchThrottled(err, calls))
		if err != nil {
			return fmt.Errorf("chainwatch: subscribe: %w", err)
		}
		w.mu.Lock()
		for i, sc := range chunk {
			if calls[i].Err != nil {
				w.mu.Unlock()
				return fmt.Errorf("chainwatch: subscribe %d/%d: %w", sc.Branch, sc.Index, calls[i].Err)
			}
			status := deref(results[i])
			if w.tr.UpToDate(sc.ScriptHash, status) {
				if status != "" {
					w.skipped.Add(1)
				}
				continue
			}
			if status != "" {
				s.pending[sc.ScriptHash] = status
				continue
			}
			u, err := w.tr.Apply(sc.ScriptHash, "", nil, nil)
			if err != nil {
				w.mu.Unlock()
				return err
			}
			upd.Merge(u)
		}
		w.mu.Unlock()
	}
	return nil
}

// batchParallel sends calls as batches of at most size, all at once (the caller bounds how
// many), and waits for every answer. It returns the first transport error (per-call errors are
// in each Call).
func batchParallel(ctx context.Context, c *electrum.Client, calls []*electrum.Call, size int) error {
	if len(calls) <= size {
		return c.Batch(ctx, calls)
	}
	var wg sync.WaitGroup
	errs := make([]error, (len(calls)+size-1)/size)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Batch(ctx, calls[i*size:min((i+1)*size, len(calls))])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// extend grows the lookahead windows and subscribes the new scripts. Every new script goes into
// upd at once, unverified (stored with a null status), so that whatever the caller writes next
// keeps the stored scripts of each branch contiguous: a script whose history is still to be
// fetched is never missing below one stored after it. A new script whose history was fetched
// ahead (syncState.early) is applied at once, which may grow the window further (cascading);
// the others' histories are fetched by the fetch loop once subscribed.
func (w *Watcher) extend(ctx context.Context, c *electrum.Client, s *syncState, upd *Update) error {
	var fresh []ScriptState
	w.mu.Lock()
	for {
		got, err := w.tr.Extend()
		upd.Scripts = append(upd.Scripts, got...)
		if err != nil {
			w.mu.Unlock()
			return err
		}
		if len(got) == 0 {
			break
		}
		fresh = append(fresh, got...)
		for _, sc := range got {
			hist, ok := s.early[sc.ScriptHash]
			if !ok {
				continue
			}
			delete(s.early, sc.ScriptHash)
			status, err := ElectrumStatus(hist)
			if err != nil {
				continue
			}
			u, err := w.tr.ApplyTxs(sc.ScriptHash, status, hist, s.txs)
			if err != nil {
				continue // subscribed and fetched as any other
			}
			upd.Merge(u)
		}
	}
	if len(s.early) == 0 {
		clear(s.txs)
	} else {
		for id := range s.txs {
			if w.tr.HasTx(id) { // the tracker has it now
				delete(s.txs, id)
			}
		}
	}
	w.mu.Unlock()
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
	if w.beforeWrite != nil {
		if err := w.beforeWrite(su); err != nil {
			return fmt.Errorf("%w: %w", ErrStore, err)
		}
	}
	ids, err := w.cfg.DB.ApplyChainwatchUpdate(ctx, su)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	evs := make([]Event, len(up.Events))
	for i, ev := range up.Events {
		evs[i] = withID(ev, ids[i])
	}
	select { // the events stored before this run go first
	case <-w.redelivered:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !w.emit(ctx, evs) {
		return ctx.Err()
	}
	w.dispatch(evs)
	return nil
}

// fetch takes up to fetchBatch×batchesInFlight queued scripts and fetches
// blockchain.scripthash.get_history for each (with .subscribe first for scripts being retried),
// in batches sent at once; then the transactions of those histories that the tracker does not
// hold yet (blockchain.transaction.get, see fetchTxs). It verifies and applies them
// (Tracker.ApplyTxs: the UTXOs are worked out from the transactions, as Electrum and BDK do,
// rather than asked with the server's costly listunspent) and writes them with their events in
// one transaction, then grows the windows (writing that in a second one).
//
// Fetching ahead: during the session's sync, while a branch is dense (at least half of its
// scripts used, as in a wallet that hands out addresses in order) and has at least half a
// lookahead of scripts queued, the same round also asks the histories of up to aheadMax scripts
// just past its window (Tracker.Peek; as many as it has used, so the reach doubles each round). They are kept in syncState.early and applied by extend when the
// window reaches them — so a wallet of thousands of used scripts is synced in a few dozen round
// trips instead of one per lookahead's worth — and each is subscribed right after, which checks
// its status. Scripts past the final window are only asked, never tracked: the gap limit holds.
// Nothing is fetched ahead while the server throttles.
func (w *Watcher) fetch(ctx context.Context, c *electrum.Client, s *syncState) error {
	if err := w.pace.wait(ctx); err != nil {
		return err
	}
	size := w.pace.size(fetchBatch)
	shs := takePending(s, size*w.pace.parallel(batchesInFlight))
	jobs := historyJobs(s, shs)
	ahead, err := w.aheadScripts(s, shs)
	if err != nil {
		return err
	}
	for _, sc := range ahead {
		jobs = append(jobs, newHistoryJob(sc.ScriptHash, "", false, true))
	}
	// While the server answers, derive the range the next round will fetch ahead (deriving is
	// most of the watcher's CPU in a large sync); the tracker takes it once this round is
	// applied, before the window grows.
	next := w.deriveNextAhead(ahead)
	defer next.wait()
	var calls []*electrum.Call
	for _, j := range jobs {
		if j.sub != nil {
			calls = append(calls, j.sub)
		}
		calls = append(calls, j.histCall)
	}
	w.fetches.Add(uint64(len(jobs)))
	requeue := func() { // fetched again by the next session
		for _, j := range jobs {
			if !j.early {
				s.pending[j.sh] = j.announced
			}
		}
	}
	err = batchParallel(ctx, c, calls, size)
	w.pace.observe(batchThrottled(err, calls))
	if err != nil {
		requeue()
		return fmt.Errorf("chainwatch: fetch histories: %w", err)
	}
	txs, err := w.fetchHistoryTxs(ctx, c, s, jobs)
	if err != nil {
		requeue()
		return err
	}
	upd := w.applyHistories(s, jobs, txs)
	// Publish first (a payment's FundingSeen does not wait for the window's new subscriptions),
	// then grow the windows.
	if err := w.commit(ctx, upd); err != nil {
		return err
	}
	if got := next.wait(); len(got) > 0 {
		w.mu.Lock()
		for _, scs := range got {
			w.tr.AddAhead(scs)
		}
		w.mu.Unlock()
	}
	var more Update
	err = w.extend(ctx, c, s, &more)
	if cerr := w.commit(ctx, more); cerr != nil {
		return cerr
	}
	return err
}

// historyJob is one script whose history fetch asks: queued (announced is the status it was
// queued with; sub, when set, subscribes it again first) or early (asked ahead of the window).
// hist and err are its parsed history once fetched.
type historyJob struct {
	sh        string
	announced string
	early     bool
	sub       *electrum.Call
	status    *string
	raw       []historyJSON
	histCall  *electrum.Call

	hist []HistoryItem
	err  error
}

func newHistoryJob(sh, announced string, resub, early bool) *historyJob {
	j := &historyJob{sh: sh, announced: announced, early: early}
	if resub {
		j.sub = &electrum.Call{Method: "blockchain.scripthash.subscribe", Params: []any{sh}, Result: &j.status}
	}
	j.histCall = &electrum.Call{Method: "blockchain.scripthash.get_history", Params: []any{sh}, Result: &j.raw}
	return j
}

// takePending returns up to n queued scripts, sorted (which ones is the map's choice).
func takePending(s *syncState, n int) []string {
	shs := make([]string, 0, n)
	for sh := range s.pending {
		shs = append(shs, sh)
		if len(shs) == n {
			break
		}
	}
	sort.Strings(shs)
	return shs
}

// historyJobs makes the jobs of the queued scripts shs and takes them off the queue (and off
// the resubscribe set: their job subscribes them).
func historyJobs(s *syncState, shs []string) []*historyJob {
	jobs := make([]*historyJob, 0, len(shs))
	for _, sh := range shs {
		jobs = append(jobs, newHistoryJob(sh, s.pending[sh], s.resub[sh], false))
		delete(s.pending, sh)
		delete(s.resub, sh)
	}
	return jobs
}

// fetchHistoryTxs parses each job's history and fetches the transactions of those histories
// that neither the tracker nor the session holds yet (fetchTxs); the session keeps those it got.
func (w *Watcher) fetchHistoryTxs(ctx context.Context, c *electrum.Client, s *syncState, jobs []*historyJob) (fetchedTxs, error) {
	var want []chainhash.Hash
	w.mu.RLock()
	for _, j := range jobs {
		if j.hist, j.err = parseHistory(j.histCall, j.raw); j.err == nil {
			for _, id := range w.tr.MissingTxs(j.hist) {
				if s.txs[id] == nil {
					want = append(want, id)
				}
			}
		}
	}
	w.mu.RUnlock()
	txs, err := w.fetchTxs(ctx, c, want)
	if err != nil {
		return nil, err
	}
	for id, f := range txs {
		if f.tx != nil {
			s.txs[id] = f.tx
		}
	}
	return txs, nil
}

// applyHistories applies each queued job's history with its transactions (Tracker.ApplyTxs)
// and returns the merged update; a history that does not apply is scheduled for a refetch
// (retryLater). Early jobs whose history and transactions came whole are kept in
// syncState.early for extend.
func (w *Watcher) applyHistories(s *syncState, jobs []*historyJob, txs fetchedTxs) Update {
	fetchErr := func(hist []HistoryItem) error { // a transaction of hist the server did not give
		for _, h := range hist {
			if err := txs.err(h.TxHash); err != nil {
				return err
			}
		}
		return nil
	}
	var upd Update
	for _, j := range jobs {
		if j.early {
			if j.err == nil && fetchErr(j.hist) == nil { // else fetched again once in the window
				s.early[j.sh] = j.hist
			}
			continue
		}
		announced := j.announced
		if j.sub != nil && j.sub.Err == nil {
			announced = deref(j.status)
		}
		var u Update
		err := j.err
		if err == nil {
			if err = fetchErr(j.hist); err == nil {
				w.mu.Lock()
				u, err = w.tr.ApplyTxs(j.sh, announced, j.hist, s.txs)
				w.mu.Unlock()
			}
		}
		if err != nil {
			w.retryLater(s, j.sh, announced, err)
			continue
		}
		delete(s.retry, j.sh)
		upd.Merge(u)
	}
	return upd
}

// retryLater schedules script sh for a refetch after a growing delay (retryMin doubling up to
// retryMax) because its history did not apply (err).
func (w *Watcher) retryLater(s *syncState, sh, announced string, err error) {
	r := s.retry[sh]
	if r == nil {
		r = &retryInfo{}
		s.retry[sh] = r
	}
	r.announced = announced
	delay := min(retryMin<<min(r.attempt, 10), retryMax)
	r.attempt++
	r.due = time.Now().Add(delay)
	w.setErr(err)
	w.log.Warn("script history not applied; will refetch", "scripthash", sh, "attempt", r.attempt, "in", delay, "err", err)
}

// aheadScripts picks the scripts whose histories fetch asks ahead of the window (see fetch):
// for each dense branch with at least half a lookahead of scripts among queued, up to
// min(used, aheadMax) scripts just past
// its window that syncState.early does not hold yet; none while the server throttles or once the
// session's sync is done (a payment then must not cost hundreds of requests).
func (w *Watcher) aheadScripts(s *syncState, queued []string) ([]ScriptState, error) {
	if s.synced || w.pace.throttled() || len(queued) == 0 {
		return nil, nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	busy := map[uint32]int{}
	for _, sh := range queued {
		if sc, ok := w.tr.Script(sh); ok {
			busy[sc.Branch]++
		}
	}
	var out []ScriptState
	for b, n := range busy {
		if 2*n < w.cfg.Lookahead {
			continue // a few payments, not a window's worth of used scripts
		}
		tracked, used := w.tr.Window(b)
		if used < w.cfg.Lookahead || 2*used < tracked-w.cfg.Lookahead {
			continue
		}
		peek, err := w.tr.Peek(b, min(used, aheadMax))
		if err != nil {
			return nil, err
		}
		for _, sc := range peek {
			if _, have := s.early[sc.ScriptHash]; !have {
				out = append(out, sc)
			}
		}
	}
	return out, nil
}

// nextAhead is the derivation deriveNextAhead started; wait returns its scripts (one run per
// branch) once it has finished, nil after the first call.
type nextAhead struct {
	done    chan struct{}
	scripts [][]ScriptState
	taken   bool
}

func (n *nextAhead) wait() [][]ScriptState {
	if n == nil || n.taken {
		return nil
	}
	<-n.done
	n.taken = true
	return n.scripts
}

// deriveNextAhead starts deriving, for each branch that ahead (this round's scripts fetched
// ahead) reaches, as many scripts again just past them (the next round asks about as many:
// min(used, aheadMax)). It returns nil when there is nothing to derive. A failure derives
// fewer; the tracker derives the rest itself when it needs them.
func (w *Watcher) deriveNextAhead(ahead []ScriptState) *nextAhead {
	type run struct {
		branch, from uint32
		n            int
	}
	ends := map[uint32]*run{}
	for _, sc := range ahead {
		r := ends[sc.Branch]
		if r == nil {
			r = &run{branch: sc.Branch}
			ends[sc.Branch] = r
		}
		r.n++
		r.from = max(r.from, sc.Index+1)
	}
	if len(ends) == 0 {
		return nil
	}
	w.mu.RLock()
	var runs []run
	for b, r := range ends {
		if r.from == w.tr.AheadEnd(b) { // this round took every peeked script of b
			runs = append(runs, run{branch: b, from: r.from, n: min(r.n, aheadMax)})
		}
	}
	w.mu.RUnlock()
	if len(runs) == 0 {
		return nil
	}
	n := &nextAhead{done: make(chan struct{})}
	go func() {
		defer close(n.done)
		for _, r := range runs {
			if scs, _ := w.tr.DeriveAhead(r.branch, r.from, r.n); len(scs) > 0 {
				n.scripts = append(n.scripts, scs)
			}
		}
	}()
	return n
}

// parseHistory turns a get_history answer into typed items (ErrBadHistory or the server's error).
func parseHistory(hc *electrum.Call, hist []historyJSON) ([]HistoryItem, error) {
	if hc.Err != nil {
		return nil, hc.Err
	}
	hs := make([]HistoryItem, len(hist))
	for i, h := range hist {
		txid, err := chainhash.NewHashFromStr(h.TxHash)
		if err != nil || len(h.TxHash) != 64 {
			return nil, fmt.Errorf("%w: history tx_hash %q", ErrBadHistory, truncate(h.TxHash))
		}
		hs[i] = HistoryItem{TxHash: *txid, Height: h.Height}
	}
	return hs, nil
}

// txFetchParallel is how many blockchain.transaction.get requests fetchTxs keeps in flight. They
// go one per line, not as a batch: ElectrumX refuses a whole batch whose answer exceeds its
// MAX_SEND (1 MB by default), and one wallet transaction can be tens of kilobytes.
const txFetchParallel = 16

// fetchedTx is one blockchain.transaction.get answer: the transaction (its txid checked) or why
// there is none.
type fetchedTx struct {
	tx  *wire.MsgTx
	err error
}

type fetchedTxs map[chainhash.Hash]fetchedTx

// err returns why txid could not be fetched (nil when it was, or was not asked).
func (f fetchedTxs) err(txid chainhash.Hash) error { return f[txid].err }

// fetchTxs fetches the transactions ids (duplicates fetched once) with
// blockchain.transaction.get, txFetchParallel at a time, and checks each against its txid
// (ErrBadHistory otherwise). A server error for one transaction is recorded for it (its scripts
// are retried); a transport error ends the fetch and is returned.
func (w *Watcher) fetchTxs(ctx context.Context, c *electrum.Client, ids []chainhash.Hash) (fetchedTxs, error) {
	out := make(fetchedTxs, len(ids))
	var todo []chainhash.Hash
	for _, id := range ids {
		if _, dup := out[id]; !dup {
			out[id] = fetchedTx{}
			todo = append(todo, id)
		}
	}
	if len(todo) == 0 {
		return out, nil
	}
	type answer struct {
		id    chainhash.Hash
		res   fetchedTx
		ioErr error
	}
	jobs := make(chan chainhash.Hash)
	answers := make(chan answer, len(todo))
	var wg sync.WaitGroup
	for range min(txFetchParallel, len(todo)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range jobs {
				var raw string
				err := c.Call(ctx, "blockchain.transaction.get", []any{id.String()}, &raw)
				a := answer{id: id}
				var se *electrum.ServerError
				switch {
				case err == nil:
					a.res = decodeTx(id, raw)
				case errors.As(err, &se):
					a.res.err = fmt.Errorf("chainwatch: blockchain.transaction.get %s: %w", id, err)
				default:
					a.ioErr = err
				}
				answers <- a
			}
		}()
	}
	go func() {
		defer close(jobs)
		for _, id := range todo {
			select {
			case jobs <- id:
			case <-ctx.Done():
				return
			}
		}
	}()
	go func() { wg.Wait(); close(answers) }()
	var ioErr error
	throttled := false
	for a := range answers {
		if a.ioErr != nil {
			ioErr = cmp.Or(ioErr, a.ioErr)
			continue
		}
		throttled = throttled || isThrottled(a.res.err)
		out[a.id] = a.res
	}
	w.pace.observe(throttled || isThrottled(ioErr))
	if ioErr == nil && ctx.Err() != nil {
		ioErr = ctx.Err()
	}
	if ioErr != nil {
		return nil, fmt.Errorf("chainwatch: fetch transactions: %w", ioErr)
	}
	return out, nil
}

// decodeTx parses a blockchain.transaction.get answer (hex) and checks that it is txid.
func decodeTx(txid chainhash.Hash, raw string) fetchedTx {
	b, err := hex.DecodeString(raw)
	if err != nil {
		return fetchedTx{err: fmt.Errorf("%w: transaction %s: not hex", ErrBadHistory, txid)}
	}
	var tx wire.MsgTx
	if err := tx.Deserialize(bytes.NewReader(b)); err != nil {
		return fetchedTx{err: fmt.Errorf("%w: transaction %s: %w", ErrBadHistory, txid, err)}
	}
	if got := tx.TxHash(); got != txid {
		return fetchedTx{err: fmt.Errorf("%w: transaction asked as %s hashes to %s", ErrBadHistory, txid, got)}
	}
	return fetchedTx{tx: &tx}
}

// PrevTx returns the transaction txid, for the non_witness_utxo a PSBT carries for a segwit v0
// input (BIP-174; hardware co-signers want it, bitcoin#19215): the watcher's own copy when it is
// a wallet transaction it holds, else fetched from the connected server
// (blockchain.transaction.get, Electrum protocol) and checked to hash to txid. Errors:
// ErrNotConnected; ErrBadHistory when the answer is not the transaction asked for; the server's
// refusal (*electrum.ServerError, e.g. an unknown transaction); transport errors.
func (w *Watcher) PrevTx(ctx context.Context, txid chainhash.Hash) (*wire.MsgTx, error) {
	w.mu.RLock()
	tx, held := w.tr.RawTx(txid)
	c := w.client
	w.mu.RUnlock()
	if held {
		return tx, nil
	}
	if c == nil {
		return nil, fmt.Errorf("chainwatch: previous transaction %s: %w", txid, ErrNotConnected)
	}
	var raw string
	if err := c.Call(ctx, "blockchain.transaction.get", []any{txid.String()}, &raw); err != nil {
		return nil, fmt.Errorf("chainwatch: previous transaction %s: %w", txid, err)
	}
	f := decodeTx(txid, raw)
	if f.err != nil {
		return nil, fmt.Errorf("chainwatch: previous transaction: %w", f.err)
	}
	return f.tx, nil
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
