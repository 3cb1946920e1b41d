// Package electrum is a client for the Electrum protocol (spesmilo/electrum-protocol, as served by
// ElectrumX, electrs and Fulcrum): newline-delimited JSON-RPC 2.0 over TCP (tcp://) or TLS
// (ssl://).
//
// Client is one connection: framing with a bound on message size (both ways), the
// server.version handshake (sent first and exactly once, negotiating protocol 1.4–1.6 and
// checking the answer), request/response correlation by id (registered before the write),
// JSON-RPC batches, per-request timeouts (the context's, else a default) that close a server
// which stops answering, the server.ping keepalive, typed server errors (ServerError unwraps to
// ErrHistoryTooLarge, ErrServerBusy, …), and the in-order, never-dropped delivery of
// subscription notifications. TLS certificates are trusted by a configured fingerprint, a pin
// stored on first use (PinStore, FilePinStore), or a CA chain; a changed pinned certificate is
// refused (PinMismatchError).
//
// Pool spreads over several servers: Connect returns a connection to the healthiest server not
// backing off (per-server exponential backoff with jitter), counts drops and timeouts against
// the server, and exposes per-server health (ServerHealth) for status pages. Every connection
// is a fresh Electrum session: the caller resubscribes on each one.
//
// Helpers: BroadcastTransaction (the node's rejection mapped to ErrTxAlreadyKnown,
// ErrTxConflict, ErrFeeTooLow, ErrNonStandard, ErrMissingInputs) and EstimateFee (sat/vB with a
// documented fallback). It knows nothing about wallets; package chainwatch builds on it.
//
// Protocol 1.6 (Fulcrum ≥ 2.1) is negotiated when the server offers it and 1.4 kept for electrs
// and ElectrumX; the calls whose shape differs go through helpers that follow the session's
// version (protocol.go): BlockHeaders (a "headers" list or concatenated "hex"),
// EstimateFeeMode (the mode parameter only for 1.6), RelayFee (mempool.get_info on 1.6, where
// blockchain.relayfee is gone), and CanonicalMempoolOrder, IsCanonical and ScriptStatus for
// 1.6's canonical order of mempool transactions in a history and its status. Server limits
// of electrs and Fulcrum map to the same error kinds as ElectrumX's (see the kinds in
// errors.go): ErrHistoryTooLarge, ErrServerBusy, ErrSubscriptionLimit.
package electrum
