-- Per-client NIP-46 permissions ("method[:kind]", canonical form written by signer.Perms) and
-- the client-initiated nostrconnect:// flow.

-- The perms a bunker:// secret grants (canonical string). NULL: created before permissions
-- existed or without --perms: signer.DefaultPerms.
ALTER TABLE connect_secrets ADD COLUMN perms TEXT;

-- client_sessions.perms now holds the GRANTED permissions; what the client asked for in connect
-- moves to requested_perms. Sessions made before this migration could call sign_psbt (and the
-- session methods) and nothing else, so that is exactly what they keep.
ALTER TABLE client_sessions ADD COLUMN requested_perms TEXT NOT NULL DEFAULT '';
ALTER TABLE client_sessions ADD COLUMN relays TEXT NOT NULL DEFAULT '[]'; -- JSON list: the client's relays (nostrconnect)
ALTER TABLE client_sessions ADD COLUMN name TEXT NOT NULL DEFAULT '';     -- display name (nostrconnect name=), a hint only
UPDATE client_sessions SET requested_perms = perms, perms = 'sign_psbt';

-- A nostrconnect:// URI accepted with `cosigner connect`: the running daemon sends the connect
-- response carrying the client's secret on the client's relays, then clears the secret.
CREATE TABLE nostrconnect_pending (
	client_pubkey TEXT PRIMARY KEY,
	secret        TEXT NOT NULL,          -- the client's secret to echo back; '' once done
	relays        TEXT NOT NULL,          -- JSON list
	state         TEXT NOT NULL,          -- pending | sent | failed | expired
	error         TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL
);
