package chainwatch

import (
	"time"

	"github.com/btcsuite/btcd/btcutil"
	"github.com/btcsuite/btcd/chaincfg/chainhash"
	"github.com/btcsuite/btcd/wire"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

// ScriptSource is the wallet's script derivation (satisfied by *descriptor.Descriptor):
// Branches is the number of derivation branches (2 for a <0;1> multipath descriptor: receive and
// change); PkScript returns the scriptPubKey at branch/index.
type ScriptSource interface {
	Branches() int
	PkScript(branch, index uint32) ([]byte, error)
}

// UTXO is an unspent output paying one of the wallet's scripts. Height is the block height it
// was confirmed at — only once the funding transaction's merkle proof (SPV) checked against the
// watcher's own header chain — and 0 otherwise (in the mempool, or confirmed per the server but
// not yet or not provably). BlockHash is the hash of that block (zero while Height is 0).
// Coinbase is true for an output of a coinbase transaction (proven at position 0 in its block;
// it stays true while a reorg leaves it unconfirmed), which can be spent only once it has
// CoinbaseMaturity confirmations (see Mature).
type UTXO struct {
	OutPoint  wire.OutPoint
	Value     btcutil.Amount
	PkScript  []byte
	Branch    uint32
	Index     uint32
	Height    int32
	BlockHash chainhash.Hash
	Coinbase  bool
}

// CoinbaseMaturity is the number of confirmations a coinbase output needs before it can be spent
// (Bitcoin consensus, COINBASE_MATURITY; the same on every network).
const CoinbaseMaturity = 100

// Mature reports whether u can be spent by a transaction in the block at height spend.Height
// (pass the tip's height + 1 for "the next block"): always for a non-coinbase output, and for a
// proven coinbase output once spend.Height - u.Height >= CoinbaseMaturity — Bitcoin Core's
// CheckTxInputs ("bad-txns-premature-spend-of-coinbase") and btcd's CheckTransactionInputs. So a
// coinbase output with CoinbaseMaturity confirmations at the tip may be spent in the next block,
// one with CoinbaseMaturity-1 may not.
func (u UTXO) Mature(spend Tip) bool {
	return !u.Coinbase || (u.Height > 0 && spend.Height-u.Height >= CoinbaseMaturity)
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

// Event is one of FundingSeen, FundingConfirmed, FundingMatured, FundingImmature, Spent,
// FundingDropped, FundingReorged, NewTip.
// EventID is the event's stable id: assigned when the event is stored (in the same database
// transaction as the state change it reports), it stays the same when the event is delivered
// again after a restart; Watcher.Ack(id) stops that. Events built by a bare Tracker have id 0.
type Event interface {
	EventID() uint64
	chainEvent()
}

// FundingSeen: a new UTXO paying a wallet script appeared (in the mempool, or already confirmed
// when it is found during a sync).
type FundingSeen struct {
	ID   uint64
	UTXO UTXO
}

// FundingConfirmed: a UTXO got its first confirmation (or was found already confirmed). Confs is
// counted from the watcher's tip at that moment (at least 1). Further confirmations produce no
// event: count them from NewTip.
type FundingConfirmed struct {
	ID    uint64
	UTXO  UTXO
	Confs int32
}

// Spent: a UTXO was spent by a transaction of the script's history (in the mempool or a block)
// while its funding transaction is still in that history. SpentBy is the spending transaction's
// txid (nil only in an Update made by Tracker.Apply from a bare unspent list).
type Spent struct {
	ID       uint64
	OutPoint wire.OutPoint
	UTXO     UTXO
	SpentBy  *chainhash.Hash
}

// FundingDropped: a UTXO disappeared together with its funding transaction (mempool eviction,
// replacement, or a reorg that dropped it). It is no longer in the UTXO set.
type FundingDropped struct {
	ID   uint64
	UTXO UTXO
}

// FundingReorged ("reorged out"): the block that confirmed a UTXO left the header chain (a reorg,
// including a re-mine of the same transaction at the same height in another block). The UTXO
// stays in the set as unconfirmed (Height 0) until its transaction is proven again in the new
// chain (FundingConfirmed follows) or leaves the history (FundingDropped follows). UTXO is the
// output as it was confirmed before the reorg.
type FundingReorged struct {
	ID   uint64
	UTXO UTXO
}

// FundingMatured: a coinbase UTXO became spendable — a transaction in the next block may spend
// it (see UTXO.Mature): it has CoinbaseMaturity confirmations on the watcher's header chain at
// Tip. It follows FundingConfirmed at once when a coinbase output is found (or proven again)
// already that deep. After FundingImmature it comes again when the output matures again.
type FundingMatured struct {
	ID   uint64
	UTXO UTXO
	Tip  Tip
}

// FundingImmature: a coinbase UTXO that had matured (FundingMatured) can no longer be spent in
// the next block, while it stays in the UTXO set: a reorg took its block away (it follows
// FundingReorged; UTXO is the output as it was confirmed) or left a best chain too short for it
// (UTXO keeps its height). FundingMatured follows once it has matured again.
type FundingImmature struct {
	ID   uint64
	UTXO UTXO
	Tip  Tip
}

// NewTip: the header chain has a new best header. Fork is the height of the last header that the
// old and new chains share: Tip.Height-1 for a plain extension, lower after a reorg (Reorged).
type NewTip struct {
	ID      uint64
	Tip     Tip
	Fork    int32
	Reorged bool
}

func (e FundingSeen) EventID() uint64      { return e.ID }
func (e FundingConfirmed) EventID() uint64 { return e.ID }
func (e FundingMatured) EventID() uint64   { return e.ID }
func (e FundingImmature) EventID() uint64  { return e.ID }
func (e Spent) EventID() uint64            { return e.ID }
func (e FundingDropped) EventID() uint64   { return e.ID }
func (e FundingReorged) EventID() uint64   { return e.ID }
func (e NewTip) EventID() uint64           { return e.ID }

func (FundingSeen) chainEvent()      {}
func (FundingConfirmed) chainEvent() {}
func (FundingMatured) chainEvent()   {}
func (FundingImmature) chainEvent()  {}
func (Spent) chainEvent()            {}
func (FundingDropped) chainEvent()   {}
func (FundingReorged) chainEvent()   {}
func (NewTip) chainEvent()           {}

// withID returns ev with its ID set.
func withID(ev Event, id uint64) Event {
	switch e := ev.(type) {
	case FundingSeen:
		e.ID = id
		return e
	case FundingConfirmed:
		e.ID = id
		return e
	case FundingMatured:
		e.ID = id
		return e
	case FundingImmature:
		e.ID = id
		return e
	case Spent:
		e.ID = id
		return e
	case FundingDropped:
		e.ID = id
		return e
	case FundingReorged:
		e.ID = id
		return e
	case NewTip:
		e.ID = id
		return e
	}
	return ev
}

// TxState is a wallet transaction as the watcher knows it: listed in the history of at least one
// tracked script. Height is the server's (> 0 a block height, 0 or -1 in the mempool); Verified
// is true once a merkle proof (blockchain.transaction.get_merkle) checked against our header at
// Height, whose hash is BlockHash; Coinbase is learnt from a proof (position 0) and kept when a
// reorg makes the transaction unproven again (a coinbase never becomes anything else).
type TxState struct {
	TxID      chainhash.Hash
	Height    int32
	Verified  bool
	BlockHash chainhash.Hash
	Coinbase  bool
}

// Health is a snapshot of the watcher for health endpoints and logs.
type Health struct {
	Connected bool
	Ready     bool   // the initial sync has completed (Watcher.Ready is closed)
	Server    string // the server connected to (Config.ServerURL while none is)
	// Servers is each configured server's health as the failover pool sees it (connects,
	// failures, latency, last error, backoff).
	Servers        []electrum.ServerHealth
	ServerSoftware string // from server.version, e.g. "ElectrumX 1.18.0"; "" before connecting
	Protocol       string // negotiated protocol version
	Tip            Tip
	ScriptsTracked int    // scripts derived and subscribed (all branches)
	HistoryFetches uint64 // blockchain.scripthash.get_history requests made by this Watcher
	// HistorySkipped counts subscriptions whose announced status equalled the stored, verified
	// one, so that get_history was not needed (the restart fast path).
	HistorySkipped uint64
	// Headers is the height of the watcher's own validated header chain.
	Headers int32
	// ScriptsSynced counts scripts whose history is verified against the server's current
	// status in this session; with ScriptsTracked it gives the sync progress.
	ScriptsSynced int
	// Unproven counts confirmed transactions (per the server) whose merkle proof has not
	// checked yet; SPVFailures counts proofs rejected since start (see ErrMerkleProof).
	Unproven    int
	SPVFailures uint64
	LastError   string // "" if none yet
	LastErrorAt time.Time
}

// Status is the persisted view for commands that do not connect (see ReadStatus). Amounts are
// sums over UTXOs: Confirmed counts Height > 0 (proven against the header chain), Unconfirmed
// the others; Immature is the part of Confirmed in coinbase outputs that cannot be spent yet
// (fewer than CoinbaseMaturity confirmations for the next block). Headers is the height of the
// stored header chain; Unproven counts wallet transactions the server lists as confirmed whose
// merkle proof has not checked (their outputs count as unconfirmed); UnackedEvents counts stored
// events not yet acknowledged (Watcher.Ack).
type Status struct {
	Tip            Tip
	HasTip         bool
	UTXOs          []UTXO
	Confirmed      btcutil.Amount
	Unconfirmed    btcutil.Amount
	Immature       btcutil.Amount
	ScriptsTracked int
	ScriptsUsed    int
	Headers        int32
	Txs            int
	Unproven       int
	UnackedEvents  int
}

// Spendable reports whether a transaction in the block after s.Tip may spend u (UTXO.Mature at
// the tip's height + 1): false only for a coinbase output not yet CoinbaseMaturity deep.
func (s Status) Spendable(u UTXO) bool { return u.Mature(Tip{Height: s.Tip.Height + 1}) }
