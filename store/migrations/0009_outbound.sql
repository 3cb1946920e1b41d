-- Outbound proposals (issue 6): transactions this co-signer builds itself when a policy
-- automation fires, and their way to a confirmed transaction (psbtflow/outbound.go).
-- state: proposed | awaiting_cosigners | finalized | broadcast | confirmed | replaced | abandoned.
-- trigger_key names the chain event (or schedule slot) that fired the automation: one proposal
-- per (automation, trigger_key), so an event reported again never makes a second proposal.
-- psbt is the latest combined PSBT (binary, BIP-174); final_tx the extracted network
-- transaction once finalized; replaces the id of the proposal an RBF fee bump replaces;
-- broadcast_height the tip height at the first broadcast (for bump_after).
-- Times are unix nanoseconds (UTC).
CREATE TABLE proposals (
	id               TEXT PRIMARY KEY,
	automation       TEXT NOT NULL,
	trigger_key      TEXT NOT NULL,
	state            TEXT NOT NULL,
	reason           TEXT NOT NULL DEFAULT '',
	psbt             BLOB,
	unsigned_txid    TEXT NOT NULL DEFAULT '',
	final_tx         BLOB,
	txid             TEXT NOT NULL DEFAULT '',
	fee_sat          INTEGER NOT NULL DEFAULT 0,
	feerate          REAL NOT NULL DEFAULT 0,
	replaces         TEXT NOT NULL DEFAULT '',
	broadcast_height INTEGER NOT NULL DEFAULT 0,
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	UNIQUE (automation, trigger_key)
);
CREATE INDEX proposals_state ON proposals(state);

-- The co-signers asked for one proposal. request_id is stored before the first sign_psbt is
-- sent, so that after a restart the same request is sent again (answered the same way).
-- state: waiting | held | signed | denied | error. bunker_uri may carry a connect secret: it is
-- never printed.
CREATE TABLE proposal_cosigners (
	proposal_id  TEXT NOT NULL REFERENCES proposals(id),
	cosigner     TEXT NOT NULL,           -- the remote signer's pubkey, hex
	bunker_uri   TEXT NOT NULL,
	request_id   TEXT NOT NULL,
	state        TEXT NOT NULL,
	detail       TEXT NOT NULL DEFAULT '',
	updated_at   INTEGER NOT NULL,
	PRIMARY KEY (proposal_id, cosigner)
);

-- Each proposal's timeline: proposed, self_signed, requested, held, answered, denied,
-- finalized, broadcast, confirmed, bumped, replaced, abandoned, notified, …
CREATE TABLE proposal_events (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	proposal_id  TEXT NOT NULL REFERENCES proposals(id),
	at           INTEGER NOT NULL,
	event        TEXT NOT NULL,
	detail       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX proposal_events_proposal ON proposal_events(proposal_id, seq);
