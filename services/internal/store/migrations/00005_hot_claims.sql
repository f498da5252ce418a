-- +goose Up
-- A claim (queued or failed -> sending; attempts, fencing token, lease)
-- happens once per attempt. PostgreSQL writes an update as a heap-only
-- tuple (HOT: no new entry in any index, no index WAL) when no column an
-- index covers, in its key or in its predicate, changes value and the new
-- version fits on the row's page (PostgreSQL 15 documentation, §73.7
-- "Heap-Only Tuples (HOT)"). status was in emails_open_idx's key and in
-- the predicates of emails_open_idx and emails_dead_idx, so every claim
-- wrote a new entry in the primary key and in emails_open_idx.
--
-- stage keeps only what the indexes need: whether a message is still on
-- its way (open), sent or dead. A claim does not change it, so no index
-- covers a column a claim writes, and a claim is HOT when its page has
-- room: the fillfactor keeps three tenths of each new page free for the
-- versions a message's relay mark, claim and outcome write.
ALTER TABLE emails ADD COLUMN stage text NOT NULL
    GENERATED ALWAYS AS (CASE WHEN status IN ('sent', 'dead') THEN status ELSE 'open' END) STORED;

ALTER TABLE emails SET (fillfactor = 70);

-- Rows still on their way, for the sweeps and the queue-depth counts.
DROP INDEX emails_open_idx;
CREATE INDEX emails_open_idx ON emails (created_at) WHERE stage = 'open';

-- Dead messages, for reprocessing and the dead-letter gauge.
DROP INDEX emails_dead_idx;
CREATE INDEX emails_dead_idx ON emails (created_at) WHERE stage = 'dead';

-- +goose Down
DROP INDEX emails_dead_idx;
CREATE INDEX emails_dead_idx ON emails (created_at) WHERE status = 'dead';
DROP INDEX emails_open_idx;
CREATE INDEX emails_open_idx ON emails (status, created_at)
    WHERE status IN ('queued', 'sending', 'failed');
ALTER TABLE emails RESET (fillfactor);
ALTER TABLE emails DROP COLUMN stage;
