-- The daemon's trusted clock (internal/trustedtime): its last value, so that a restart
-- continues from it instead of trusting the wall clock.
CREATE TABLE trusted_clock (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	at_ms  INTEGER NOT NULL
);
