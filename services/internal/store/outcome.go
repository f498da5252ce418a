package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A COMMIT whose reply never arrives (its deadline passed, the connection
// broke) may still commit on the server: a deferred trigger, a lock wait or
// the WAL flush can hold it past the client's deadline. Answering "not
// stored" then would be a lie, and the message would be delivered anyway.
// So every transaction that writes a message learns its id just before
// COMMIT (pg_current_xact_id_if_assigned), and when COMMIT's outcome is
// unknown it asks pg_xact_status(xid) on another connection until the
// answer is no longer "in progress" (PostgreSQL 15 documentation, §9.26
// "Transaction ID and Snapshot Information Functions").
//
// A crash makes one more case: an xid that never reached the WAL is handed
// out again after crash recovery, also after a recovery without a server
// restart (a backend killed by the OOM killer makes the postmaster reset
// every backend and replay the WAL; pg_postmaster_start_time() does not
// change). pg_xact_status may then tell another transaction's outcome. So
// once the xid has ended, the row of a message the transaction inserted
// decides: there, it committed; absent, it did not.

// written is what a transaction that inserts messages learns before its
// COMMIT, to resolve a COMMIT whose reply is lost.
type written struct {
	xid       string // pg_current_xact_id()
	messageID string // a message the transaction inserts
}

// ErrOutcomeUnknown is returned when a transaction's COMMIT got no reply
// and its outcome could not be learned either: the database stayed
// unreachable for the whole resolution budget. The message may or may not
// be stored; only a retry with the same Idempotency-Key is safe.
var ErrOutcomeUnknown = errors.New("the transaction's outcome is unknown: the database did not answer")

// resolvePoll bounds the wait between two pg_xact_status questions.
const resolvePoll = 200 * time.Millisecond

// inTx runs fn in a transaction begun under ctx and commits it under ctx.
// It returns nil only if the transaction committed, ErrOutcomeUnknown only
// if that could not be learned, and any other error only if it did not
// commit. A COMMIT that fails without a verdict from the server (a deadline,
// a broken connection, a FATAL) is resolved by resolveCommit. A transaction
// that wrote nothing has nothing to lose at COMMIT: its failure is ignored.
// messageID is a message fn inserts.
func (s *Store) inTx(ctx context.Context, messageID string, fn func(pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// A no-op after COMMIT; otherwise ends the transaction on a live
		// connection (a broken one is closed, which aborts it as well).
		rctx, cancel := context.WithTimeout(context.Background(), s.queryTimeout)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	if err := fn(tx); err != nil {
		return err
	}
	var xid *string
	w := written{messageID: messageID}
	if err := tx.QueryRow(ctx, `SELECT pg_current_xact_id_if_assigned()::text`).Scan(&xid); err != nil {
		return err
	}
	if xid == nil {
		return s.commit(ctx, nil, tx.Commit)
	}
	w.xid = *xid
	return s.commit(ctx, &w, tx.Commit)
}

// commit sends COMMIT (send) under ctx for the transaction w, nil if it
// wrote nothing, and returns its outcome as inTx does. The caller ends the
// transaction if commit returns before sending COMMIT.
func (s *Store) commit(ctx context.Context, w *written, send func(context.Context) error) error {
	if err := ctx.Err(); err != nil {
		return err // COMMIT not sent
	}
	committing := time.Now()
	err := send(ctx)
	switch {
	case err == nil:
		return nil
	case w == nil:
		return nil
	case !commitAmbiguous(err):
		return fmt.Errorf("commit: %w", err)
	}
	return s.resolveCommit(*w, committing, err)
}

// commitAmbiguous reports whether a failed COMMIT may still have
// committed: false only when the server answered it with an ERROR (the
// transaction is rolled back then). pgconn.SafeToRetry cannot tell: pgx
// reports "conn closed", safe to retry, also when the server ended the
// session after COMMIT was sent.
func commitAmbiguous(err error) bool {
	if errors.Is(err, pgx.ErrTxCommitRollback) {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// FATAL and PANIC end the session; the commit record may be
		// written already (a backend terminated while it waits for a
		// synchronous standby has committed locally).
		return pe.Severity == "FATAL" || pe.Severity == "PANIC"
	}
	return true
}

// resolveCommit learns, on other connections, the outcome of the
// transaction w whose COMMIT got no verdict. While pg_xact_status(xid) says
// in progress it waits; once the xid has ended (and, if committed, is
// visible to a new snapshot), w's message row in that same snapshot
// decides: present, the transaction committed (nil); absent, it did not
// (cause, wrapped). The row has the last word because after a crash xid may
// be another transaction's (see written). The server ends a COMMIT that
// runs longer than statement_timeout; a transaction still in progress after
// that (its COMMIT lost on the way, a wait statement_timeout does not
// cover) has its backend terminated, which decides it. If the database
// does not answer for statement_timeout plus one query timeout after
// COMMIT was sent, the outcome is ErrOutcomeUnknown.
func (s *Store) resolveCommit(w written, committing time.Time, cause error) error {
	xid := w.xid
	ctx, cancel := context.WithDeadline(context.Background(), committing.Add(s.statementTimeout+s.queryTimeout))
	defer cancel()
	s.log.Warn("commit outcome unknown; asking pg_xact_status", "xid", xid, "message_id", w.messageID, "err", cause)
	terminated := false
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, resolvePoll) {
		var status *string
		var visible, stored bool
		// One statement, one snapshot: the xid's visibility and the row.
		err := s.pool.QueryRow(ctx, `SELECT pg_xact_status($1::xid8),
			pg_visible_in_snapshot($1::xid8, pg_current_snapshot()),
			EXISTS (SELECT 1 FROM emails WHERE id = $2)`, xid, w.messageID).Scan(&status, &visible, &stored)
		var pe *pgconn.PgError
		switch {
		case errors.As(err, &pe) && pe.Code == "22023":
			// "transaction ID … is in the future": a server that crashed
			// before xid reached its WAL has no record of it, so it never
			// committed (a commit record would have carried it).
			s.log.Warn("commit outcome learned", "xid", xid, "status", "unknown to the restarted server", "err", pe.Message)
			return fmt.Errorf("commit lost in a crash (xid %s): %w", xid, cause)
		case err != nil:
		case status == nil:
			// Only for an xid older than the commit log keeps: not one
			// of a few seconds ago.
			return fmt.Errorf("%w: pg_xact_status(%s) is null after %v", ErrOutcomeUnknown, xid, cause)
		case *status == "in progress" || *status == "committed" && !visible:
			if !terminated && time.Since(committing) > s.statementTimeout {
				// The backend still holding xid, if any: the guard
				// makes a reused pid safe.
				_, err = s.pool.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
					WHERE backend_xid = $1::xid8::xid`, xid)
				terminated = err == nil
			}
		case stored:
			s.log.Warn("commit outcome learned", "xid", xid, "status", *status, "message_id", w.messageID, "stored", true)
			return nil
		default:
			s.log.Warn("commit outcome learned", "xid", xid, "status", *status, "message_id", w.messageID, "stored", false)
			return fmt.Errorf("commit did not take (xid %s %s, message %s not stored): %w", xid, *status, w.messageID, cause)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: xid %s, commit: %v", ErrOutcomeUnknown, xid, cause)
		case <-time.After(wait):
		}
	}
}
