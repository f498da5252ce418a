-- +goose Up
-- Dead messages wait for someone to reprocess them; the queue-depth gauge
-- counts them on every scrape.
CREATE INDEX emails_dead_idx ON emails (created_at) WHERE status = 'dead';

-- +goose Down
DROP INDEX emails_dead_idx;
