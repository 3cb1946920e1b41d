package chainwatch

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// Foreign watches: RegisterConfirmationsNtfn / RegisterSpendNtfn for scripts that are not the
// wallet's (lnd's chainntnfs.ChainNotifier shape). The watcher subscribes the script's
// scripthash (blockchain.scripthash.subscribe), reads its history on every status change
// (blockchain.scripthash.get_history), proves a confirmed transaction against its own header
// chain (blockchain.transaction.get_merkle, VerifyMerkleProof) and finds a spend by reading the
// history's transactions (blockchain.transaction.get) for an input spending the outpoint. None of
// this is persisted: a registration lives as long as the Watcher, like lnd's.

// foreignScript is one watched non-wallet script.
type foreignScript struct {
	pkScript []byte
	refs     int
	hist     []HistoryItem // the server's last history (nil before the first fetch)
	fetched  bool
}

// foreignProof is a non-wallet transaction proven against the header chain at Height in block
// BlockHash.
type foreignProof struct {
	height    int32
	blockHash chainhash.Hash
}

// RegisterConfirmationsNtfn asks to be told when txid, which pays (or spends from) pkScript, has
// numConfs confirmations on the watcher's own header chain (lnd's RegisterConfirmationsNtfn).
// For a wallet script (or a nil pkScript) it is RegisterConf. For any other script the watcher
// subscribes the script's scripthash, and proves the transaction with a merkle proof against its
// header chain before counting confirmations; a reorg that takes the block away sends the depth
// lost on NegativeConf and Confirmed comes again when the depth is reached again. heightHint is
// accepted for lnd's shape: an Electrum history is complete, so no rescan from a height is
// needed (it must not be negative). Errors: ErrConfig for numConfs < 1 or heightHint < 0.
func (w *Watcher) RegisterConfirmationsNtfn(txid chainhash.Hash, pkScript []byte, numConfs, heightHint int32) (*ConfirmationEvent, error) {
	if heightHint < 0 {
		return nil, fmt.Errorf("%w: heightHint %d < 0", ErrConfig, heightHint)
	}
	if len(pkScript) == 0 {
		return w.RegisterConf(txid, numConfs)
	}
	if _, _, ours := w.Lookup(pkScript); ours {
		return w.RegisterConf(txid, numConfs)
	}
	if numConfs < 1 {
		return nil, fmt.Errorf("%w: numConfs %d < 1", ErrConfig, numConfs)
	}
	return w.registerConf(txid, numConfs, ScriptHash(pkScript), pkScript)
}

// RegisterSpendNtfn asks to be told when op, an output paying pkScript, is spent (lnd's
// RegisterSpendNtfn): the spending transaction appears in the script's history (in the mempool
// or in a block) and one of its inputs spends op. For an output in the wallet's UTXO set it is
// RegisterSpend. Reorg is signalled when the spending transaction leaves the history again
// (replaced, evicted or reorged out). heightHint as for RegisterConfirmationsNtfn. Errors:
// ErrConfig for an empty pkScript (needed to find the output's scripthash) or heightHint < 0.
func (w *Watcher) RegisterSpendNtfn(op wire.OutPoint, pkScript []byte, heightHint int32) (*SpendEvent, error) {
	if heightHint < 0 {
		return nil, fmt.Errorf("%w: heightHint %d < 0", ErrConfig, heightHint)
	}
	if _, ok := w.UTXO(op); ok {
		return w.RegisterSpend(op)
	}
	if len(pkScript) == 0 {
		return nil, fmt.Errorf("%w: RegisterSpendNtfn %v: no pkScript", ErrConfig, op)
	}
	return w.registerSpend(op, ScriptHash(pkScript), pkScript), nil
}

// addForeign counts one more registration on the non-wallet script sh (r.mu held).
func (r *registry) addForeign(sh string, pkScript []byte) {
	f := r.foreign[sh]
	if f == nil {
		f = &foreignScript{pkScript: bytes.Clone(pkScript)}
		r.foreign[sh] = f
	}
	f.refs++
}

