-- Policy enforcement state: the spend ledger behind the rolling velocity windows, held requests
-- and their approvals, the policy versions seen (for tighten-now / loosen-later across
-- restarts), and the policy hash and explanation of every decision in the audit log.

-- One signed transaction's outflow, reserved in the same transaction that marks its request
-- signed. Windows sum outflow_sat over rows in state reserved or spent by reserved_at.
-- state: reserved (signed, inputs not yet seen spent) | spent (its inputs were spent by it) |
-- released (never confirmed: inputs unspent after release_after seconds, or spent by another
-- transaction) | replaced (superseded by an RBF replacement spending some of the same inputs;
-- replaced_by names it, so a fee bump is counted once).
CREATE TABLE spend_ledger (
	txid           TEXT PRIMARY KEY,       -- unsigned txid (= txid for segwit), display order
	client_pubkey  TEXT NOT NULL,
	request_id     TEXT NOT NULL,
	outflow_sat    INTEGER NOT NULL,
	state          TEXT NOT NULL,
	reserved_at    INTEGER NOT NULL,       -- unix seconds
	release_after  INTEGER NOT NULL,       -- seconds
	replaced_by    TEXT NOT NULL DEFAULT '',
	updated_at     INTEGER NOT NULL
);
CREATE INDEX spend_ledger_at ON spend_ledger(reserved_at);

-- The outpoints ("txid:vout") each ledger transaction spends (to find RBF replacements).
CREATE TABLE spend_ledger_inputs (
	outpoint  TEXT NOT NULL,
	txid      TEXT NOT NULL REFERENCES spend_ledger(txid),
	PRIMARY KEY (outpoint, txid)
);

-- A request the policy held (cooling-off, approvals). params is the JSON array of the request's
-- params (the PSBT as sent), kept so the request can be decided again when the hold ends.
-- state: waiting | released | denied | cancelled; responded = 1 once the late answer reached a relay.
CREATE TABLE holds (
	client_pubkey  TEXT NOT NULL,
	request_id     TEXT NOT NULL,
	token          TEXT NOT NULL UNIQUE,   -- opaque id in the auth_url
	params         TEXT NOT NULL,
	rule           TEXT NOT NULL,
	held_since     INTEGER NOT NULL,
	state          TEXT NOT NULL,
	url            TEXT NOT NULL,
	reason         TEXT NOT NULL DEFAULT '',
	responded      INTEGER NOT NULL DEFAULT 0,
	updated_at     INTEGER NOT NULL,
	PRIMARY KEY (client_pubkey, request_id)
);

-- An approver's decision on a held request; event is the approver's signed kind-24133 event
-- (JSON) that carried the approve request: the evidence.
CREATE TABLE approvals (
	client_pubkey    TEXT NOT NULL,
	request_id       TEXT NOT NULL,
	approver_pubkey  TEXT NOT NULL,
	decision         TEXT NOT NULL,        -- approve | deny | cancel
	event            TEXT NOT NULL DEFAULT '',
	at               INTEGER NOT NULL,
	PRIMARY KEY (client_pubkey, request_id, approver_pubkey)
);

-- Every policy file content seen by the daemon, with the time from which it applies alone.
CREATE TABLE policy_versions (
	hash          TEXT PRIMARY KEY,        -- hex sha256 of the file
	name          TEXT NOT NULL,
	body          BLOB NOT NULL,
	seen_at       INTEGER NOT NULL,
	effective_at  INTEGER NOT NULL
);

ALTER TABLE audit_log ADD COLUMN policy_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_log ADD COLUMN explanation TEXT NOT NULL DEFAULT '';
