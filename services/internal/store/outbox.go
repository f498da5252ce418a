package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pending is a committed message waiting to be put on the stream.
type Pending struct {
	ID          string
	Traceparent string
	Tracestate  string
}

// PublishPending locks up to limit rows that are due to be published
// (FOR UPDATE SKIP LOCKED, so several relays share the work), hands them to
// publish, and marks them published in the same transaction. If publish
// fails nothing is marked and the rows are tried again later; if the commit
// fails after publish succeeded the rows are published twice, which the
// worker's conditional claim makes harmless.
func (s *Store) PublishPending(ctx context.Context, limit int, publish func(context.Context, []Pending) error) (int, error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("outbox begin: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))

	rows, err := tx.Query(ctx, `
		SELECT id::text, coalesce(traceparent, ''), coalesce(tracestate, '')
		FROM emails
		WHERE published_at IS NULL
		  AND (
		    (status IN ('queued', 'failed') AND (next_attempt_at IS NULL OR next_attempt_at <= now()))
		    -- released by ReleaseExpired: its worker vanished mid-send
		    OR status = 'sending'
		  )
		ORDER BY created_at
		LIMIT $1
		FOR UPDATE SKIP LOCKED`, limit)
	if err != nil {
		return 0, fmt.Errorf("outbox select: %w", err)
	}
	batch, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Pending, error) {
		var p Pending
		err := r.Scan(&p.ID, &p.Traceparent, &p.Tracestate)
		return p, err
	})
	if err != nil {
		return 0, fmt.Errorf("outbox select: %w", err)
	}
	if len(batch) == 0 {
		return 0, nil
	}
	if err := publish(ctx, batch); err != nil {
		return 0, err
	}
	ids := make([]string, len(batch))
	for i, p := range batch {
		ids[i] = p.ID
	}
	if _, err := tx.Exec(ctx, `
		UPDATE emails SET published_at = now(), publish_count = publish_count + 1
		WHERE id = ANY($1::uuid[])`, ids); err != nil {
		return 0, fmt.Errorf("outbox mark: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("outbox commit: %w", err)
	}
	return len(batch), nil
}

// RepublishStale puts back on the outbox the messages that were published
// longer than after ago and never taken by a worker, in case the stream
// lost them. It returns how many it put back.
func (s *Store) RepublishStale(ctx context.Context, after time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE emails SET published_at = NULL
		WHERE status IN ('queued', 'failed')
		  AND published_at IS NOT NULL
		  AND published_at < now() - make_interval(secs => $1)`, after.Seconds())
	if err != nil {
		return 0, fmt.Errorf("republish stale: %w", err)
	}
	return tag.RowsAffected(), nil
}

// RepublishAll puts every undelivered published message back on the
// outbox. The relay calls it when it finds the stream was lost (Redis
// restarted empty or was flushed).
func (s *Store) RepublishAll(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE emails SET published_at = NULL
		WHERE status IN ('queued', 'failed') AND published_at IS NOT NULL`)
	if err != nil {
		return 0, fmt.Errorf("republish all: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Depth counts the messages on their way, by status, for the queue-depth
// gauges.
type Depth struct {
	Queued, Sending, Failed, Dead int64
	// Unpublished is the outbox: committed rows not yet on the stream.
	Unpublished int64
	// OldestWaiting is the age of the oldest queued or failed message.
	OldestWaiting time.Duration
}

// Depth measures the table in one statement.
func (s *Store) Depth(ctx context.Context) (Depth, error) {
	var d Depth
	var oldest float64
	err := s.pool.QueryRow(ctx, `
		SELECT count(*) FILTER (WHERE status = 'queued'),
		       count(*) FILTER (WHERE status = 'sending'),
		       count(*) FILTER (WHERE status = 'failed'),
		       count(*) FILTER (WHERE status = 'dead'),
		       count(*) FILTER (WHERE published_at IS NULL AND status <> 'dead'),
		       coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE status IN ('queued', 'failed'))), 0)
		FROM emails
		WHERE status IN ('queued', 'sending', 'failed', 'dead')`).
		Scan(&d.Queued, &d.Sending, &d.Failed, &d.Dead, &d.Unpublished, &oldest)
	if err != nil {
		return d, fmt.Errorf("depth: %w", err)
	}
	d.OldestWaiting = time.Duration(oldest * float64(time.Second))
	return d, nil
}
