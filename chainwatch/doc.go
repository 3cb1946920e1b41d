// Package chainwatch owns cosigner's view of the chain for one wallet: it follows an Electrum
// server (package chainwatch/electrum), tracks the wallet's scripts with a lookahead window per
// descriptor branch, verifies every fetched history against the server's announced Electrum
// status, keeps its own validated header chain, proves every confirmed wallet transaction
// against it (SPV), follows reorgs, keeps the wallet's UTXO set, persists all of it (package
// store) and publishes typed events shaped like lnd's chainntnfs.
//
// Shape: a pure Tracker (no I/O; table-tested and fuzzed, like lnd's TxNotifier) holds the
// state and decides what changed — HeaderChain (prev-hash links, proof of work, difficulty bits,
// reorg safety limit), ApplyTxs (a script's history and its transactions, from which its UTXOs
// are worked out as Electrum and BDK do; Apply takes an unspent list instead), ConnectHeaders (extend or
// roll back to the fork point), ApplyProof (MerkleRootFromProof/VerifyMerkleProof with the
// CVE-2012-2459 and CVE-2017-12842 checks). The Watcher is the shell that owns the connection,
// the reconnect loop, SQLite writes, the event channel and the RegisterConf/RegisterSpend
// subscriptions.
//
// Trust: a UTXO counts as confirmed (Height > 0) only once its transaction's merkle proof
// (blockchain.transaction.get_merkle) checks against our header at that height; until then, or
// if the proof fails, it is in the set as unconfirmed (Height 0), Health.Unproven counts it and
// Health.SPVFailures counts rejected proofs; it is tried again at each new header. After a
// reorg, transactions above the fork point are unproven again (FundingReorged) and proven again
// in the new chain — this is how a re-mine at the same height in another block, which changes no
// Electrum status and brings no scripthash notification, is found. A history whose status does
// not match the announced one is not taken: the watcher waits for the newer status (and
// refetches with backoff). Coinbase outputs carry Coinbase (position 0 in their block) and are
// left out of SpendableUTXOs until a transaction in the next block may spend them (100
// confirmations at the tip, the consensus rule); FundingMatured says when that happens, and
// FundingImmature when a reorg undoes it.
//
// Reorgs are followed only to a chain with more work: a fork with no more cumulative work than
// ours above the fork point is refused (ErrForkLessWork), logged, and our chain kept. Every
// header is checked against its network's difficulty rules, testnet's 20-minute rule and BIP-94
// (testnet4) included (see HeaderChain). On mainnet, testnet4 and signet the header chain starts
// at the last period of the shipped checkpoints (checkpoints.go, Electrum's format, refreshed by
// scripts/update-checkpoints): only the headers from there are downloaded and kept, plus, below
// it, the header of each block holding a wallet transaction (its whole period fetched once and
// checked against the checkpoints). docs/networks.md gives the figures and the argument.
//
// Events: every event is stored (outbox) in the same transaction as the state it reports and
// carries a stable id; Ack(id) is persisted, and unacknowledged events are delivered again after
// a restart, so a consumer that acknowledges sees each event once.
//
// Crash safety: every state write is one SQLite transaction, and each leaves a state the next
// start resumes from, whatever is killed after it (tested by failing each write of a sync, a
// catch-up over a reorg and a running session in turn): a new window's scripts are stored with
// the first write after they are derived (null status until their history is fetched), so the
// stored scripts of a branch are always indexes 0..n-1. Indexes that an older version left
// missing are derived and stored again on load; a store is refused as another wallet's
// (ErrWalletMismatch) only when its scripts differ from the configured descriptor's.
//
// Sync: subscribe the window's scripts, get_history of the used ones, transaction.get of the
// transactions not held yet (kept in SQLite); during a session's sync of a dense branch, the
// histories of up to 500 scripts past the window are fetched ahead and applied once the window
// reaches them (Tracker.Peek keeps them derived but untracked, so the gap limit holds). Batches
// go several at a time; each fetch round is one SQLite transaction (two when the window grows).
// Deriving the scripts is most of the watcher's own CPU in a large sync: a window's new scripts
// are derived in parallel (derive.go: contiguous index ranges on a few goroutines, joined before
// the tracker takes them in index order), and the descriptor derives each child from its
// branch key parsed once.
//
// Memory: the tracker keeps what the hot path and the next change need — each script (branch,
// index, pkScript, scripthash, status) found by its scripthash (and a pkScript through its
// scripthash), the server's and the published UTXOs as a value and a pointer to the script
// (plus height, block and coinbase for the published one), each wallet transaction's state with
// the number of histories that list it, each used script's txids, and the wallet's raw
// transactions (ApplyTxs and ProvenSpenders read them); events, acknowledgements and everything
// else stay in SQLite.
//
// Servers: Config.Servers go to an electrum.Pool (TLS with pinning, failover); every new
// connection resubscribes every script, and the stored statuses make that cheap.
//
// Notifications for any script (foreign.go): RegisterConfirmationsNtfn and RegisterSpendNtfn
// take the script with the txid or outpoint, like lnd's; for a script that is not the wallet's
// the watcher subscribes its scripthash on demand, proves the transaction's merkle proof against
// its header chain, and reads the script's history transactions to find a spend. These
// registrations are not persisted (they live as long as the Watcher, as in lnd).
//
// Throttling: ElectrumX charges each session a cost and throttles, then disconnects, a client
// that asks too much; the watcher paces its subscribe and fetch batches adaptively (pacing.go:
// halve the batch and double the delay on each throttling answer, recover slowly).
package chainwatch
