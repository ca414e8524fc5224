-- The protocol the client spoke and the one the upstream did (they differ on a converted
-- request); empty on records from before.
ALTER TABLE usage_records ADD COLUMN client_protocol TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_records ADD COLUMN upstream_protocol TEXT NOT NULL DEFAULT '';
