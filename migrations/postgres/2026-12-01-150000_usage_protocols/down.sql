ALTER TABLE usage_records DROP COLUMN upstream_protocol;
ALTER TABLE usage_records DROP COLUMN client_protocol;
