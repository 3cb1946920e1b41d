package chainwatch

import (
	"fmt"
	"sync"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// TxConfirmation is sent on ConfirmationEvent.Confirmed when a transaction reaches the number of
// confirmations asked for, counted on the watcher's own (SPV-checked) header chain.
type TxConfirmation struct {
	TxID        chainhash.Hash
	BlockHash   chainhash.Hash
	BlockHeight int32
	NumConfs    int32
}

// ConfirmationEvent is returned by Watcher.RegisterConf (shaped like lnd's
// chainntnfs.ConfirmationEvent). Every channel is buffered and never blocks the watcher:
//   - Confirmed (capacity 1) gets the confirmation once NumConfs is reached, and again after a
//     reorg took it away and it is reached again;
//   - Updates (capacity NumConfs) gets the confirmation count each time it grows below NumConfs;
//   - NegativeConf (capacity 1) gets the depth (confirmations lost) when a confirmed transaction
//     is reorged out;
//   - Done is closed by Cancel or when the watcher stops.
//
// A slow reader may miss intermediate Updates (the channel keeps the oldest); Confirmed and
// NegativeConf carry the latest state.
type ConfirmationEvent struct {
	Confirmed    chan TxConfirmation
	Updates      chan int32
	NegativeConf chan int32
	Done         chan struct{}
	Cancel       func()
}

// SpendDetail is sent on SpendEvent.Spend: the outpoint left the wallet's UTXO set while its
// funding transaction stayed in the history. SpentBy is the spending txid when the watcher found
// it (nil otherwise).
type SpendDetail struct {
	OutPoint wire.OutPoint
	SpentBy  *chainhash.Hash
}

// SpendEvent is returned by Watcher.RegisterSpend (shaped like lnd's chainntnfs.SpendEvent):
// Spend (capacity 1) gets the spend; Reorg (capacity 1) is signalled when the spend disappears
// and the output is unspent again; Done is closed by Cancel or when the watcher stops.
type SpendEvent struct {
	Spend  chan SpendDetail
	Reorg  chan struct{}
	Done   chan struct{}
	Cancel func()
}

type confReg struct {
	sh    string // a foreign (non-wallet) script's scripthash; "" for a wallet transaction
	txid  chainhash.Hash
	n     int32
	last  int32
	fired bool
	ev    *ConfirmationEvent
}

type spendReg struct {
	sh    string // a foreign (non-wallet) script's scripthash; "" for a wallet output
	op    wire.OutPoint
	spent bool
	ev    *SpendEvent
}

// registry holds the RegisterConf / RegisterSpend subscriptions. It has its own lock so that
// Cancel never waits for the watcher.
type registry struct {
	mu     sync.Mutex
	next   uint64
	confs  map[uint64]*confReg
	spends map[uint64]*spendReg
	closed bool
	// Foreign watches (foreign.go): watched non-wallet scripts by scripthash, proofs of their
	// transactions, and a signal to the session loop.
	foreign map[string]*foreignScript
	proofs  map[chainhash.Hash]foreignProof
	wake    chan struct{}
}

func newRegistry() *registry {
	return &registry{confs: map[uint64]*confReg{}, spends: map[uint64]*spendReg{}, foreign: map[string]*foreignScript{},
		proofs: map[chainhash.Hash]foreignProof{}, wake: make(chan struct{}, 1)}
}

func trySend[T any](ch chan T, v T) {
	select {
	case ch <- v:
	default:
	}
}

// RegisterConf asks to be told when the wallet transaction txid has numConfs confirmations
// (numConfs >= 1). Only transactions that touch the wallet's scripts are seen (they are in a
// tracked script's history); for others use RegisterConfirmationsNtfn with their script. If the transaction already has them,
// Confirmed is ready at once. Returns ErrConfig for numConfs < 1; after the watcher stopped,
// Done is closed at once.
func (w *Watcher) RegisterConf(txid chainhash.Hash, numConfs int32) (*ConfirmationEvent, error) {
	if numConfs < 1 {
		return nil, fmt.Errorf("%w: numConfs %d < 1", ErrConfig, numConfs)
	}
	return w.registerConf(txid, numConfs, "", nil)
}

// registerConf registers a confirmation watch: of a wallet transaction (sh "") or of a
// transaction of the foreign script pkScript whose scripthash is sh.
func (w *Watcher) registerConf(txid chainhash.Hash, numConfs int32, sh string, pkScript []byte) (*ConfirmationEvent, error) {
	ev := &ConfirmationEvent{
		Confirmed:    make(chan TxConfirmation, 1),
		Updates:      make(chan int32, numConfs),
		NegativeConf: make(chan int32, 1),
		Done:         make(chan struct{}),
	}
	r := w.reg
	cancel, ok := r.add(ev.Done, sh, pkScript,
		func(id uint64) { r.confs[id] = &confReg{sh: sh, txid: txid, n: numConfs, ev: ev} },
		func(id uint64) bool { return deleteID(r.confs, id) })
	ev.Cancel = cancel
	if !ok {
		return ev, nil
	}
	if sh != "" {
		w.wakeSession()
	}
	w.dispatch(nil)
	return ev, nil
}

// RegisterSpend asks to be told when the wallet output op is spent. It returns ErrUnknownOutPoint
// if op is not in the wallet's UTXO set now.
func (w *Watcher) RegisterSpend(op wire.OutPoint) (*SpendEvent, error) {
	if _, ok := w.UTXO(op); !ok {
		return nil, fmt.Errorf("%w: %v", ErrUnknownOutPoint, op)
	}
	return w.registerSpend(op, "", nil), nil
}

// registerSpend registers a spend watch: of a wallet output (sh "") or of an output paying the
// foreign script pkScript whose scripthash is sh.
func (w *Watcher) registerSpend(op wire.OutPoint, sh string, pkScript []byte) *SpendEvent {
	ev := &SpendEvent{Spend: make(chan SpendDetail, 1), Reorg: make(chan struct{}, 1), Done: make(chan struct{})}
	r := w.reg
	cancel, ok := r.add(ev.Done, sh, pkScript,
		func(id uint64) { r.spends[id] = &spendReg{op: op, ev: ev, sh: sh} },
		func(id uint64) bool { return deleteID(r.spends, id) })
	ev.Cancel = cancel
	if ok && sh != "" {
		w.wakeSession()
	}
	return ev
}

// add registers one watch under a fresh id: put stores it (r.mu held); a foreign watch (sh not
// "") also counts one more registration on the script pkScript. It returns the watch's Cancel,
// which removes it once (del reports whether it was still there), drops the foreign count and
// closes done. ok is false if the registry is closed: then nothing is stored, done is closed and
// Cancel does nothing.
func (r *registry) add(done chan struct{}, sh string, pkScript []byte, put func(id uint64), del func(id uint64) bool) (cancel func(), ok bool) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		close(done)
		return func() {}, false
	}
	id := r.next
	r.next++
	put(id)
	if sh != "" {
		r.addForeign(sh, pkScript)
	}
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			if del(id) {
				r.dropForeign(sh)
				close(done)
			}
			r.mu.Unlock()
		})
	}, true
}

