package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/message"
)

// IdempotencyTTL is how long a key is remembered.
const IdempotencyTTL = 24 * time.Hour

// Idempotency errors, as the IETF Idempotency-Key draft distinguishes them.
var (
	// ErrKeyInFlight: a request with this key is being processed right now.
	ErrKeyInFlight = errors.New("a request with this Idempotency-Key is still in flight")
	// ErrKeyReused: the key was used with a different request.
	ErrKeyReused = errors.New("this Idempotency-Key was used with a different request")
)

// InsertOnce stores a new message unless key was used in the last
// IdempotencyTTL. A first use inserts the message and remembers the key
// with the request's fingerprint in the same transaction. A repeat with the
// same fingerprint returns the message the first use created, with
// replayed set; a different fingerprint is ErrKeyReused; a repeat while the
// first is still in its transaction is ErrKeyInFlight (so is the second
// of two uses in one group-commit batch). As with Insert, whose group
// commit and time bounds it shares, an error means nothing was stored,
// except ErrOutcomeUnknown.
func (s *Store) InsertOnce(ctx context.Context, key string, fingerprint []byte, in message.Input, traceparent, tracestate string) (e Email, replayed bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, s.queryTimeout)
	defer cancel()
	e = newEmail(in, traceparent, tracestate)
	if s.group != nil {
		p := &pendingInsert{email: e, key: key, fingerprint: fingerprint}
		if err := s.insertGrouped(ctx, p); err != nil {
			return Email{}, false, err
		}
		return p.email, p.replayed, nil
	}
	// inTx: an error means nothing was stored, even when ctx ends during
	// COMMIT, as with Insert.
	err = s.inTx(ctx, e.ID, func(tx pgx.Tx) error {
		e, replayed, err = insertOnce(ctx, tx, key, fingerprint, e)
		return err
	})
	if err != nil {
		return Email{}, false, err
	}
	return e, replayed, nil
}

func insertOnce(ctx context.Context, tx pgx.Tx, key string, fingerprint []byte, e Email) (Email, bool, error) {
	// The transaction-scoped advisory lock marks the key as in flight.
	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))`, key).Scan(&locked); err != nil {
		return Email{}, false, fmt.Errorf("lock idempotency key: %w", err)
	}
	if !locked {
		return Email{}, false, ErrKeyInFlight
	}
	var seen []byte
	var id string
	err := tx.QueryRow(ctx, `
		SELECT fingerprint, email_id::text FROM idempotency_keys
		WHERE key = $1 AND created_at > now() - make_interval(secs => $2)`,
		key, IdempotencyTTL.Seconds()).Scan(&seen, &id)
	switch {
	case err == nil:
		if !bytes.Equal(seen, fingerprint) {
			return Email{}, false, ErrKeyReused
		}
		e, err := scanEmail(tx.QueryRow(ctx, `SELECT `+emailColumns+` FROM emails WHERE id = $1`, id))
		if err != nil {
			return Email{}, false, fmt.Errorf("replay %s: %w", id, err)
		}
		return e, true, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return Email{}, false, fmt.Errorf("look up idempotency key: %w", err)
	}

	e, err = insert(ctx, tx, e)
	if err != nil {
		return Email{}, false, err
	}
	// An expired row with the same key is replaced.
	if _, err := tx.Exec(ctx, `
		INSERT INTO idempotency_keys (key, fingerprint, email_id) VALUES ($1, $2, $3)
		ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,
			email_id = excluded.email_id, created_at = now()`,
		key, fingerprint, e.ID); err != nil {
		return Email{}, false, fmt.Errorf("remember idempotency key: %w", err)
	}
	return e, false, nil
}

// ForgetExpiredKeys deletes the keys older than IdempotencyTTL, in
// bounded batches.
func (s *Store) ForgetExpiredKeys(ctx context.Context) (int64, error) {
	return s.inBatches(ctx, "forget expired keys", `
		DELETE FROM idempotency_keys
		WHERE key IN (
		    SELECT key FROM idempotency_keys
		    WHERE created_at < now() - make_interval(secs => $2)
		    ORDER BY created_at
		    LIMIT $1
		    FOR UPDATE SKIP LOCKED)`, IdempotencyTTL.Seconds())
}
