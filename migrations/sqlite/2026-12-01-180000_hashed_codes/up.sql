-- Redemption codes are stored hashed: `code` holds `sha256:` + the hex SHA-256 of the code,
-- and `code_prefix` its first characters, for listing. SQLite has no SHA-256 in SQL, so the
-- codes still in clear are hashed by the control plane at start, right after the migrations
-- (store::codes::hash_stored_plaintext); the prefix is filled here.
ALTER TABLE redemption_codes ADD COLUMN code_prefix TEXT NOT NULL DEFAULT '';
UPDATE redemption_codes SET code_prefix = substr(code, 1, 4) WHERE code NOT LIKE 'sha256:%';
