-- +goose Up
-- idempotency_keys remembers, for 24 hours, which message an
-- Idempotency-Key created and a fingerprint of the request, so a retried
-- POST gets the original answer instead of a second message.
CREATE TABLE idempotency_keys (
    key         text        PRIMARY KEY,
    fingerprint bytea       NOT NULL,
    email_id    uuid        NOT NULL REFERENCES emails (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- +goose Down
DROP TABLE idempotency_keys;
