package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pending is a committed message waiting to be put on the stream.
type Pending struct {
	ID          string
	Traceparent string
	Tracestate  string
}

// PublishPending takes up to limit rows that are due to be published, in
// creation order, and hands them to publish, in one transaction: one
// statement marks the rows published and returns them (FOR UPDATE SKIP
// LOCKED, so several relays share the work), publish puts them on the
// stream (one pipelined round trip), and the commit follows. If publish
// fails, or the process dies before the commit, nothing is marked and the
// rows are taken again on the next round (those publish did put on the
// stream are then there twice, which the worker's conditional claim makes
// harmless); if the commit fails after publish succeeded, the same. The
// transaction stays open across the Redis round trip on purpose: a mark
// committed before its XADD would leave, after a crash between the two,
// rows marked published that no stream holds.
func (s *Store) PublishPending(ctx context.Context, limit int, publish func(context.Context, []Pending) error) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("outbox begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	rows, err := tx.Query(ctx, `
		UPDATE emails SET published_at = now(), publish_count = publish_count + 1
		WHERE id IN (
		    SELECT id FROM emails
		    WHERE published_at IS NULL
		      AND (
		        (status IN ('queued', 'failed') AND (next_attempt_at IS NULL OR next_attempt_at <= now()))
		        -- released by ReleaseExpired: its worker vanished mid-send
		        OR status = 'sending'
		      )
		    ORDER BY created_at
		    LIMIT $1
		    FOR UPDATE SKIP LOCKED)
		RETURNING id::text, coalesce(traceparent, ''), coalesce(tracestate, ''), created_at`, limit)
	if err != nil {
		return 0, fmt.Errorf("outbox take: %w", err)
	}
	type taken struct {
		Pending
		created time.Time
	}
	batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (taken, error) {
		var t taken
		err := r.Scan(&t.ID, &t.Traceparent, &t.Tracestate, &t.created)
		return t, err
	})
	if err != nil {
		return 0, fmt.Errorf("outbox take: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	slices.SortFunc(batch, func(a, b taken) int { return a.created.Compare(b.created) })
	pending := make([]Pending, len(batch))
	for i, t := range batch {
		pending[i] = t.Pending
	}
	if err := publish(ctx, pending); err != nil {
		return 0, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("outbox commit: %w", err)
	}
	return len(batch), nil
}

// housekeepingBatch is the most rows one housekeeping statement touches:
// the sweeps work in bounded statements, each well inside the statement
// timeout, however large the table.
const housekeepingBatch = 1000

// inBatches runs stmt (which must touch at most housekeepingBatch rows,
// $1 being that limit) until it touches fewer, and returns the total.
func (s *Store) inBatches(ctx context.Context, what, stmt string, args ...any) (int64, error) {
	var total int64
	for {
		c, cancel := context.WithTimeout(ctx, s.queryTimeout*2)
		tag, err := s.pool.Exec(c, stmt, append([]any{housekeepingBatch}, args...)...)
		cancel()
		if err != nil {
			return total, fmt.Errorf("%s: %w", what, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < housekeepingBatch {
			return total, nil
		}
	}
}

// RepublishStale puts back on the outbox the messages that were published
// longer than after ago and never taken by a worker, in case the stream
// lost them. A healthy backlog is left alone: when streamOldest (the time
// of the oldest entry still on the stream) is given, only rows published
// longer than after before it count, since the stream keeps every entry
// not yet acknowledged and so still holds the entry of every row
// published since (after also covers a skew between Postgres' and Redis'
// clocks). It returns how many it put back, in bounded batches.
func (s *Store) RepublishStale(ctx context.Context, after time.Duration, streamOldest *time.Time) (int64, error) {
	return s.inBatches(ctx, "republish stale", `
		UPDATE emails SET published_at = NULL
		WHERE id IN (
		    SELECT id FROM emails
		    WHERE stage = 'open' AND status IN ('queued', 'failed')
		      AND published_at IS NOT NULL
		      AND published_at < least(now(), $3::timestamptz) - make_interval(secs => $2)
		    LIMIT $1
		    FOR UPDATE SKIP LOCKED)`, after.Seconds(), streamOldest)
}

// RepublishAll puts every undelivered published message back on the
// outbox, in bounded batches. The relay calls it when it finds the stream
// was lost (Redis restarted empty or was flushed).
func (s *Store) RepublishAll(ctx context.Context) (int64, error) {
	return s.inBatches(ctx, "republish all", `
		UPDATE emails SET published_at = NULL
		WHERE id IN (
		    SELECT id FROM emails
		    WHERE stage = 'open' AND status IN ('queued', 'failed') AND published_at IS NOT NULL
		    LIMIT $1
		    FOR UPDATE SKIP LOCKED)`)
}

// Depth counts the messages on their way, by status, for the queue-depth
// gauges.
type Depth struct {
	Queued, Sending, Failed int64
	// Unpublished is the outbox: committed rows not yet on the stream.
	Unpublished int64
	// OldestWaiting is the age of the oldest queued or failed message.
	OldestWaiting time.Duration
}

// Depth measures the messages still on their way in one statement. Each
// count reads only the rows of its partial index (emails_open_idx,
// emails_unpublished_idx), so the cost follows the backlog, never the
// table: sent rows are never read. The open rows' statuses are read from
// the table: no index covers status, so that a claim is a HOT update (see
// migration 00005).
func (s *Store) Depth(ctx context.Context) (Depth, error) {
	var d Depth
	var oldest float64
	err := s.pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE status = 'queued'),
		       count(*) FILTER (WHERE status = 'sending'),
		       count(*) FILTER (WHERE status = 'failed'),
		       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status IN ('queued', 'failed'))), 0),
		       (SELECT count(*) FROM emails WHERE published_at IS NULL AND stage <> 'dead')
		FROM emails
		WHERE stage = 'open'`).
		Scan(&d.Queued, &d.Sending, &d.Failed, &oldest, &d.Unpublished)
	if err != nil {
		return d, fmt.Errorf("depth: %w", err)
	}
	d.OldestWaiting = time.Duration(oldest * float64(time.Second))
	return d, nil
}

// DeadCount counts the dead messages (emails_dead_idx). They only grow
// until someone reprocesses them, so the gauge reads them less often than
// the others (see outbox.DepthCollector).
func (s *Store) DeadCount(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM emails WHERE stage = 'dead'`).Scan(&n); err != nil {
		return 0, fmt.Errorf("dead count: %w", err)
	}
	return n, nil
}
