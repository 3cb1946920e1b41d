package chainwatch

import "errors"

var (
	// ErrConfig is wrapped by New for an invalid Config (the message names the field).
	ErrConfig = errors.New("chainwatch: invalid config")

	// ErrAlreadyRunning is returned by a second call to Watcher.Run.
	ErrAlreadyRunning = errors.New("chainwatch: Run called twice")

	// ErrNotConnected is returned by Watcher.Broadcast when there is no live server connection.
	ErrNotConnected = errors.New("chainwatch: not connected to an Electrum server")

	// ErrBroadcastRejected wraps the server's reason (an *electrum.ServerError) when
	// blockchain.transaction.broadcast refuses a transaction.
	ErrBroadcastRejected = errors.New("chainwatch: broadcast rejected")

	// ErrStatusMismatch means a fetched history does not hash to the status the server announced
	// (Electrum protocol "status" formula); the fetch is not trusted and nothing changes.
	ErrStatusMismatch = errors.New("chainwatch: history does not match the announced status")

	// ErrBadHistory means a server answer is inconsistent in itself (history out of canonical
	// order, an unspent output whose transaction is not in the history, malformed items).
	ErrBadHistory = errors.New("chainwatch: inconsistent answer from the server")

	// ErrUnknownScript means a scripthash that the tracker does not follow.
	ErrUnknownScript = errors.New("chainwatch: unknown scripthash")

	// ErrWalletMismatch means the database holds scripts that the configured ScriptSource does
	// not derive: the database belongs to another wallet. Run returns it.
	ErrWalletMismatch = errors.New("chainwatch: database belongs to a different wallet")

	// ErrWrongNetwork means the server's genesis header is not Config.Params' genesis. Run
	// returns it.
	ErrWrongNetwork = errors.New("chainwatch: Electrum server is on another network")

	// ErrStore wraps a database failure. Run returns it (the watcher stops rather than let its
	// memory run ahead of what a restart would load).
	ErrStore = errors.New("chainwatch: store")
)
