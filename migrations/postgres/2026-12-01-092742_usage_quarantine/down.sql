DROP TABLE usage_quarantine;
ALTER TABLE usage_records DROP COLUMN usage_adjusted;