// dropForeign counts one registration less on sh and forgets it at zero (r.mu held).
func (r *registry) dropForeign(sh string) {
	if sh == "" {
		return
	}
	if f := r.foreign[sh]; f != nil {
		f.refs--
		if f.refs <= 0 {
			delete(r.foreign, sh)
		}
	}
}

// wakeSession tells the session loop that there is foreign work (non-blocking).
func (w *Watcher) wakeSession() {
	select {
	case w.reg.wake <- struct{}{}:
	default:
	}
}

// foreignConfs returns the confirmations of a proven non-wallet transaction on the current
// header chain (0 if unproven or its block left the chain), with its proof (w.mu read-held).
func (w *Watcher) foreignConfs(txid chainhash.Hash) (int32, foreignProof) {
	p, ok := w.reg.proofs[txid]
	if !ok {
		return 0, p
	}
	ch := w.tr.Chain()
	if h, ok := ch.Hash(p.height); !ok || h != p.blockHash {
		return 0, p
	}
	return ch.Height() - p.height + 1, p
}

// foreignSession is one session's state for foreign watches (owned by the session goroutine).
type foreignSession struct {
	subscribed map[string]bool                    // scripthashes subscribed on this connection
	dirty      map[string]bool                    // scripthashes whose history must be fetched
	inputs     map[chainhash.Hash][]wire.OutPoint // txid → the outpoints its inputs spend
}

func newForeignSession() *foreignSession {
	return &foreignSession{subscribed: map[string]bool{}, dirty: map[string]bool{}, inputs: map[chainhash.Hash][]wire.OutPoint{}}
}

// foreignNotified marks sh for a history fetch if it is a foreign watch; it reports whether it is.
func (w *Watcher) foreignNotified(fs *foreignSession, sh string) bool {
	w.reg.mu.Lock()
	_, ok := w.reg.foreign[sh]
	w.reg.mu.Unlock()
	if ok {
		fs.dirty[sh] = true
	}
	return ok
}

// serviceForeign brings the foreign watches up to date: subscribes new scripts, fetches the
// histories that changed, proves confirmed transactions of conf registrations whose proof is
// missing or whose block left the chain, reads candidate spending transactions, then dispatches.
func (w *Watcher) serviceForeign(ctx context.Context, c *electrum.Client, fs *foreignSession) error {
	if err := w.subscribeForeign(ctx, c, fs); err != nil {
		return err
	}
	if err := w.fetchForeignHistories(ctx, c, fs); err != nil {
		return err
	}
	proofs, reads := w.planForeign(fs)
	if err := w.proveForeign(ctx, c, proofs); err != nil {
		return err
	}
	if err := readForeignInputs(ctx, c, fs, reads); err != nil {
		return err
	}
	w.dispatchForeignSpends(fs)
	w.dispatch(nil)
	return nil
}

// subscribeForeign subscribes the watched scripts this session has not subscribed yet
// (blockchain.scripthash.subscribe) and marks their histories to fetch.
func (w *Watcher) subscribeForeign(ctx context.Context, c *electrum.Client, fs *foreignSession) error {
	r := w.reg
	r.mu.Lock()
	var toSub []string
	for sh := range r.foreign {
		if !fs.subscribed[sh] {
			toSub = append(toSub, sh)
		}
	}
	r.mu.Unlock()
	for _, sh := range toSub {
		var status *string
		if err := c.Call(ctx, "blockchain.scripthash.subscribe", []any{sh}, &status); err != nil {
			return fmt.Errorf("chainwatch: subscribe watched script %s: %w", sh, err)
		}
		fs.subscribed[sh] = true
		fs.dirty[sh] = true
	}
	return nil
}

