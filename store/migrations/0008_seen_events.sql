-- NIP-46 request events the remote signer has handled, kept for the replay window (twice the
-- allowed created_at skew), so that a replay is refused across restarts too.
CREATE TABLE nip46_seen_events (
	event_id TEXT PRIMARY KEY,
	seen_at  INTEGER NOT NULL      -- unix seconds
);
CREATE INDEX nip46_seen_events_at ON nip46_seen_events(seen_at);
