-- The account console: accounts sign in with an email and a password (an argon2id hash in
-- PHC form), sessions are kept by the SHA-256 digest of their token, and sign-in attempts
-- are counted for the rate limit.
ALTER TABLE accounts ADD COLUMN email TEXT;
ALTER TABLE accounts ADD COLUMN password_hash TEXT;
ALTER TABLE accounts ADD COLUMN disabled BOOLEAN NOT NULL DEFAULT FALSE;
-- Emails are stored lowercase, so this is unique case-insensitively.
CREATE UNIQUE INDEX accounts_email ON accounts (email);

CREATE TABLE account_sessions (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX account_sessions_account ON account_sessions (account_id);

-- One row per sign-in attempt in progress or failed (a successful one is deleted).
CREATE TABLE sign_in_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id BIGINT,
    address TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX sign_in_attempts_account ON sign_in_attempts (account_id, created_at);
CREATE INDEX sign_in_attempts_address ON sign_in_attempts (address, created_at);
CREATE INDEX sign_in_attempts_time ON sign_in_attempts (created_at);
