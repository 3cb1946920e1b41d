-- chainwatch, issue 3 (performance): the serialized wallet transactions, from which the watcher
-- works out each script's unspent outputs (as Electrum and BDK do) instead of asking the server's
-- costly blockchain.scripthash.listunspent. One row per row of chainwatch_txs whose transaction
-- has been fetched (blockchain.transaction.get, checked against its txid); deleted with it. A
-- database from before this migration has none: the watcher fetches a transaction when a history
-- that lists it changes.
CREATE TABLE chainwatch_rawtxs (
	txid  TEXT PRIMARY KEY,
	raw   BLOB NOT NULL
);
