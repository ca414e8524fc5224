-- Usage an upstream reported beyond what the request allowed is replaced by the local count;
-- such records say so.
ALTER TABLE usage_records ADD COLUMN usage_adjusted BOOLEAN NOT NULL DEFAULT FALSE;

-- Usage reports refused as invalid (no retry could record them), set aside so that they never
-- block the reports behind them. `report` is the protobuf `UsageReport` as received; `digest`
-- (SHA-256 of it, hex) makes a replayed batch quarantine a report once.
CREATE TABLE usage_quarantine (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    node_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    key_id BIGINT NOT NULL,
    reason TEXT NOT NULL,
    report BYTEA NOT NULL,
    received_at BIGINT NOT NULL
);
