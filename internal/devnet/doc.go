// Package devnet runs the local test network that the end-to-end tests, the
// benchmarks and the demo use: real, independent implementations started on
// 127.0.0.1 by the project's own scripts, never mocks of them.
//
//   - btcd v0.24.2 in regtest (--txindex), mining on demand with `generate`
//     to a key that the harness holds, so that Fund can pay any address from
//     mature coinbases.
//   - ElectrumX (PyPI e-x, pinned in scripts/requirements.txt) indexing that
//     btcd through an in-process JSON-RPC compatibility proxy (rpcproxy.go).
//   - with Config.Electrs, electrs 0.12 (crates.io, built by install-tools.sh)
//     beside ElectrumX, through the same proxy, which also answers the Bitcoin
//     Core REST paths electrs reads blocks with (rpcproxy_rest.go, electrs.go).
//   - three (by default) Nostr relays, each its own process: relay 0 is
//     nostr-rs-relay 0.8.12 (crates.io; a relay people run in production,
//     which honours "#p" filters for live events and sends no OK for
//     ephemeral events, see nostrrsrelay.go), relays 1 and 2 npm
//     @nostr-relay/core with an SQLite event store behind a ws server
//     (node/relay.mjs). Config.RelaySoftware picks another mix.
//
// Tools come from scripts/install-tools.sh (.tools/ and node/node_modules);
// a missing tool is an error wrapping ErrToolMissing that says so.
//
// # The RPC compatibility proxy
//
// ElectrumX is written against Bitcoin Core's RPC. btcd lacks or spells a
// few of those calls differently; the proxy bridges exactly these and passes
// every other request through unchanged (JSON-RPC batches included, which
// ElectrumX uses and btcd accepts):
//
//   - the "jsonrpc" member: ElectrumX sends requests without it, which
//     Bitcoin Core treats as JSON-RPC 1.0 and btcd answers with an empty
//     body. The proxy adds "jsonrpc":"1.0" to forwarded requests that lack it.
//   - getblock "hash" true|false: ElectrumX passes a boolean verbose flag
//     (accepted by Bitcoin Core); btcd takes only the integer verbosity, so
//     the flag becomes 1 or 0.
//   - getnetworkinfo: missing in btcd. Answered from btcd's getinfo
//     (version, protocolversion, timeoffset, connections, relayfee), with the
//     other Bitcoin Core fields filled in for a local node. ElectrumX reads
//     "version" and "relayfee" (blockchain.relayfee).
//   - estimatesmartfee n [mode]: missing in btcd, which has the older
//     estimatefee n. Answered as {"feerate": x, "blocks": n}, or, when btcd
//     cannot estimate (always on a fresh regtest chain),
//     {"errors": [...], "blocks": n} as Bitcoin Core does; ElectrumX then
//     answers blockchain.estimatefee with -1. The feerate is rounded to 8
//     decimals (electrs refuses more).
//   - for electrs: getrawtransaction's boolean and block hash (become 1|0),
//     getblockchaininfo (gains "initialblockdownload": false), getmempoolentry
//     (built from getrawmempool true), the REST paths /rest/blockhashbyheight,
//     /rest/headers, /rest/block, /rest/spenttxouts and /rest/blockpart, and a
//     Content-Length on every reply (electrs cannot read chunked bodies). The
//     full list is in rpcproxy.go's and rpcproxy_rest.go's file comments.
//
// # ElectrumX settings
//
// ElectrumX runs from the venv through electrumx_launch.py with COIN=Bitcoin,
// NET=regtest, ALLOW_ROOT=1 (CI runs as root), PEER_DISCOVERY=off, its
// default cost limits (soft 1,000, hard 10,000 per session; loopback
// sessions are not grouped) unless Config.ElectrumNoCostLimits sets
// COST_SOFT_LIMIT=0 and COST_HARD_LIMIT=0 (benchmarks of big wallets), and both
// DAEMON_POLL_INTERVAL_BLOCKS and DAEMON_POLL_INTERVAL_MEMPOOL at 100 ms: it
// learns of blocks and mempool transactions by polling, which bounds
// notification latency here. ElectrumX 1.18 also holds small TCP responses
// back for up to 1 s to pad them together (PaddedRSTransport, against traffic
// analysis); the launcher sets that wait from Config.ElectrumPaddingWait,
// 0 by default, so that round trips are not a second each. Responses are still
// padded with spaces, as from any deployed ElectrumX 1.18.
//
// ElectrumX 1.19 and later are not used: they require the node to report
// Bitcoin Core 28.0 or newer (2.0.0: 31.0 and a txospenderindex behind
// gettxspendingprevout), which btcd is not and has not.
//
// # Driving the chain
//
// Beyond Mine and Fund: FundOutputs (any outputs, optionally BIP-125
// replaceable) and ReplaceFunding (replace such a payment by fee);
// FundScripts (thousands of scripts, one output each, in a few transactions
// of up to 1,000 outputs: a big used wallet in seconds); InvalidateBlock and
// ReconsiderBlock (btcd's RPCs); Reorg (replace the top N blocks, with a hook
// to send conflicting transactions while the old ones are back in the
// mempool); RemineTip (the same transactions at the same height in another
// block); Generate (mine without waiting for ElectrumX); StopElectrumX,
// StartElectrumX and RestartElectrumX (same port, same index). ElectrumX
// notices a reorg only when a block above its tip does not connect, so the
// reorg helpers always end on a longer chain.
//
// # Lifetime
//
// Start returns when btcd has mined Config.InitialBlocks (450 by default, so
// that segwit is active), ElectrumX serves that tip and each relay answers a
// REQ with EOSE. Every process logs to a file in Config.Dir; a failed start
// reports the tail of the failing process's log. Children run in their own
// process groups, get SIGKILL from Linux if the harness dies (Pdeathsig), and
// are stopped by Close with SIGTERM, then SIGKILL after a grace period.
package devnet
