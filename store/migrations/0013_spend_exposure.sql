-- Spend exposure (replaces the release-by-time ledger of 0005). A signed transaction is
-- outstanding from signing until a fact the co-signer checked itself settles it:
--   confirmed   — it is in a block of the watcher's header chain (merkle proof checked):
--                 conf_height, conf_hash and conf_at (the header's time, never before
--                 reserved_at) say where; windows count it at conf_at from then on;
--   invalidated — one of its inputs is spent by a different transaction in such a block:
--                 invalid_by, invalid_height, invalid_hash say which; it no longer counts.
-- A settled entry becomes outstanding again only when the watcher's header chain no longer has
-- the block of its fact (a reorg). Time alone never settles anything; release_after is unused.
-- Outstanding entries count in every window whatever their age; entries sharing an input
-- (RBF replacements) count as the heaviest set of them that could confirm together.
ALTER TABLE spend_ledger ADD COLUMN conf_height INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spend_ledger ADD COLUMN conf_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE spend_ledger ADD COLUMN conf_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spend_ledger ADD COLUMN invalid_by TEXT NOT NULL DEFAULT '';
ALTER TABLE spend_ledger ADD COLUMN invalid_height INTEGER NOT NULL DEFAULT 0;
ALTER TABLE spend_ledger ADD COLUMN invalid_hash TEXT NOT NULL DEFAULT '';

-- Rows of the old model become outstanding: none of their old states is a checked fact.
-- reserved/replaced: still signed and possibly unbroadcast; spent: seen spent, perhaps only in a
-- mempool; released: released by time (still valid) or by a spend perhaps only invented. The
-- first reconcile after the watcher's sync settles each from proven facts (confirmed at its
-- block's time, or invalidated); until then they all count, which can only refuse more.
UPDATE spend_ledger SET state = 'outstanding', replaced_by = '' WHERE state IN ('reserved', 'spent', 'released', 'replaced');

CREATE INDEX spend_ledger_state ON spend_ledger(state, conf_at);
CREATE INDEX spend_ledger_inputs_txid ON spend_ledger_inputs(txid);
