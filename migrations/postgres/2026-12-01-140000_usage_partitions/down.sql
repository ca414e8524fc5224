ALTER TABLE usage_records RENAME TO usage_records_partitioned;
ALTER TABLE usage_records_partitioned RENAME CONSTRAINT usage_records_pkey TO usage_records_partitioned_pkey;
DROP INDEX usage_records_account_time;
DROP INDEX usage_records_key_time;
DROP INDEX usage_records_request;
CREATE TABLE usage_records (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    key_id BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    model TEXT NOT NULL,
    channel TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    status TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    first_byte_ms BIGINT NOT NULL,
    node_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    usage_adjusted BOOLEAN NOT NULL DEFAULT FALSE,
    requested_model TEXT
);
INSERT INTO usage_records (request_id, key_id, account_id, model, channel, endpoint, input_tokens,
                           cached_input_tokens, cache_write_tokens, output_tokens, cost, status,
                           duration_ms, first_byte_ms, node_id, created_at, usage_adjusted, requested_model)
SELECT request_id, key_id, account_id, model, channel, endpoint, input_tokens, cached_input_tokens,
       cache_write_tokens, output_tokens, cost, status, duration_ms, first_byte_ms, node_id,
       created_at, usage_adjusted, requested_model
FROM usage_records_partitioned ORDER BY created_at, request_id;
CREATE INDEX usage_records_time ON usage_records (created_at, request_id);
CREATE INDEX usage_records_account_time ON usage_records (account_id, created_at, request_id);
CREATE INDEX usage_records_key_time ON usage_records (key_id, created_at, request_id);
DROP TABLE usage_records_partitioned;
DROP FUNCTION router_drop_usage_partitions(BIGINT);
DROP FUNCTION router_usage_partitions(BIGINT, BIGINT);
DROP FUNCTION router_usage_partition(BIGINT);
DROP TABLE usage_request_ids;
