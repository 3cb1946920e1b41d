package psbtflow

import (
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch"
	"github.com/custodyagents/cosigner/psbt"
)

// CoinOf is the Coin the analysis reads for a chainwatch UTXO (value, scriptPubKey, branch and
// index of the descriptor, confirmation height).
func CoinOf(u chainwatch.UTXO) psbt.Coin {
	return psbt.Coin{Value: u.Value, PkScript: u.PkScript, Branch: u.Branch, Index: u.Index, Height: u.Height}
}

// SnapshotView is the ChainView over the wallet as the daemon last stored it (chainwatch
// Snapshot), for the offline commands that analyse a PSBT as sign_psbt would. Coin answers only
// coins Snapshot.SpendableCoin answers (unspent; a coinbase output once mature at the stored tip
// + 1), as the daemon's view answers only Watcher.SpendableCoin. Synced is true once the
// snapshot has a tip.
func SnapshotView(s *chainwatch.Snapshot) psbt.ChainView { return snapshotView{s} }

type snapshotView struct{ s *chainwatch.Snapshot }

func (v snapshotView) Coin(op wire.OutPoint) (psbt.Coin, bool) {
	u, ok := v.s.SpendableCoin(op)
	if !ok {
		return psbt.Coin{}, false
	}
	return CoinOf(u), true
}

func (v snapshotView) Lookup(pkScript []byte) (uint32, uint32, bool) { return v.s.Lookup(pkScript) }
func (v snapshotView) TipHeight() int32                              { return v.s.Tip.Height }
func (v snapshotView) Synced() bool                                  { return v.s.HasTip }
