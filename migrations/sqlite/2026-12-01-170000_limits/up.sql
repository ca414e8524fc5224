-- Rate limits (requests and tokens per window, requests in flight) on accounts, keys and token
-- groups (a group's values apply to each of its keys that has none of its own), and weekly
-- and monthly spend limits on accounts and keys. NULL: no limit. Weekly and monthly counters
-- follow the latest period they have seen, like the daily ones: `spent_week_no` is the UTC
-- week (from Monday) and `spent_month_no` the UTC month (year * 12 + month - 1) they count.
ALTER TABLE accounts ADD COLUMN rpm BIGINT;
ALTER TABLE accounts ADD COLUMN tpm BIGINT;
ALTER TABLE accounts ADD COLUMN max_concurrent BIGINT;
ALTER TABLE accounts ADD COLUMN weekly_limit BIGINT;
ALTER TABLE accounts ADD COLUMN monthly_limit BIGINT;
ALTER TABLE accounts ADD COLUMN spent_week BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN spent_week_no BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN spent_month BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN spent_month_no BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN rpm BIGINT;
ALTER TABLE api_keys ADD COLUMN tpm BIGINT;
ALTER TABLE api_keys ADD COLUMN max_concurrent BIGINT;
ALTER TABLE api_keys ADD COLUMN weekly_limit BIGINT;
ALTER TABLE api_keys ADD COLUMN monthly_limit BIGINT;
ALTER TABLE api_keys ADD COLUMN spent_week BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN spent_week_no BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN spent_month BIGINT NOT NULL DEFAULT 0;
ALTER TABLE api_keys ADD COLUMN spent_month_no BIGINT NOT NULL DEFAULT 0;
ALTER TABLE token_groups ADD COLUMN rpm BIGINT;
ALTER TABLE token_groups ADD COLUMN tpm BIGINT;
ALTER TABLE token_groups ADD COLUMN max_concurrent BIGINT;

-- Rate allowances leased to data planes. A row with `slot >= 0` is what one data plane was
-- granted of one key's requests and tokens in one slot (a sixth of the rate window; see
-- README "Limits"), lowered to what it really used once the slot is over; a grant counts
-- against the key's and its account's limits for the window that follows it. A row with
-- `slot = -1` is the data plane's concurrency lease for the key: `concurrent` requests in
-- flight, until `expires_at` (unix micros).
CREATE TABLE rate_grants (
    key_id BIGINT NOT NULL REFERENCES api_keys (id),
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    node_id TEXT NOT NULL,
    slot BIGINT NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0,
    tokens BIGINT NOT NULL DEFAULT 0,
    concurrent BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, node_id, slot)
);
CREATE INDEX rate_grants_account ON rate_grants (account_id, slot);