// fetchForeignHistories fetches the history of every watched script marked dirty
// (blockchain.scripthash.get_history) and stores it in the registry.
func (w *Watcher) fetchForeignHistories(ctx context.Context, c *electrum.Client, fs *foreignSession) error {
	r := w.reg
	for sh := range fs.dirty {
		var hist []historyJSON
		if err := c.Call(ctx, "blockchain.scripthash.get_history", []any{sh}, &hist); err != nil {
			return fmt.Errorf("chainwatch: get_history of watched script %s: %w", sh, err)
		}
		items := make([]HistoryItem, 0, len(hist))
		for _, h := range hist {
			id, err := chainhash.NewHashFromStr(h.TxHash)
			if err != nil || len(h.TxHash) != 64 || h.Height < -1 {
				return fmt.Errorf("%w: watched script %s: history entry %q at %d", ErrBadHistory, sh, truncate(h.TxHash), h.Height)
			}
			items = append(items, HistoryItem{TxHash: *id, Height: h.Height})
		}
		r.mu.Lock()
		if f := r.foreign[sh]; f != nil {
			f.hist, f.fetched = items, true
		}
		r.mu.Unlock()
		delete(fs.dirty, sh)
	}
	return nil
}

// foreignProofJob is a transaction of a conf registration to prove at height.
type foreignProofJob struct {
	txid   chainhash.Hash
	height int32
}

// planForeign works out, from the fetched histories, the proofs that conf registrations need
// (a confirmed transaction at or below our tip whose proof is missing or whose block left the
// chain) and the transactions that spend registrations must read (their scripts' history,
// not read yet). Proofs of cancelled registrations, or of transactions no longer confirmed,
// are dropped.
func (w *Watcher) planForeign(fs *foreignSession) (proofs []foreignProofJob, reads []chainhash.Hash) {
	r := w.reg
	r.mu.Lock() // lock order: reg, then watcher (as in dispatch)
	defer r.mu.Unlock()
	w.mu.RLock()
	defer w.mu.RUnlock()
	chainHeight := w.tr.Chain().Height()
	wanted := map[chainhash.Hash]bool{}
	for _, cr := range r.confs {
		wanted[cr.txid] = true
	}
	for id := range r.proofs {
		if !wanted[id] {
			delete(r.proofs, id) // its registrations were cancelled
		}
	}
	for _, cr := range r.confs {
		f := r.foreign[cr.sh]
		if cr.sh == "" || f == nil || !f.fetched {
			continue
		}
		height, listed := int32(0), false
		for _, h := range f.hist {
			if h.TxHash == cr.txid {
				height, listed = h.Height, true
			}
		}
		if !listed || height <= 0 {
			delete(r.proofs, cr.txid)
			continue
		}
		if height > chainHeight {
			continue // the header comes first
		}
		if p, ok := r.proofs[cr.txid]; ok && p.height == height {
			if hh, ok := w.tr.Chain().Hash(height); ok && hh == p.blockHash {
				continue
			}
		}
		proofs = append(proofs, foreignProofJob{cr.txid, height})
	}
	for _, sr := range r.spends {
		f := r.foreign[sr.sh]
		if sr.sh == "" || f == nil || !f.fetched {
			continue
		}
		for _, h := range f.hist {
			if _, read := fs.inputs[h.TxHash]; !read && h.TxHash != sr.op.Hash {
				reads = append(reads, h.TxHash)
			}
		}
	}
	return proofs, reads
}

// proveForeign fetches the headers below a checkpointed chain's base that the proofs need, then
// proves each transaction (proveForeignTx). A proof that fails is counted and logged, and the
// transaction counts as unconfirmed; only a header fetch failure is returned.
func (w *Watcher) proveForeign(ctx context.Context, c *electrum.Client, proofs []foreignProofJob) error {
	old := make([]TxState, len(proofs)) // blocks below a checkpointed chain's base need their headers
	for i, j := range proofs {
		old[i] = TxState{TxID: j.txid, Height: j.height}
	}
	if err := w.fetchBelowBase(ctx, c, old); err != nil {
		return err
	}
	for _, j := range proofs {
		w.proveForeignTx(ctx, c, j)
	}
	return nil
}

