package chainwatch

import (
	"bytes"
	"context"
	"fmt"

	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/store"
)

// Snapshot is the wallet as a Watcher last persisted it — its tracked scripts, its UTXO set and
// its tip — read without connecting anywhere, for offline commands that analyse a PSBT against
// the wallet (`cosigner psbt inspect`, `cosigner policy test`). It answers with the running
// Watcher's rules: SpendableCoin applies coinbase maturity at the stored tip + 1, as
// Watcher.SpendableCoin does at the live tip. A Snapshot is not updated; it is safe for
// concurrent reads.
type Snapshot struct {
	// Tip is the stored best header (zero when HasTip is false: the watcher never saw one).
	Tip    Tip
	HasTip bool
	// UTXOs is every stored UTXO, spendable or not (immature coinbase outputs included),
	// ordered by height (mempool last), txid, output index.
	UTXOs   []UTXO
	utxos   map[wire.OutPoint]UTXO
	scripts map[string][2]uint32 // string(pkScript) → {branch, index}
}

// ReadSnapshot reads the Snapshot a Watcher left in db. Errors wrap ErrStore (a database failure
// or a stored hash that does not parse).
func ReadSnapshot(ctx context.Context, db *store.DB) (*Snapshot, error) {
	st, err := db.LoadChainwatch(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	return SnapshotOf(st)
}

// SnapshotOf builds the Snapshot of a persisted state (store.DB.LoadChainwatch). Errors wrap
// ErrStore: a stored txid, block hash or tip hash that does not parse.
func SnapshotOf(st store.ChainwatchState) (*Snapshot, error) {
	s := &Snapshot{HasTip: st.HasTip, utxos: make(map[wire.OutPoint]UTXO, len(st.UTXOs)), scripts: make(map[string][2]uint32, len(st.Scripts))}
	if st.HasTip {
		tip, err := tipFromStore(st.Tip)
		if err != nil {
			return nil, err
		}
		s.Tip = tip
	}
	for _, sc := range st.Scripts {
		s.scripts[string(sc.PkScript)] = [2]uint32{sc.Branch, sc.Index}
	}
	for _, su := range st.UTXOs {
		u, err := utxoFromStore(su)
		if err != nil {
			return nil, err
		}
		s.utxos[u.OutPoint] = u
		s.UTXOs = append(s.UTXOs, u)
	}
	sortUTXOs(s.UTXOs)
	return s, nil
}

// SpendableCoin returns the wallet's UTXO at op if a transaction in the block after the stored
// tip may spend it: stored as unspent, and for a coinbase output at least CoinbaseMaturity
// confirmations (UTXO.Mature with the tip's height + 1) — the rule of Tracker.SpendableCoin.
func (s *Snapshot) SpendableCoin(op wire.OutPoint) (UTXO, bool) {
	u, ok := s.utxos[op]
	if !ok || !u.Mature(Tip{Height: s.Tip.Height + 1}) {
		return UTXO{}, false
	}
	u.PkScript = bytes.Clone(u.PkScript)
	return u, true
}

// Lookup reports whether pkScript is a tracked script and where it derives from.
func (s *Snapshot) Lookup(pkScript []byte) (branch, index uint32, ok bool) {
	bi, ok := s.scripts[string(pkScript)]
	return bi[0], bi[1], ok
}

// Scripts returns the number of tracked scripts.
func (s *Snapshot) Scripts() int { return len(s.scripts) }

// SpendableUTXOs returns the stored UTXOs a transaction in the block after the stored tip may
// spend (those SpendableCoin answers), in UTXOs' order.
func (s *Snapshot) SpendableUTXOs() []UTXO {
	var out []UTXO
	for _, u := range s.UTXOs {
		if u.Mature(Tip{Height: s.Tip.Height + 1}) {
			u.PkScript = bytes.Clone(u.PkScript)
			out = append(out, u)
		}
	}
	return out
}
