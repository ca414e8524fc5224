DROP INDEX usage_records_key_time;
CREATE INDEX usage_records_key ON usage_records (key_id, id);
DROP INDEX usage_records_account_time;
CREATE INDEX usage_records_account ON usage_records (account_id, id);
DROP INDEX usage_records_time;
