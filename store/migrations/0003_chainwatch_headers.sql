-- chainwatch, issue 3: the watcher's own header chain, the wallet's transactions with their SPV
-- state, each script's history, the published events (outbox with acknowledgements), and the
-- block and coinbase flag of each UTXO.

-- Validated block headers from height 1 up (genesis comes from the network parameters). header
-- is the 80-byte serialization; a reorg deletes the rows above the fork and writes the new ones.
CREATE TABLE chainwatch_headers (
	height  INTEGER PRIMARY KEY,
	header  BLOB NOT NULL CHECK (length(header) = 80)
);

-- Wallet transactions (listed in at least one tracked script's history). height is the
-- server's (> 0 block, 0/-1 mempool); verified = 1 once its merkle proof checked against our
-- header at height, whose hash is block_hash (display byte order); coinbase = position 0.
CREATE TABLE chainwatch_txs (
	txid        TEXT PRIMARY KEY,
	height      INTEGER NOT NULL,
	verified    INTEGER NOT NULL DEFAULT 0,
	block_hash  TEXT NOT NULL DEFAULT '',
	coinbase    INTEGER NOT NULL DEFAULT 0
);

-- Each script's verified history, in the server's order.
CREATE TABLE chainwatch_history (
	scripthash  TEXT NOT NULL,
	pos         INTEGER NOT NULL,
	txid        TEXT NOT NULL,
	PRIMARY KEY (scripthash, pos)
);

-- Events as published (outbox) and not yet acknowledged: Ack deletes the row (AUTOINCREMENT
-- never reuses an id). id is the stable event id; payload is the event as JSON.
CREATE TABLE chainwatch_events (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	kind     TEXT NOT NULL,
	payload  TEXT NOT NULL
);

ALTER TABLE chainwatch_utxos ADD COLUMN block_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE chainwatch_utxos ADD COLUMN coinbase INTEGER NOT NULL DEFAULT 0;

-- A database written before this migration holds coins taken without SPV proofs and no
-- transactions: forget them and the statuses that vouch for them, so that the first run after
-- the upgrade fetches every used script's history again and proves its transactions (the
-- scripts themselves, and so the lookahead windows, are kept).
DELETE FROM chainwatch_utxos;
UPDATE chainwatch_scripts SET status = NULL;
DELETE FROM chainwatch_tip;
