-- chainwatch: the wallet's tracked scripts, its UTXO set and the chain tip as last verified
-- against the Electrum server. Rewritten by chainwatch one transaction per update.

-- A derived script (branch/idx of the wallet's descriptor). status is the Electrum status last
-- verified against the script's history (hex sha256); NULL = no history (Electrum's null status).
-- A row is written only once its status has been verified, so a restart can skip refetching a
-- script whose server status equals this one.
CREATE TABLE chainwatch_scripts (
	branch      INTEGER NOT NULL,
	idx         INTEGER NOT NULL,
	scripthash  TEXT NOT NULL UNIQUE,  -- hex of reversed sha256(pk_script), as Electrum names it
	pk_script   BLOB NOT NULL,
	status      TEXT,
	PRIMARY KEY (branch, idx)
);

-- The wallet's unspent outputs. txid is hex in display (RPC) byte order; height 0 = mempool.
CREATE TABLE chainwatch_utxos (
	txid       TEXT NOT NULL,
	vout       INTEGER NOT NULL,
	value_sat  INTEGER NOT NULL,
	pk_script  BLOB NOT NULL,
	branch     INTEGER NOT NULL,
	idx        INTEGER NOT NULL,
	height     INTEGER NOT NULL,
	PRIMARY KEY (txid, vout),
	FOREIGN KEY (branch, idx) REFERENCES chainwatch_scripts(branch, idx)
);
CREATE INDEX chainwatch_utxos_script ON chainwatch_utxos(branch, idx);

-- The best header seen (one row). hash is hex in display byte order.
CREATE TABLE chainwatch_tip (
	id      INTEGER PRIMARY KEY CHECK (id = 1),
	height  INTEGER NOT NULL,
	hash    TEXT NOT NULL
);
