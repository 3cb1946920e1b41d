package psbtflow

// Replaceable coins: a fee bump (BIP-125 RBF) spends coins that the transaction it replaces
// already spends in the mempool, so the watcher no longer lists them as unspent and Analyze
// would refuse them (input_unspent). A coin is replaceable — analysed as if unspent — only when
// the transaction spending it is one this co-signer signed (its spend ledger has it,
// outstanding) and is not confirmed: then the replacement can only take that transaction's
// place, and the exposure counts the two once (withLedger, OutstandingExposure). The coin's
// value, script and place come from the watcher's Spent event, never from the PSBT.

import (
	"context"
	"sync"

	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/psbt"
	"github.com/custodyagents/cosigner/store"
)

type spentCoin struct {
	coin psbt.Coin
	by   chainhash.Hash
}

// spentCoins remembers the wallet coins spent by transactions of the wallet (Spent events) while
// the process runs; bounded, oldest forgotten first.
type spentCoins struct {
	mu    sync.Mutex
	m     map[wire.OutPoint]spentCoin
	order []wire.OutPoint
}

const maxSpentCoins = 10_000

// NoteSpentCoin remembers that the wallet's coin c at op was spent by transaction by (a
// chainwatch Spent event with its spender), so that a fee bump of by can be analysed.
func (s *Service) NoteSpentCoin(op wire.OutPoint, c psbt.Coin, by chainhash.Hash) {
	sc := &s.spent
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if sc.m == nil {
		sc.m = map[wire.OutPoint]spentCoin{}
	}
	if _, ok := sc.m[op]; !ok {
		sc.order = append(sc.order, op)
	}
	sc.m[op] = spentCoin{coin: c, by: by}
	for len(sc.order) > maxSpentCoins {
		delete(sc.m, sc.order[0])
		sc.order = sc.order[1:]
	}
}

// replaceableCoin returns the coin at op if it is spent by an unconfirmed transaction this
// co-signer signed (see the file comment). Safe for concurrent use.
func (s *Service) replaceableCoin(ctx context.Context, op wire.OutPoint) (psbt.Coin, bool) {
	s.spent.mu.Lock()
	sc, ok := s.spent.m[op]
	s.spent.mu.Unlock()
	if !ok || s.txConfirmed == nil || s.txConfirmed(sc.by) {
		return psbt.Coin{}, false
	}
	rs, err := s.db.LedgerSpending(ctx, op.String())
	if err != nil {
		return psbt.Coin{}, false
	}
	for _, r := range rs {
		if r.TxID == sc.by.String() && r.State == store.LedgerOutstanding {
			return sc.coin, true
		}
	}
	return psbt.Coin{}, false
}
