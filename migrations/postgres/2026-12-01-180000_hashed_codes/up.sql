-- Redemption codes are stored hashed: `code` holds `sha256:` + the hex SHA-256 of the code,
-- and `code_prefix` its first characters, for listing. The codes in clear are hashed here.
ALTER TABLE redemption_codes ADD COLUMN code_prefix TEXT NOT NULL DEFAULT '';
UPDATE redemption_codes
SET code_prefix = left(code, 4),
    code = 'sha256:' || encode(sha256(convert_to(code, 'UTF8')), 'hex')
WHERE code NOT LIKE 'sha256:%';
