-- Model aliases: a name clients send (or, ending in `*`, a prefix of names) served and billed
-- as another, priced model.
CREATE TABLE model_aliases (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    target TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX model_aliases_version ON model_aliases (version);

-- The model name the client asked for, where it differs from the model billed (an alias).
ALTER TABLE usage_records ADD COLUMN requested_model TEXT;
