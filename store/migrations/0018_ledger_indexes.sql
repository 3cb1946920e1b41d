-- Indexes for every query a request (or the spend exposure's reconcile) runs, so that none of
-- them reads a number of rows that grows with the spend ledger, the signing requests or the audit
-- log (store/plan_test.go checks each query's plan).

-- The reconcile's reorg check: settled entries whose fact is in a block at or above a height
-- (SettledAbove: one index per state).
CREATE INDEX spend_ledger_conf_height ON spend_ledger(state, conf_height);
CREATE INDEX spend_ledger_invalid_height ON spend_ledger(state, invalid_height);
-- Retention keeps the requests a ledger entry references (store/retention.go, keptRequest).
CREATE INDEX spend_ledger_request ON spend_ledger(client_pubkey, request_id);

-- A client's rate limit counts its requests since a time (CountRequests); approve and
-- psbt_status name a request by its unsigned txid (HoldsForApproval, FindSignRequests).
CREATE INDEX sign_requests_client_at ON sign_requests(client_pubkey, created_at);
CREATE INDEX sign_requests_txid ON sign_requests(unsigned_txid);

-- Holds by state (the waiting ones, the ended ones not yet answered) and by request id alone.
CREATE INDEX holds_state ON holds(state, responded);
CREATE INDEX holds_request ON holds(request_id);
