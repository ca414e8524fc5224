-- Top-up orders through a payment provider (Stripe Checkout). An order is `pending` until the
-- provider's webhook says the session was paid (`paid`: the account is credited in the same
-- transaction, once) or that it expired (`expired`).
CREATE TABLE payment_orders (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account_id BIGINT NOT NULL REFERENCES accounts (id),
    provider TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    session_id TEXT UNIQUE,
    checkout_url TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    paid_at BIGINT
);
CREATE INDEX payment_orders_account ON payment_orders (account_id, id);
