-- NIP-46 client metadata (connect's fourth param {name, url, image}, or the name=/url=/image= of
-- a nostrconnect:// URI), validated, as display hints: never used to authorize anything.
-- client_sessions.name already holds the name; metadata keeps the validated fields as JSON.
-- metadata_note says what the client sent that was dropped (bad JSON, a non-http URL, …).
-- Sessions made before this migration keep their metadata JSON as the client sent it;
-- `cosigner clients list` reads it through the same validation.
ALTER TABLE client_sessions ADD COLUMN url TEXT NOT NULL DEFAULT '';
ALTER TABLE client_sessions ADD COLUMN image TEXT NOT NULL DEFAULT '';
ALTER TABLE client_sessions ADD COLUMN metadata_note TEXT NOT NULL DEFAULT '';
