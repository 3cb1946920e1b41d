// Package store owns cosigner's SQLite database: opening it in WAL mode, applying the versioned
// schema migrations in migrations/, and the typed reads and writes of each component's tables
// (signing requests, audit log, connect secrets, NIP-46 sessions; chainwatch's scripts and UTXOs).
//
// Every state transition is one SQL transaction, so a crash at any point leaves either the old
// or the new state, never a mix.
package store
