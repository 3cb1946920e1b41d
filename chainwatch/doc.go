// Package chainwatch owns cosigner's view of the chain for one wallet: it follows an Electrum
// server (package chainwatch/electrum), tracks the wallet's scripts with a lookahead window per
// descriptor branch, verifies every fetched history against the server's announced Electrum
// status, keeps the wallet's UTXO set and the chain tip, persists them (package store), and
// publishes typed events (FundingSeen, FundingConfirmed, Spent, FundingDropped, NewTip).
//
// Shape: a pure Tracker (no I/O; table-tested) holds the state and decides what changed; the
// Watcher is the shell that owns the connection, the reconnect loop, SQLite writes and the event
// channel. chainwatch decides nothing about spending.
//
// Not yet here (the next chainwatch issue; seams: Tracker.Apply/SetTip for reorgs, the
// electrum.Dial options for TLS, Watcher.session for several servers): header-chain validation
// and SPV (merkle) checks of our transactions, reorg handling beyond taking the server's latest
// history (no Reorged event yet), TLS with pinning, and multi-server failover.
package chainwatch
