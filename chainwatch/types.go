package chainwatch

import (
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"
)

// ScriptSource is the wallet's script derivation (satisfied by *descriptor.Descriptor):
// Branches is the number of derivation branches (2 for a <0;1> multipath descriptor: receive and
// change); PkScript returns the scriptPubKey at branch/index.
type ScriptSource interface {
	Branches() int
	PkScript(branch, index uint32) ([]byte, error)
}

// UTXO is an unspent output paying one of the wallet's scripts. Height is the block height it
// was confirmed at, 0 while it is in the mempool.
type UTXO struct {
	OutPoint wire.OutPoint
	Value    btcutil.Amount
	PkScript []byte
	Branch   uint32
	Index    uint32
	Height   int32
}

// Confirmations returns how many blocks confirm u at tip (0 in the mempool or when the tip is
// behind u's height, which happens briefly when a scripthash notification beats the header).
func (u UTXO) Confirmations(tip Tip) int32 {
	if u.Height <= 0 || tip.Height < u.Height {
		return 0
	}
	return tip.Height - u.Height + 1
}

// Tip is the best block header the server announced (blockchain.headers.subscribe).
type Tip struct {
	Height int32
	Hash   chainhash.Hash
}

// Event is one of FundingSeen, FundingConfirmed, Spent, FundingDropped, NewTip.
type Event interface{ chainEvent() }

// FundingSeen: a new UTXO paying a wallet script appeared (in the mempool, or already confirmed
// when it is found during a sync).
type FundingSeen struct{ UTXO UTXO }

// FundingConfirmed: a UTXO got its first confirmation (or was found already confirmed). Confs is
// counted from the watcher's tip at that moment (at least 1). Further confirmations produce no
// event: count them from NewTip.
type FundingConfirmed struct {
	UTXO  UTXO
	Confs int32
}

// Spent: a UTXO left the server's unspent list while its funding transaction is still in the
// script's history. SpentBy is the spending transaction's txid when the watcher found it among
// the script's history (nil when it could not tell).
type Spent struct {
	OutPoint wire.OutPoint
	UTXO     UTXO
	SpentBy  *chainhash.Hash
}

// FundingDropped: a UTXO disappeared together with its funding transaction (mempool eviction,
// replacement, or a reorg that dropped it). It is no longer in the UTXO set.
type FundingDropped struct{ UTXO UTXO }

// NewTip: the server announced a new best header.
type NewTip struct{ Tip Tip }

func (FundingSeen) chainEvent()      {}
func (FundingConfirmed) chainEvent() {}
func (Spent) chainEvent()            {}
func (FundingDropped) chainEvent()   {}
func (NewTip) chainEvent()           {}

// Health is a snapshot of the watcher for health endpoints and logs.
type Health struct {
	Connected      bool
	Ready          bool   // the initial sync has completed (Watcher.Ready is closed)
	Server         string // Config.ServerURL
	ServerSoftware string // from server.version, e.g. "ElectrumX 1.18.0"; "" before connecting
	Protocol       string // negotiated protocol version
	Tip            Tip
	ScriptsTracked int    // scripts derived and subscribed (all branches)
	HistoryFetches uint64 // blockchain.scripthash.get_history requests made by this Watcher
	LastError      string // "" if none yet
	LastErrorAt    time.Time
}

// Status is the persisted view for commands that do not connect (see ReadStatus). Amounts are
// sums over UTXOs: Confirmed counts Height > 0, Unconfirmed the mempool ones.
type Status struct {
	Tip            Tip
	HasTip         bool
	UTXOs          []UTXO
	Confirmed      btcutil.Amount
	Unconfirmed    btcutil.Amount
	ScriptsTracked int
	ScriptsUsed    int
}
