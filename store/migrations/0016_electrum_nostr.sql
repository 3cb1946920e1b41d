-- Kind-4 events of Electrum's psbt_nostr channel (signer/psbtnostr) that cosigner has taken in:
-- kept 24 hours like Electrum's own list of known events, so that an event delivered again (by
-- another relay, after a restart, or replayed) is never handled twice; longer while its request
-- waits in a hold (pending = 1), because the late answer goes to its sender.
CREATE TABLE electrum_nostr_events (
	event_id TEXT PRIMARY KEY,       -- hex
	sender   TEXT NOT NULL,          -- the event's author, hex x-only pubkey (a co-signer's derived key)
	label    TEXT NOT NULL DEFAULT '',
	seen_at  INTEGER NOT NULL,       -- unix seconds
	pending  INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX electrum_nostr_events_at ON electrum_nostr_events(seen_at);
