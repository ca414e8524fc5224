-- Code Router schema, SQLite flavour. Money is BIGINT nano-units, multipliers BIGINT
-- micro-units, times BIGINT unix microseconds (UTC), lists and maps JSON text.
-- Ids use AUTOINCREMENT so that, as with PostgreSQL identities, a deleted id is never reused.

-- One row: the policy version, bumped in the same transaction as every admin change.
CREATE TABLE policy_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO policy_state (id, version) VALUES (1, 1);

-- Entities removed from the policy, so a watcher can be told "everything since version N".
CREATE TABLE policy_removals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    version BIGINT NOT NULL,
    kind TEXT NOT NULL,
    entity_id BIGINT NOT NULL
);
CREATE INDEX policy_removals_version ON policy_removals (version);

CREATE TABLE token_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    multiplier_micros BIGINT NOT NULL CHECK (multiplier_micros >= 0),
    all_models BOOLEAN NOT NULL,
    models TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO token_groups (name, multiplier_micros, all_models, models, version, created_at)
VALUES ('default', 1000000, 1, '[]', 1, 0);

CREATE TABLE models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    billing TEXT NOT NULL CHECK (billing IN ('tokens', 'per_call')),
    input_price BIGINT,
    output_price BIGINT,
    cached_input_price BIGINT,
    cache_write_price BIGINT,
    per_call_price BIGINT,
    max_output_tokens BIGINT,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX models_version ON models (version);

CREATE TABLE model_groups (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    models TEXT NOT NULL,
    billing TEXT CHECK (billing IN ('tokens', 'per_call')),
    input_price BIGINT,
    output_price BIGINT,
    cached_input_price BIGINT,
    cache_write_price BIGINT,
    per_call_price BIGINT,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE channels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    channel_type TEXT NOT NULL,
    base_url TEXT NOT NULL,
    api_key TEXT NOT NULL,
    models TEXT NOT NULL,
    priority INTEGER NOT NULL,
    weight INTEGER NOT NULL,
    model_map TEXT NOT NULL,
    api_version TEXT,
    enabled BOOLEAN NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    group_id BIGINT NOT NULL REFERENCES token_groups (id),
    balance BIGINT NOT NULL,
    daily_limit BIGINT,
    spent_today BIGINT NOT NULL,
    spent_day BIGINT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX accounts_version ON accounts (version);

CREATE TABLE api_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL UNIQUE,
    group_id BIGINT REFERENCES token_groups (id),
    spend_limit BIGINT,
    spent BIGINT NOT NULL,
    daily_limit BIGINT,
    spent_today BIGINT NOT NULL,
    spent_day BIGINT NOT NULL,
    models TEXT NOT NULL,
    expires_at BIGINT,
    revoked BOOLEAN NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX api_keys_account ON api_keys (account_id);
CREATE INDEX api_keys_version ON api_keys (version);

CREATE TABLE redemption_codes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    code TEXT NOT NULL UNIQUE,
    amount BIGINT NOT NULL CHECK (amount > 0),
    redeemed_by BIGINT REFERENCES accounts (id),
    redeemed_at BIGINT,
    created_at BIGINT NOT NULL
);

-- Every balance change. An account's balance always equals the sum of its entries.
CREATE TABLE ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    kind TEXT NOT NULL CHECK (kind IN ('topup', 'redemption', 'usage', 'adjustment')),
    amount BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    request_id TEXT,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ledger_account ON ledger (account_id, id);

CREATE TABLE usage_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE,
    key_id BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    model TEXT NOT NULL,
    channel TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    status TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    first_byte_ms BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX usage_records_account ON usage_records (account_id, id);
CREATE INDEX usage_records_key ON usage_records (key_id, id);
