package chainwatch

import (
	"errors"

	"github.com/custodyagents/cosigner/chainwatch/electrum"
)

var (
	// ErrConfig is wrapped by New for an invalid Config (the message names the field).
	ErrConfig = errors.New("chainwatch: invalid config")

	// ErrAlreadyRunning is returned by a second call to Watcher.Run.
	ErrAlreadyRunning = errors.New("chainwatch: Run called twice")

	// ErrNotConnected is returned by Watcher.Broadcast when there is no live server connection.
	ErrNotConnected = errors.New("chainwatch: not connected to an Electrum server")

	// ErrBroadcastRejected wraps the server's reason (an *electrum.ServerError) when
	// blockchain.transaction.broadcast refuses a transaction.
	ErrBroadcastRejected = electrum.ErrBroadcastRejected

	// ErrStatusMismatch means a fetched history does not hash to the status the server announced
	// (Electrum protocol "status" formula); the fetch is not trusted and nothing changes.
	ErrStatusMismatch = errors.New("chainwatch: history does not match the announced status")

	// ErrBadHistory means a server answer is inconsistent in itself (history out of canonical
	// order, an unspent output whose transaction is not in the history, malformed items).
	ErrBadHistory = errors.New("chainwatch: inconsistent answer from the server")

	// ErrUnknownScript means a scripthash that the tracker does not follow.
	ErrUnknownScript = errors.New("chainwatch: unknown scripthash")

	// ErrWalletMismatch means the database holds scripts that the configured ScriptSource does
	// not derive (a stored script differs from the one derived at its branch/index, or lies on a
	// branch the source does not have): the database was written for another wallet's
	// descriptor. Run returns it. Indexes missing from a stored window are not a mismatch (see
	// Tracker.Restore).
	ErrWalletMismatch = errors.New("chainwatch: database belongs to a different wallet")

	// ErrWrongNetwork means the server's genesis header is not Config.Params' genesis. Run
	// returns it.
	ErrWrongNetwork = errors.New("chainwatch: Electrum server is on another network")

	// ErrStore wraps a database failure. Run returns it (the watcher stops rather than let its
	// memory run ahead of what a restart would load).
	ErrStore = errors.New("chainwatch: store")

	// ErrBadHeader means a block header from the server fails a check of the header chain
	// (prev-hash link, proof of work, difficulty bits); it is not accepted.
	ErrBadHeader = errors.New("chainwatch: invalid block header")

	// ErrHeaderNoConnect means headers do not link to the watcher's header chain where they
	// claim to; the watcher fetches from further back to find the fork point.
	ErrHeaderNoConnect = errors.New("chainwatch: headers do not connect to our chain")

	// ErrReorgTooDeep means a fork below the reorg safety limit; the chain is kept.
	ErrReorgTooDeep = errors.New("chainwatch: reorg deeper than the safety limit")

	// ErrForkLessWork means a fork whose headers carry no more work than ours above the fork
	// point (a lying or lagging server); the chain is kept.
	ErrForkLessWork = errors.New("chainwatch: fork does not have more work than our chain")

	// ErrMerkleProof means a blockchain.transaction.get_merkle answer does not prove that the
	// transaction is in the block at that height of our header chain (or breaks an SPV rule:
	// branch deeper than 30, CVE-2012-2459, CVE-2017-12842). The transaction is not trusted as
	// confirmed.
	ErrMerkleProof = errors.New("chainwatch: merkle proof rejected")

	// ErrUnknownOutPoint means RegisterSpend named an output that is not in the wallet's UTXO set.
	ErrUnknownOutPoint = errors.New("chainwatch: outpoint not in the wallet's UTXO set")

	// ErrUnknownEvent means Ack named an event id the watcher never stored.
	ErrUnknownEvent = errors.New("chainwatch: unknown event id")
)
