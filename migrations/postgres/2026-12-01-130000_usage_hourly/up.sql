-- Hourly usage aggregates: requests, tokens and cost per account, key, model, channel and UTC
-- hour (`hour` is the hour's first microsecond). Written in the same transaction as the usage
-- records they count, once per newly recorded request (a re-delivered report changes neither),
-- so summaries and dashboards read these few rows instead of every record, and keep working
-- after retention has deleted the records.
CREATE TABLE usage_hourly (
    account_id BIGINT NOT NULL,
    key_id BIGINT NOT NULL,
    model TEXT NOT NULL,
    channel TEXT NOT NULL,
    hour BIGINT NOT NULL,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    cached_input_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost BIGINT NOT NULL,
    PRIMARY KEY (account_id, hour, key_id, model, channel)
);
CREATE INDEX usage_hourly_key ON usage_hourly (key_id, hour);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);

-- The records already there.
INSERT INTO usage_hourly (account_id, key_id, model, channel, hour, requests, input_tokens,
                          cached_input_tokens, cache_write_tokens, output_tokens, cost)
SELECT account_id, key_id, model, channel, created_at - created_at % 3600000000, COUNT(*),
       CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT),
       CAST(SUM(cache_write_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT),
       CAST(SUM(cost) AS BIGINT)
FROM usage_records
GROUP BY account_id, key_id, model, channel, created_at - created_at % 3600000000;
