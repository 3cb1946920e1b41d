// Package suite is chainwatch's backend-neutral test suite, shaped like lnd's
// chainntnfs TestInterfaces: one Backend interface (a chain that a test can
// drive — fund, mine, reorg, replace by fee, restart its server — and the
// Electrum server that serves it), and named cases that run a real
// chainwatch.Watcher against every backend (Run). Today's backends are
// ElectrumX on the local test network (internal/devnet) over TCP and over
// TLS with its certificate pinned, see TestInterfaces; TestDefaultCostLimits
// syncs 1,000 used scripts from an ElectrumX with its default cost limits.
//
// The case "watcher killed (SIGKILL)" re-executes the test binary as the
// watcher process (ChildMain, from TestWatcherChildProcess), so a package
// that runs the cases needs such a test function too.
//
// After every case the watcher's UTXO set must equal the node's own truth
// (NodeTruth): the outputs paying the wallet's scripts in the node's main
// chain and mempool, less those the node reports spent (gettxout) or that a
// mempool transaction spends, each with its value, script and height. btcd has
// no wallet, so the truth is computed from the blocks and mempool the node
// serves, never from what the test believes it did.
//
// Helpers (Wallet, NodeTruth, Harness) are exported for the benchmarks in
// package bench.
package suite
