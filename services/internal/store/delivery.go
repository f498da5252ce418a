package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Claim takes the message for one delivery attempt: queued or failed (and
// due) becomes sending, attempts goes up by one, and the lease starts. A
// message whose previous attempt outlived lease may be claimed again. ok is
// false when the row is not claimable (already sent, dead, or being sent by
// someone else): the caller just acknowledges the stream entry.
func (s *Store) Claim(ctx context.Context, id, messageID string, lease time.Duration) (e Email, ok bool, err error) {
	e, err = scanEmail(s.pool.QueryRow(ctx, `
		UPDATE emails
		SET status = 'sending', attempts = attempts + 1, sending_since = now(),
		    message_id = coalesce(message_id, $2), updated_at = now()
		WHERE id = $1
		  AND (
		    (status IN ('queued', 'failed') AND (next_attempt_at IS NULL OR next_attempt_at <= now()))
		    OR (status = 'sending' AND sending_since < now() - make_interval(secs => $3))
		  )
		RETURNING `+emailColumns, id, messageID, lease.Seconds()))
	if errors.Is(err, ErrNotFound) {
		return Email{}, false, nil
	}
	if err != nil {
		return Email{}, false, fmt.Errorf("claim %s: %w", id, err)
	}
	return e, true, nil
}

// MarkSent records a successful delivery.
func (s *Store) MarkSent(ctx context.Context, id string) error {
	return s.exec(ctx, "mark sent", `
		UPDATE emails
		SET status = 'sent', sent_at = now(), sending_since = NULL, next_attempt_at = NULL, updated_at = now()
		WHERE id = $1 AND status = 'sending'`, id)
}

// MarkFailed records a transient failure and when to try again. The row
// goes back to the outbox, which publishes it once it is due.
func (s *Store) MarkFailed(ctx context.Context, id, reason string, next time.Time) error {
	return s.exec(ctx, "mark failed", `
		UPDATE emails
		SET status = 'failed', last_error = $2, next_attempt_at = $3,
		    sending_since = NULL, published_at = NULL, updated_at = now()
		WHERE id = $1 AND status = 'sending'`, id, reason, next)
}

// MarkDead records a permanent failure (or the last allowed attempt).
func (s *Store) MarkDead(ctx context.Context, id, reason string) error {
	return s.exec(ctx, "mark dead", `
		UPDATE emails
		SET status = 'dead', last_error = $2, sending_since = NULL, next_attempt_at = NULL, updated_at = now()
		WHERE id = $1 AND status = 'sending'`, id, reason)
}

// ReleaseExpired puts back on the outbox the messages whose delivery
// attempt started more than lease ago and never finished (their worker
// died), so another worker takes them over.
func (s *Store) ReleaseExpired(ctx context.Context, lease time.Duration) (int64, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE emails SET published_at = NULL
		WHERE status = 'sending' AND published_at IS NOT NULL
		  AND sending_since < now() - make_interval(secs => $1)`, lease.Seconds())
	if err != nil {
		return 0, fmt.Errorf("release expired: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Requeue sends messages through delivery again: the ones with the given
// ids, or when ids is empty every message with one of the given statuses.
// Attempts start over; last_error is kept for the record. Messages being
// sent right now are never touched.
func (s *Store) Requeue(ctx context.Context, ids []string, statuses []string) (int64, error) {
	var tag interface{ RowsAffected() int64 }
	var err error
	const set = `UPDATE emails SET status = 'queued', attempts = 0, next_attempt_at = NULL,
		published_at = NULL, sending_since = NULL, updated_at = now() `
	if len(ids) > 0 {
		tag, err = s.pool.Exec(ctx, set+`WHERE id = ANY($1::uuid[]) AND status <> 'sending'`, ids)
	} else {
		tag, err = s.pool.Exec(ctx, set+`WHERE status = ANY($1::text[]) AND status <> 'sending'`, statuses)
	}
	if err != nil {
		return 0, fmt.Errorf("requeue: %w", err)
	}
	return tag.RowsAffected(), nil
}

func (s *Store) exec(ctx context.Context, what, sql string, args ...any) error {
	if _, err := s.pool.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
