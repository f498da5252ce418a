-- +goose Up
-- idempotency_keys.email_id references emails ON DELETE CASCADE: without an
-- index on it, deleting a message scans every remembered key to find the
-- ones to delete with it (a retention job deleting N messages reads the
-- whole key table N times). PostgreSQL indexes the referenced key, never
-- the referencing column (PostgreSQL 15 documentation, §5.4.5 "Foreign
-- Keys").
CREATE INDEX idempotency_keys_email_idx ON idempotency_keys (email_id);

-- +goose Down
DROP INDEX idempotency_keys_email_idx;
