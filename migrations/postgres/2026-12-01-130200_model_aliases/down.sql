ALTER TABLE usage_records DROP COLUMN requested_model;
DROP TABLE model_aliases;
