DROP INDEX ledger_usage_request;
DROP TABLE leases;
