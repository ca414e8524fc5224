-- Quota leases: amounts set aside for one key on one data plane. `held` is what the lease
-- still holds (granted and not yet spent by a reported request); it is never subtracted from
-- the balance, so a lease that ends refunds nothing. A lease holds only on its UTC `day` and
-- until `expires_at` (unix micros); grants drop dead leases of the account they serve.
CREATE TABLE leases (
    id TEXT PRIMARY KEY NOT NULL,
    key_id BIGINT NOT NULL REFERENCES api_keys (id),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    node_id TEXT NOT NULL,
    held BIGINT NOT NULL CHECK (held >= 0),
    day BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX leases_account ON leases (account_id);
CREATE INDEX leases_key ON leases (key_id);

-- A request is billed at most once: the usage record's unique request id already guarantees
-- it, and this makes a second `usage` debit for one request impossible as well.
CREATE UNIQUE INDEX ledger_usage_request ON ledger (request_id) WHERE request_id IS NOT NULL;
