// Package electrum is a client for the Electrum protocol (spesmilo/electrum-protocol, as served by
// ElectrumX, electrs and Fulcrum): newline-delimited JSON-RPC 2.0 over one TCP connection.
//
// It owns the connection and nothing else: framing with a bound on message size, the
// server.version handshake (sent first and exactly once), request/response correlation by id
// (registered before the write), JSON-RPC batches, per-request timeouts, the server.ping
// keepalive, typed server errors, and the in-order, never-dropped delivery of subscription
// notifications. It knows nothing about wallets; package chainwatch builds on it.
//
// Not yet here (seams left for them): TLS (ssl://) and certificate pinning, multi-server failover.
package electrum
