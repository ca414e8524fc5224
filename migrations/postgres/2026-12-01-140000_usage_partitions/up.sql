-- Usage records partitioned by month of `created_at` (UTC), so that retention drops whole
-- months instead of deleting rows one by one. Partitions are named `usage_records_pYYYYMM`;
-- the control plane creates them ahead of time (`router_usage_partitions`), and records of a
-- month without a partition (a clock far off) land in `usage_records_default`, from which
-- they move when their month's partition is created.
--
-- A partitioned table's unique constraints must include the partition key, so the primary key
-- is (created_at, request_id), and what makes ingestion exactly-once (one record per request
-- id, whatever its time) is `usage_request_ids`: a request id is recorded when its insert
-- there succeeds. Retention prunes it with the records (by the time the id was recorded).

CREATE TABLE usage_request_ids (
    request_id TEXT PRIMARY KEY,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX usage_request_ids_recorded ON usage_request_ids (recorded_at);

ALTER TABLE usage_records RENAME TO usage_records_unpartitioned;
ALTER TABLE usage_records_unpartitioned RENAME CONSTRAINT usage_records_pkey TO usage_records_unpartitioned_pkey;
ALTER TABLE usage_records_unpartitioned
    RENAME CONSTRAINT usage_records_request_id_key TO usage_records_unpartitioned_request_id_key;
DROP INDEX usage_records_time;
DROP INDEX usage_records_account_time;
DROP INDEX usage_records_key_time;

CREATE TABLE usage_records (
    request_id TEXT NOT NULL,
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
    -- Added by 2026-12-01-130200_model_aliases, which runs before this one.
    requested_model TEXT,
    -- Also the listing order's index.
    CONSTRAINT usage_records_pkey PRIMARY KEY (created_at, request_id)
) PARTITION BY RANGE (created_at);
CREATE INDEX usage_records_account_time ON usage_records (account_id, created_at, request_id);
CREATE INDEX usage_records_key_time ON usage_records (key_id, created_at, request_id);
-- Finds a record by its id (`--before`), in each partition.
CREATE INDEX usage_records_request ON usage_records (request_id);
CREATE TABLE usage_records_default PARTITION OF usage_records DEFAULT;

-- Creates the partition of the month `month` (unix micros) falls in, unless it exists, moving
-- that month's records out of the default partition; true when it created one.
CREATE FUNCTION router_usage_partition(month BIGINT) RETURNS BOOLEAN LANGUAGE plpgsql AS $$
DECLARE
    month_start TIMESTAMP := date_trunc('month', to_timestamp(month / 1000000.0) AT TIME ZONE 'UTC');
    low BIGINT := (extract(epoch FROM month_start AT TIME ZONE 'UTC') * 1000000)::BIGINT;
    high BIGINT := (extract(epoch FROM (month_start + INTERVAL '1 month') AT TIME ZONE 'UTC') * 1000000)::BIGINT;
    part_name TEXT := 'usage_records_p' || to_char(month_start, 'YYYYMM');
BEGIN
    -- Replicas maintaining partitions at once take turns.
    PERFORM pg_advisory_xact_lock(7215150002);
    IF to_regclass(part_name) IS NOT NULL THEN
        RETURN FALSE;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE usage_records INCLUDING DEFAULTS)', part_name);
    EXECUTE format('WITH moved AS (DELETE FROM usage_records_default WHERE created_at >= %s AND created_at < %s '
                   'RETURNING *) INSERT INTO %I SELECT * FROM moved', low, high, part_name);
    EXECUTE format('ALTER TABLE usage_records ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)', part_name, low, high);
    RETURN TRUE;
END $$;

-- Creates the partitions of every month from the one `since` falls in to the one `until`
-- falls in (unix micros); returns how many it created.
CREATE FUNCTION router_usage_partitions(since BIGINT, until BIGINT) RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    next_month TIMESTAMP := date_trunc('month', to_timestamp(since / 1000000.0) AT TIME ZONE 'UTC');
    created INTEGER := 0;
BEGIN
    WHILE next_month <= to_timestamp(until / 1000000.0) AT TIME ZONE 'UTC' LOOP
        IF router_usage_partition((extract(epoch FROM next_month AT TIME ZONE 'UTC') * 1000000)::BIGINT) THEN
            created := created + 1;
        END IF;
        next_month := next_month + INTERVAL '1 month';
    END LOOP;
    RETURN created;
END $$;

-- Drops the monthly partitions that end at or before `cutoff` (unix micros); returns how many.
CREATE FUNCTION router_drop_usage_partitions(cutoff BIGINT) RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    part RECORD;
    dropped INTEGER := 0;
BEGIN
    PERFORM pg_advisory_xact_lock(7215150002);
    FOR part IN
        SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'usage_records'::regclass AND c.relname ~ '^usage_records_p[0-9]{6}$'
    LOOP
        IF (extract(epoch FROM (to_date(substr(part.name, 16), 'YYYYMM') + INTERVAL '1 month')
                              AT TIME ZONE 'UTC') * 1000000)::BIGINT <= cutoff THEN
            EXECUTE format('DROP TABLE %I', part.name);
            dropped := dropped + 1;
        END IF;
    END LOOP;
    RETURN dropped;
END $$;

-- A partition for each month that has records (of the last three years; older ones stay in
-- the default partition) and for this month and the next two, then the records themselves.
SELECT router_usage_partition(month) FROM (
    SELECT DISTINCT (extract(epoch FROM date_trunc('month', to_timestamp(created_at / 1000000.0) AT TIME ZONE 'UTC')
                                        AT TIME ZONE 'UTC') * 1000000)::BIGINT AS month
    FROM usage_records_unpartitioned
    WHERE created_at >= (extract(epoch FROM now() - INTERVAL '3 years') * 1000000)::BIGINT
) AS months;
SELECT router_usage_partitions((extract(epoch FROM now()) * 1000000)::BIGINT,
                               (extract(epoch FROM now() + INTERVAL '2 months') * 1000000)::BIGINT);
INSERT INTO usage_records (request_id, key_id, account_id, model, channel, endpoint, input_tokens,
                           cached_input_tokens, cache_write_tokens, output_tokens, cost, status,
                           duration_ms, first_byte_ms, node_id, created_at, usage_adjusted,
                           requested_model)
SELECT request_id, key_id, account_id, model, channel, endpoint, input_tokens, cached_input_tokens,
       cache_write_tokens, output_tokens, cost, status, duration_ms, first_byte_ms, node_id,
       created_at, usage_adjusted, requested_model
FROM usage_records_unpartitioned;
INSERT INTO usage_request_ids (request_id, recorded_at)
SELECT request_id, created_at FROM usage_records_unpartitioned;
DROP TABLE usage_records_unpartitioned;
