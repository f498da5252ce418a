package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// A claim is one delivery attempt's hold on its row: status sending, a
// fencing token (Email.Token) and a lease that ends at lease_expires_at
// unless renewed. Every time is Postgres' now(), never a worker's clock.
//
// Every outcome write (MarkSent, MarkFailed, MarkDead, Release) names the
// token it holds and applies only while the row is still sending under
// it; otherwise it changes nothing and returns a *StaleError. So an
// attempt that lost its claim (its lease expired and another worker
// claimed the row) can never overwrite the newer attempt's outcome.
//
// The sweeps' presumptions (ReleaseExpired's dead after an expired last
// attempt, DeadLetter's dead for a poison entry) do not take a new token:
// should the attempt that held it still learn that the relay accepted the
// message, its MarkSent wins, because that is what happened.

// ErrStale is matched (errors.Is) by every *StaleError.
var ErrStale = errors.New("stale claim")

// StaleError is an outcome write refused because the claim it names is no
// longer held.
type StaleError struct {
	ID string
	// Token is the token the write named; Current and Status are the
	// row's (Status is empty when the row is gone).
	Token, Current int64
	Status         string
}

func (e *StaleError) Error() string {
	if e.Status == "" {
		return fmt.Sprintf("stale claim on %s (token %d): the row is gone", e.ID, e.Token)
	}
	return fmt.Sprintf("stale claim on %s: token %d, the row is %s under token %d", e.ID, e.Token, e.Status, e.Current)
}

// Is makes errors.Is(err, ErrStale) true.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// Claim is a claimed row.
type Claim struct {
	Email
	// TookOver is set when the claim replaced one whose lease had
	// expired (its worker died, or lost Postgres for longer than the
	// lease); that claim's token is Token-1.
	TookOver bool
}

// Claim takes the message for one delivery attempt: queued or failed (and
// due) becomes sending, attempts and the fencing token go up by one, and
// the lease runs until now() + lease. A row whose claim's lease expired is
// claimed again (taken over). The message_id is set once, to messageID,
// and kept for every later attempt. ok is false when the row is not
// claimable: already sent or dead, not due yet, under a live claim, gone,
// or at maxAttempts already (see ReleaseExpired). The caller then just
// acknowledges the stream entry.
func (s *Store) Claim(ctx context.Context, id, messageID string, lease time.Duration, maxAttempts int) (c Claim, ok bool, err error) {
	row := s.pool.QueryRow(ctx, `
		UPDATE emails
		SET status = 'sending', attempts = attempts + 1, fencing_token = fencing_token + 1,
		    sending_since = now(), lease_expires_at = now() + make_interval(secs => $3),
		    message_id = coalesce(message_id, $2), updated_at = now()
		FROM (SELECT id AS prev_id, status AS prev_status FROM emails WHERE id = $1 FOR UPDATE) prev
		WHERE id = prev_id AND attempts < $4
		  AND (
		    (status IN ('queued', 'failed') AND (next_attempt_at IS NULL OR next_attempt_at <= now()))
		    OR (status = 'sending' AND lease_expires_at < now())
		  )
		RETURNING `+emailColumns+`, prev_status = 'sending'`, id, messageID, lease.Seconds(), maxAttempts)
	e := &c.Email
	err = row.Scan(&e.ID, &e.Assunto, &e.Mensagem, &e.Status, &e.Attempts, &e.LastError,
		&e.CreatedAt, &e.NextAttemptAt, &e.SentAt, &e.MessageID, &e.Token, &e.Traceparent, &e.Tracestate, &c.TookOver)
	if errors.Is(err, pgx.ErrNoRows) {
		return Claim{}, false, nil
	}
	if err != nil {
		return Claim{}, false, fmt.Errorf("claim %s: %w", id, err)
	}
	return c, true, nil
}

// Lease names one claim: a row and the token its claim was given.
type Lease struct {
	ID    string
	Token int64
}

// RenewLeases extends to now() + lease every claim in leases that is still
// held (the row is sending under that token), in one statement, and
// returns the ones that are not: taken over by another worker, or finished
// by a sweep. A worker calls it every lease/3 for all its sends in flight.
func (s *Store) RenewLeases(ctx context.Context, leases []Lease, lease time.Duration) (lost []Lease, err error) {
	if len(leases) == 0 {
		return nil, nil
	}
	ids := make([]string, len(leases))
	tokens := make([]int64, len(leases))
	for i, l := range leases {
		ids[i], tokens[i] = l.ID, l.Token
	}
	rows, err := s.pool.Query(ctx, `
		UPDATE emails e SET lease_expires_at = now() + make_interval(secs => $3)
		FROM unnest($1::uuid[], $2::bigint[]) AS c(id, token)
		WHERE e.id = c.id AND e.fencing_token = c.token AND e.status = 'sending'
		RETURNING e.id::text`, ids, tokens, lease.Seconds())
	if err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	held := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("renew leases: %w", err)
		}
		held[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("renew leases: %w", err)
	}
	for _, l := range leases {
		if !held[l.ID] {
			lost = append(lost, l)
		}
	}
	return lost, nil
}

// MarkSent records a successful delivery by the claim with token. It
// returns a *StaleError when that claim is no longer held.
func (s *Store) MarkSent(ctx context.Context, id string, token int64) error {
	return s.finish(ctx, "mark sent", id, token, `
		status = 'sent', sent_at = now(), next_attempt_at = NULL`,
		// A sweep's presumed dead keeps the token: the truth wins.
		"'sending', 'dead'")
}