// proveForeignTx asks the server for j's merkle proof (blockchain.transaction.get_merkle),
// checks it against our header at j.height and records the proof in the registry.
func (w *Watcher) proveForeignTx(ctx context.Context, c *electrum.Client, j foreignProofJob) {
	var res struct {
		BlockHeight int32    `json:"block_height"`
		Merkle      []string `json:"merkle"`
		Pos         uint32   `json:"pos"`
	}
	if err := c.Call(ctx, "blockchain.transaction.get_merkle", []any{j.txid.String(), j.height}, &res); err != nil {
		w.log.Warn("watched transaction not proven", "txid", j.txid, "height", j.height, "err", err)
		return
	}
	p := MerkleProof{Height: res.BlockHeight, Pos: res.Pos}
	bad := res.BlockHeight != j.height
	for _, m := range res.Merkle {
		h, err := chainhash.NewHashFromStr(m)
		if err != nil || len(m) != 64 {
			bad = true
			break
		}
		p.Branch = append(p.Branch, *h)
	}
	w.mu.RLock()
	hdr, ok := w.tr.Chain().Header(j.height)
	w.mu.RUnlock()
	var err error
	if bad || !ok {
		err = fmt.Errorf("%w: proof of %s for height %d", ErrMerkleProof, j.txid, j.height)
	} else {
		err = VerifyMerkleProof(j.txid, p, hdr)
	}
	if err != nil {
		w.spvFailures.Add(1)
		w.setErr(err)
		w.log.Warn("watched transaction not proven; it counts as unconfirmed", "txid", j.txid, "err", err)
		return
	}
	w.reg.mu.Lock()
	w.reg.proofs[j.txid] = foreignProof{height: j.height, blockHash: hdr.BlockHash()}
	w.reg.mu.Unlock()
}

// readForeignInputs reads each transaction of reads once (blockchain.transaction.get), checks
// that it decodes to its txid, and records the outpoints it spends.
func readForeignInputs(ctx context.Context, c *electrum.Client, fs *foreignSession, reads []chainhash.Hash) error {
	seen := map[chainhash.Hash]bool{}
	for _, id := range reads {
		if seen[id] {
			continue
		}
		seen[id] = true
		var raw string
		if err := c.Call(ctx, "blockchain.transaction.get", []any{id.String()}, &raw); err != nil {
			return fmt.Errorf("chainwatch: blockchain.transaction.get %s: %w", id, err)
		}
		b, err := hex.DecodeString(raw)
		var tx wire.MsgTx
		if err == nil {
			err = tx.Deserialize(bytes.NewReader(b))
		}
		if err != nil || tx.TxHash() != id {
			return fmt.Errorf("%w: transaction %s from the server does not decode to that txid", ErrBadHistory, id)
		}
		ins := make([]wire.OutPoint, len(tx.TxIn))
		for i, in := range tx.TxIn {
			ins[i] = in.PreviousOutPoint
		}
		fs.inputs[id] = ins
	}
	return nil
}

// dispatchForeignSpends sends Spend when a watched outpoint's spender is in its script's
// history, and Reorg when it has left it.
func (w *Watcher) dispatchForeignSpends(fs *foreignSession) {
	r := w.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, sr := range r.spends {
		f := r.foreign[sr.sh]
		if sr.sh == "" || f == nil || !f.fetched {
			continue
		}
		var by *chainhash.Hash
		for _, h := range f.hist {
			for _, in := range fs.inputs[h.TxHash] {
				if in == sr.op {
					id := h.TxHash
					by = &id
				}
			}
		}
		switch {
		case by != nil && !sr.spent:
			sr.spent = true
			trySend(sr.ev.Spend, SpendDetail{OutPoint: sr.op, SpentBy: by})
		case by == nil && sr.spent:
			sr.spent = false
			trySend(sr.ev.Reorg, struct{}{})
		}
	}
}
