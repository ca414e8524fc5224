-- Usage records are listed newest first by (created_at, request_id) and paged by keyset: each
-- page starts where the last one ended, found through one of these indexes, never by OFFSET.
CREATE INDEX usage_records_time ON usage_records (created_at, request_id);
DROP INDEX usage_records_account;
CREATE INDEX usage_records_account_time ON usage_records (account_id, created_at, request_id);
DROP INDEX usage_records_key;
CREATE INDEX usage_records_key_time ON usage_records (key_id, created_at, request_id);