// deleteID deletes m[id] and reports whether it was there.
func deleteID[V any](m map[uint64]V, id uint64) bool {
	if _, ok := m[id]; !ok {
		return false
	}
	delete(m, id)
	return true
}

// dispatch brings the registrations up to date after a state change; evs are the events just
// published (for spends).
func (w *Watcher) dispatch(evs []Event) {
	r := w.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.confs) > 0 {
		w.mu.RLock()
		for _, c := range r.confs {
			var confs int32
			var x TxState
			if c.sh == "" {
				confs = w.tr.Confirmations(c.txid)
				x, _ = w.tr.Tx(c.txid)
			} else {
				var p foreignProof
				confs, p = w.foreignConfs(c.txid)
				x = TxState{TxID: c.txid, Height: p.height, BlockHash: p.blockHash}
			}
			switch {
			case confs == c.last:
			case confs > c.last:
				if confs >= c.n {
					if !c.fired {
						trySend(c.ev.Confirmed, TxConfirmation{TxID: c.txid, BlockHash: x.BlockHash, BlockHeight: x.Height, NumConfs: c.n})
						c.fired = true
					}
				} else {
					trySend(c.ev.Updates, confs)
				}
			default: // fewer confirmations: a reorg
				if c.last > 0 && confs == 0 {
					trySend(c.ev.NegativeConf, c.last)
				}
				if confs < c.n {
					c.fired = false
				}
			}
			c.last = confs
		}
		w.mu.RUnlock()
	}
	for _, ev := range evs {
		switch e := ev.(type) {
		case Spent:
			for _, s := range r.spends {
				if s.sh == "" && s.op == e.OutPoint && !s.spent {
					s.spent = true
					trySend(s.ev.Spend, SpendDetail{OutPoint: e.OutPoint, SpentBy: e.SpentBy})
				}
			}
		case FundingSeen:
			for _, s := range r.spends {
				if s.sh == "" && s.op == e.UTXO.OutPoint && s.spent {
					s.spent = false
					trySend(s.ev.Reorg, struct{}{})
				}
			}
		}
	}
}

// closeRegistry ends every registration (Done closed) when the watcher stops.
func (w *Watcher) closeRegistry() {
	r := w.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for id, c := range r.confs {
		close(c.ev.Done)
		delete(r.confs, id)
	}
	for id, s := range r.spends {
		close(s.ev.Done)
		delete(r.spends, id)
	}
}
