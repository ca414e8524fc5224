ALTER TABLE channels DROP COLUMN disabled_reason;
