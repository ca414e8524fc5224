-- Why a disabled channel is disabled: 'admin' (routerctl channel disable; never re-enabled by
-- health checks) or 'health' (failed checks; enabled again by a passing one). NULL when enabled.
ALTER TABLE channels ADD COLUMN disabled_reason TEXT;
UPDATE channels SET disabled_reason = 'admin' WHERE NOT enabled;
