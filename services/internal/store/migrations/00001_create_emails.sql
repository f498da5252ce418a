-- +goose Up
-- emails keeps every message ever accepted (the seed's table, grown up):
-- assunto and mensagem as in the seed, plus the delivery state machine and
-- the outbox bookkeeping that moves committed rows onto the Redis stream.
CREATE TABLE emails (
    id              uuid        PRIMARY KEY,
    assunto         varchar(100) NOT NULL,
    mensagem        varchar(250) NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    status          text        NOT NULL DEFAULT 'queued'
        CONSTRAINT emails_status_check
        CHECK (status IN ('queued', 'sending', 'sent', 'failed', 'dead')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    -- when a failed message may be tried again
    next_attempt_at timestamptz,
    -- when the current delivery attempt started (the lease)
    sending_since   timestamptz,
    sent_at         timestamptz,
    -- the SMTP Message-ID, stable across attempts
    message_id      text,
    -- W3C trace context of the request that created the row
    traceparent     text,
    tracestate      text,
    -- outbox: NULL while the row waits to be put on the stream
    published_at    timestamptz,
    publish_count   integer     NOT NULL DEFAULT 0
);

-- The relay's work list: rows not yet on the stream.
CREATE INDEX emails_unpublished_idx ON emails (created_at)
    WHERE published_at IS NULL;

-- Rows still on their way, for the sweeps and the queue-depth counts.
CREATE INDEX emails_open_idx ON emails (status, created_at)
    WHERE status IN ('queued', 'sending', 'failed');

-- +goose Down
DROP TABLE emails;