// MarkFailed records a transient failure and when to try again, delay
// from now (Postgres' clock). The row goes back to the outbox, which
// publishes it once it is due.
func (s *Store) MarkFailed(ctx context.Context, id string, token int64, reason string, delay time.Duration) error {
	return s.finish(ctx, "mark failed", id, token, `
		status = 'failed', last_error = $3, next_attempt_at = now() + make_interval(secs => $4),
		published_at = NULL`, "'sending'", reason, delay.Seconds())
}

// MarkDead records a permanent failure (or the last allowed attempt).
func (s *Store) MarkDead(ctx context.Context, id string, token int64, reason string) error {
	return s.finish(ctx, "mark dead", id, token, `
		status = 'dead', last_error = $3, next_attempt_at = NULL`, "'sending'", reason)
}

// Release gives the claim back without an outcome, for an attempt this
// worker interrupted itself (shutdown): the row is queued again and goes
// back to the outbox at once, and the attempt does not count against
// MAX_ATTEMPTS (the fencing token still moved on). reason is kept as
// last_error.
func (s *Store) Release(ctx context.Context, id string, token int64, reason string) error {
	return s.finish(ctx, "release", id, token, `
		status = 'queued', attempts = attempts - 1, last_error = $3, next_attempt_at = NULL,
		published_at = NULL`, "'sending'", reason)
}

// finish runs one outcome write: set applies only to the row with id, in
// one of the statuses, under token ($1 is the id, $2 the token, args
// follow). The row as it was is read in the same statement, so a refusal
// names the current token.
func (s *Store) finish(ctx context.Context, what, id string, token int64, set, statuses string, args ...any) error {
	var applied, current int64
	var status string
	err := s.pool.QueryRow(ctx, `
		WITH cur AS (SELECT status, fencing_token FROM emails WHERE id = $1),
		upd AS (
		    UPDATE emails SET `+set+`, sending_since = NULL, lease_expires_at = NULL, updated_at = now()
		    WHERE id = $1 AND fencing_token = $2 AND status IN (`+statuses+`)
		    RETURNING 1)
		SELECT (SELECT count(*) FROM upd), coalesce((SELECT status FROM cur), ''),
		       coalesce((SELECT fencing_token FROM cur), 0)`,
		append([]any{id, token}, args...)...).Scan(&applied, &status, &current)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if applied == 0 {
		return &StaleError{ID: id, Token: token, Current: current, Status: status}
	}
	return nil
}

// ReleaseExpired acts on the claims whose lease expired (their worker died
// or lost Postgres for longer than the lease): below maxAttempts the row
// goes back on the outbox, so another worker claims it (a takeover); at
// maxAttempts, where no claim may follow, the row is recorded dead, since
// whether the relay got that last attempt is unknown. It returns how many
// rows it released and how many it recorded dead.
func (s *Store) ReleaseExpired(ctx context.Context, maxAttempts int) (released, dead int64, err error) {
	err = s.pool.QueryRow(ctx, `
		WITH expired AS (
		    SELECT id, attempts FROM emails
		    WHERE status = 'sending' AND lease_expires_at < now()
		    FOR UPDATE SKIP LOCKED),
		rel AS (
		    UPDATE emails e SET published_at = NULL
		    FROM expired x
		    WHERE e.id = x.id AND x.attempts < $1 AND e.published_at IS NOT NULL
		    RETURNING 1),
		dead AS (
		    UPDATE emails e SET status = 'dead', next_attempt_at = NULL, updated_at = now(),
		        last_error = format('the lease of attempt %s of %s expired: its worker stopped or lost Postgres mid-send, and whether the relay got the message is unknown', x.attempts, $1::int)
		    FROM expired x
		    WHERE e.id = x.id AND x.attempts >= $1
		    RETURNING 1)
		SELECT (SELECT count(*) FROM rel), (SELECT count(*) FROM dead)`, maxAttempts).Scan(&released, &dead)
	if err != nil {
		return 0, 0, fmt.Errorf("release expired: %w", err)
	}
	return released, dead, nil
}

// DeadLetter records the message dead with reason, for a stream entry
// that was delivered too many times without an outcome (a poison entry),
// unless the row is finished (sent or dead) or under a live claim, which
// another attempt holds. It reports whether it changed the row; a missing
// row is not an error.
func (s *Store) DeadLetter(ctx context.Context, id, reason string) (bool, error) {
	tag, err := s.pool.Exec(ctx, `
		UPDATE emails SET status = 'dead', last_error = $2, next_attempt_at = NULL, updated_at = now()
		WHERE id = $1
		  AND (status IN ('queued', 'failed') OR (status = 'sending' AND lease_expires_at < now()))`, id, reason)
	if err != nil {
		return false, fmt.Errorf("dead-letter %s: %w", id, err)
	}
	return tag.RowsAffected() == 1, nil
}

// Requeue sends messages through delivery again: the ones with the given
// ids, or when ids is empty every message with one of the given statuses.
// Attempts start over (the fencing token does not); last_error is kept for
// the record. Messages being sent right now are never touched.
func (s *Store) Requeue(ctx context.Context, ids []string, statuses []string) (int64, error) {
	var tag interface{ RowsAffected() int64 }
	var err error
	const set = `UPDATE emails SET status = 'queued', attempts = 0, next_attempt_at = NULL,
		published_at = NULL, sending_since = NULL, lease_expires_at = NULL, updated_at = now() `
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
