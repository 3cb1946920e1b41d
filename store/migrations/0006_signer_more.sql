-- NIP-46 remote signer, round 2: client activity for `cosigner clients list`, the re-sent
-- nostrconnect connect response, and the transport of held requests (late answers after a restart).

-- Last request time (unix seconds, 0: none yet) and number of requests, flushed by the daemon
-- every few seconds (display only).
ALTER TABLE client_sessions ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE client_sessions ADD COLUMN requests INTEGER NOT NULL DEFAULT 0;

-- The nostrconnect connect response is re-sent with the same id until the app's first request
-- arrives (state confirmed) or a deadline passes after the first send (state unconfirmed).
ALTER TABLE nostrconnect_pending ADD COLUMN response_id TEXT NOT NULL DEFAULT '';
ALTER TABLE nostrconnect_pending ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE nostrconnect_pending ADD COLUMN sent_at INTEGER NOT NULL DEFAULT 0;  -- first accepted send
ALTER TABLE nostrconnect_pending ADD COLUMN next_at INTEGER NOT NULL DEFAULT 0;  -- next re-send (unix s)

-- How a request that was answered with auth_url (held) arrived, so that its late answer goes out
-- in the same transport encryption and to the same relay, also after a restart.
CREATE TABLE request_transports (
	client_pubkey TEXT NOT NULL,
	request_id    TEXT NOT NULL,
	transport     TEXT NOT NULL,          -- nip44 | nip04
	arrived_on    TEXT NOT NULL DEFAULT '', -- relay URL
	created_at    INTEGER NOT NULL,
	PRIMARY KEY (client_pubkey, request_id)
);
