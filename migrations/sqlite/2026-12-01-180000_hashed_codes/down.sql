-- Hashed codes cannot be turned back into codes: they stay hashed (and unusable by an older
-- control plane).
ALTER TABLE redemption_codes DROP COLUMN code_prefix;
