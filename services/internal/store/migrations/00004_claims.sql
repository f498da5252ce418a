-- +goose Up
-- A delivery attempt's claim on its row. fencing_token grows by one with
-- every claim and never goes back, not even when `worker reprocess` starts
-- attempts over, so a write from an attempt that lost its claim is told
-- apart and refused. lease_expires_at is when the claim ends unless its
-- worker renews it (every WORKER_LEASE/3 while the send runs), always from
-- Postgres' clock.
ALTER TABLE emails
    ADD COLUMN fencing_token    bigint NOT NULL DEFAULT 0 CHECK (fencing_token >= 0),
    ADD COLUMN lease_expires_at timestamptz;

-- Claims taken before the lease was renewed ended 60 seconds (the old
-- default lease) after the attempt started.
UPDATE emails SET fencing_token = attempts,
    lease_expires_at = CASE WHEN status = 'sending' THEN sending_since + interval '60 seconds' END;

-- +goose Down
ALTER TABLE emails DROP COLUMN fencing_token, DROP COLUMN lease_expires_at;
