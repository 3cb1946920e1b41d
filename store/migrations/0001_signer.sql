-- NIP-46 remote signer state: single-use connect secrets, connected clients, signing requests and
-- the audit log of every decision.

-- A secret printed in a bunker:// URI. Only its SHA-256 is kept; used_by/used_at are set by the
-- one successful connect it allows.
CREATE TABLE connect_secrets (
	secret_sha256 BLOB PRIMARY KEY,
	created_at    INTEGER NOT NULL,
	used_by       TEXT,
	used_at       INTEGER
);

-- A client pubkey (hex) that completed connect with a valid secret.
CREATE TABLE client_sessions (
	client_pubkey TEXT PRIMARY KEY,
	connected_at  INTEGER NOT NULL,
	perms         TEXT NOT NULL DEFAULT '',
	metadata      TEXT NOT NULL DEFAULT ''
);

-- One NIP-46 request that asked for a decision (sign_psbt). The same (client, id) is answered
-- from this row again instead of being evaluated twice.
CREATE TABLE sign_requests (
	client_pubkey  TEXT NOT NULL,
	request_id     TEXT NOT NULL,
	method         TEXT NOT NULL,
	psbt_sha256    BLOB NOT NULL,
	unsigned_txid  TEXT NOT NULL DEFAULT '',
	state          TEXT NOT NULL,          -- received | denied | signed | failed
	result         TEXT NOT NULL DEFAULT '',
	error          TEXT NOT NULL DEFAULT '',
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL,
	PRIMARY KEY (client_pubkey, request_id)
);

-- Every decision, in order. analysis holds the JSON of the PSBT analysis the decision read.
CREATE TABLE audit_log (
	id             INTEGER PRIMARY KEY AUTOINCREMENT,
	at             INTEGER NOT NULL,
	client_pubkey  TEXT NOT NULL,
	request_id     TEXT NOT NULL,
	method         TEXT NOT NULL,
	decision       TEXT NOT NULL,          -- signed | denied | rejected | error
	rule           TEXT NOT NULL DEFAULT '',
	reason         TEXT NOT NULL DEFAULT '',
	unsigned_txid  TEXT NOT NULL DEFAULT '',
	outflow_sat    INTEGER NOT NULL DEFAULT 0,
	fee_sat        INTEGER NOT NULL DEFAULT 0,
	analysis       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_log_at ON audit_log(at);
