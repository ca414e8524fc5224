DROP TABLE sign_in_attempts;
DROP TABLE account_sessions;
DROP INDEX accounts_email;
ALTER TABLE accounts DROP COLUMN disabled;
ALTER TABLE accounts DROP COLUMN password_hash;
ALTER TABLE accounts DROP COLUMN email;
