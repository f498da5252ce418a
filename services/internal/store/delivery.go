package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/message"
)

// A claim is one delivery attempt's hold on its row: status sending, a
// fencing token (Email.Token) and a lease that ends at lease_expires_at
// unless renewed. Every time is Postgres' now(), never a worker's clock.
//
// Every outcome write (MarkSent, MarkFailed, MarkDead, Release) names the
// token it holds and applies only while the row is still sending under
// it; otherwise it changes nothing and returns a *StaleError. So an
// attempt that lost its claim (its lease expired and another worker
// claimed the row) can never overwrite the newer attempt's outcome. A
// write that finds its row already where it would put it, under its own
// token, is done, not stale (see RecordOutcomes): so a write retried after
// its answer was lost reports success.
//
// The sweeps' presumptions (ReleaseExpired's dead after an expired last
// attempt, DeadLetter's dead for a poison entry) do not take a new token:
// should the attempt that held it still learn that the relay accepted the
// message, its MarkSent wins, because that is what happened; should it
// learn a permanent failure, its MarkDead finds the verdict recorded and
// puts its own reason in last_error (see MarkDead).

// ErrStale is matched (errors.Is) by every *StaleError.
var ErrStale = errors.New("stale claim")

// StaleError is an outcome write refused because the claim it names is no
// longer held: a newer claim took the row, or something other than the
// write's own verdict ended the claim (another outcome, a sweep, a
// requeue). A write found already done under its own token is not stale
// (see RecordOutcomes).
type StaleError struct {
	ID string
	// Token is the token the write named; Current and Status are the
	// row's (Status is empty when the row is gone).
	Token, Current int64
	Status         string
	// ReadErr is set when the write was refused but the row could not be
	// read afterwards (see RecordOutcomes): Current and Status are then
	// unknown.
	ReadErr error
}

func (e *StaleError) Error() string {
	if e.ReadErr != nil {
		return fmt.Sprintf("stale claim on %s (token %d): refused; %v", e.ID, e.Token, e.ReadErr)
	}
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
	claims, err := s.ClaimBatch(ctx, []ClaimRequest{{ID: id, MessageID: messageID}}, lease, maxAttempts)
	if err != nil || len(claims) == 0 {
		return Claim{}, false, err
	}
	return claims[0], true, nil
}

// ClaimRequest names a row to claim and the Message-ID it gets if it has
// none yet.
type ClaimRequest struct {
	ID, MessageID string
}

// ClaimBatch claims every claimable row of reqs, as Claim does each, in
// one statement (one round trip, one commit): a worker claims all the
// entries of one stream read at once. It returns the claims granted, in
// no particular order; a row missing from them is not claimable. Rows are
// locked in id order, so two workers claiming overlapping batches never
// deadlock. A repeated id is claimed once.
func (s *Store) ClaimBatch(ctx context.Context, reqs []ClaimRequest, lease time.Duration, maxAttempts int) ([]Claim, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	ids := make([]string, 0, len(reqs))
	mids := make([]string, 0, len(reqs))
	seen := make(map[string]bool, len(reqs))
	for _, r := range reqs {
		if !seen[r.ID] {
			seen[r.ID] = true
			ids, mids = append(ids, r.ID), append(mids, r.MessageID)
		}
	}
	rows, err := s.pool.Query(ctx, `
		UPDATE emails
		SET status = 'sending', attempts = attempts + 1, fencing_token = fencing_token + 1,
		    sending_since = now(), lease_expires_at = now() + make_interval(secs => $3),
		    message_id = coalesce(message_id, prev.new_message_id), updated_at = now()
		FROM (SELECT e.id AS prev_id, e.status AS prev_status, r.message_id AS new_message_id
		      FROM emails e JOIN unnest($1::uuid[], $2::text[]) AS r(id, message_id) ON e.id = r.id
		      ORDER BY e.id
		      FOR UPDATE OF e) prev
		WHERE id = prev_id AND attempts < $4
		  -- A CASE, not ORs of status: the planner must reach the rows by
		  -- their ids. Offered emails_open_idx, with statistics taken
		  -- before a backlog built up, it scanned every open row and
		  -- joined each with the batch (0.7 s for 33 rows in a backlog of
		  -- 20,000).
		  AND CASE status
		    WHEN 'queued' THEN next_attempt_at IS NULL OR next_attempt_at <= now()
		    WHEN 'failed' THEN next_attempt_at IS NULL OR next_attempt_at <= now()
		    WHEN 'sending' THEN lease_expires_at < now()
		    ELSE false
		  END
		RETURNING `+emailColumns+`, prev_status = 'sending'`, ids, mids, lease.Seconds(), maxAttempts)
	if err != nil {
		return nil, fmt.Errorf("claim %d message(s): %w", len(ids), err)
	}
	claims, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Claim, error) {
		var c Claim
		e := &c.Email
		err := row.Scan(&e.ID, &e.Assunto, &e.Mensagem, &e.Status, &e.Attempts, &e.LastError,
			&e.CreatedAt, &e.NextAttemptAt, &e.SentAt, &e.MessageID, &e.Token, &e.Traceparent, &e.Tracestate, &c.TookOver)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("claim %d message(s): %w", len(ids), err)
	}
	return claims, nil
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
	rows, err := s.pool.Query(ctx, leaseRenewal, ids, tokens, lease.Seconds())
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

// Outcome kinds: what an attempt's outcome write does to its row.
const (
	// OutcomeSent: the relay accepted the message (MarkSent).
	OutcomeSent = "sent"
	// OutcomeFailed: a transient failure, tried again after Delay
	// (MarkFailed).
	OutcomeFailed = "failed"
	// OutcomeDead: a permanent failure or the last allowed attempt
	// (MarkDead).
	OutcomeDead = "dead"
	// OutcomeReleased: the claim given back uncounted (Release).
	OutcomeReleased = "released"
)

// Outcome is one attempt's outcome write.
type Outcome struct {
	// Lease is the claim the write is made under.
	Lease
	// Kind is one of the Outcome* constants.
	Kind string
	// Reason is kept as last_error (not for OutcomeSent).
	Reason string
	// Delay is the wait before the next attempt (OutcomeFailed only),
	// from Postgres' now().
	Delay time.Duration
}

// MarkSent records a successful delivery by the claim with token. It
// returns a *StaleError when that claim is no longer held.
func (s *Store) MarkSent(ctx context.Context, id string, token int64) error {
	return s.recordOne(ctx, Outcome{Lease: Lease{id, token}, Kind: OutcomeSent})
}

// MarkFailed records a transient failure and when to try again, delay
// from now (Postgres' clock). The row goes back to the outbox, which
// publishes it once it is due.
func (s *Store) MarkFailed(ctx context.Context, id string, token int64, reason string, delay time.Duration) error {
	return s.recordOne(ctx, Outcome{Lease: Lease{id, token}, Kind: OutcomeFailed, Reason: reason, Delay: delay})
}

// MarkDead records a permanent failure (or the last allowed attempt),
// reason as last_error.
//
// A row a sweep recorded dead under the claim's token (ReleaseExpired
// after the last attempt's lease expired, DeadLetter for a poison entry)
// is the same verdict, yet MarkDead still writes reason over the sweep's
// last_error: the sweep's is a presumption made without the attempt
// ("whether the relay got the message is unknown", "delivered too many
// times"), while reason is what actually ended the delivery (the relay's
// permanent refusal with its reply, or the last attempt's failure). That
// is what an operator reading the dead letter needs to decide whether to
// requeue it (worker reprocess) or fix the address, and the sweep's guess
// is then known wrong: the attempt was alive and got an answer. The write
// is then applied, not found done; the same MarkDead again (a retry after
// its answer was lost) finds its own reason and is found done.
func (s *Store) MarkDead(ctx context.Context, id string, token int64, reason string) error {
	return s.recordOne(ctx, Outcome{Lease: Lease{id, token}, Kind: OutcomeDead, Reason: reason})
}

// Release gives the claim back without an outcome, for an attempt this
// worker interrupted itself (shutdown): the row is queued again and goes
// back to the outbox at once, and the attempt does not count against
// MAX_ATTEMPTS (the fencing token still moved on). reason is kept as
// last_error.
func (s *Store) Release(ctx context.Context, id string, token int64, reason string) error {
	return s.recordOne(ctx, Outcome{Lease: Lease{id, token}, Kind: OutcomeReleased, Reason: reason})
}

func (s *Store) recordOne(ctx context.Context, o Outcome) error {
	res, err := s.RecordOutcomes(ctx, []Outcome{o})
	if err != nil {
		return err
	}
	return res[0].Err
}

// Result is what became of one outcome write (see RecordOutcomes).
type Result struct {
	// Err is nil when the write applied or was found done, else a
	// *StaleError.
	Err error
	// FoundDone is set (Err nil) when the UPDATE refused the write but
	// its row was already in the write's end state under the write's own
	// token: the write's earlier commit whose answer was lost, or, for
	// a release, a sweep's dead an operator requeued.
	FoundDone bool
}

// RecordOutcomes applies outcome writes in one statement (one round trip,
// one commit): a worker records the outcomes of the sends that finished
// together at once. Each write applies only to its row while that row is
// sending under the write's token (or, for OutcomeSent, dead under it: a
// sweep's presumed dead keeps the token, and the truth wins);
// results[i].Err is nil when outcomes[i] applied or was found done
// (below; results[i].FoundDone then tells which), else a *StaleError
// naming the row's current token and status. err is set when
// the statement failed or its answer was lost: the writes may then have
// committed or not, and calling again with the same outcomes is safe.
//
// A write is idempotent under its token. A write the UPDATE refuses
// whose row is, under the write's own token, already in the status the
// write leaves (sent; failed; dead; queued for OutcomeReleased) is
// reported applied, found done. Only the attempt given a token writes
// under it (Claim never gives a token twice), and the sweeps keep the
// token, so that row is the write's own earlier commit, whose answer was
// lost (a connection that broke after COMMIT, before the RETURNING rows
// arrived; the caller retried), or a sweep with the same verdict:
//   - sent and failed: only MarkSent, MarkFailed under the token make a
//     row sent, failed under it. No sweep does.
//   - dead: only MarkDead under the token makes a row dead under it with
//     the write's reason as last_error. ReleaseExpired (the last allowed
//     attempt's lease expired) and DeadLetter (a poison entry whose row is
//     sending under an expired lease, queued or failed) record dead under
//     the token the row holds with their own last_error: the UPDATE
//     applies a MarkDead there, putting its reason in (see MarkDead).
//   - released (queued): Requeue keeps the token, so a row a sweep recorded
//     dead and an operator requeued is queued under the token. The message
//     goes through delivery again, as Release asks.
//
// The outbox's republish (RepublishStale, RepublishAll) and ReleaseExpired
// below maxAttempts clear published_at alone, so they never make a row
// look done. A write whose answer was lost and whose row then moved on
// before the retry (claimed again, dead-lettered, requeued) is reported
// stale though it applied: its status under its token is gone.
//
// Refusals are rare (a claim taken over after its lease expired, a retry
// after a lost answer), so the statement is the UPDATE alone, which
// returns the writes that applied; the rows of the others are read
// afterwards, by a second statement run only then. The refusal is the
// UPDATE's: a token is never given twice and never goes back, so a row
// refused under a token is never sending under it again, a row read
// under the write's token was under it at the UPDATE, and the later read
// names what replaced that claim (a newer claim, or the outcome or sweep
// that ended it) or finds the write done. Should that read fail, the
// refusals stand and each *StaleError carries the read's error instead.
func (s *Store) RecordOutcomes(ctx context.Context, outcomes []Outcome) (results []Result, err error) {
	if len(outcomes) == 0 {
		return nil, nil
	}
	n := len(outcomes)
	ids, tokens := make([]string, n), make([]int64, n)
	kinds, reasons, delays := make([]string, n), make([]string, n), make([]float64, n)
	for i, o := range outcomes {
		switch o.Kind {
		case OutcomeSent, OutcomeFailed, OutcomeDead, OutcomeReleased:
		default:
			return nil, fmt.Errorf("record outcomes: unknown outcome %q", o.Kind)
		}
		ids[i], tokens[i], kinds[i], reasons[i], delays[i] = o.ID, o.Token, o.Kind, o.Reason, o.Delay.Seconds()
	}
	rows, err := s.pool.Query(ctx, outcomeWrite, ids, tokens, kinds, reasons, delays)
	if err != nil {
		return nil, fmt.Errorf("record %d outcome(s): %w", n, err)
	}
	applied := make([]bool, n)
	var i int64
	if _, err := pgx.ForEachRow(rows, []any{&i}, func() error {
		if i < 1 || i > int64(n) {
			return fmt.Errorf("the update returned write %d of %d", i, n)
		}
		applied[i-1] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("record %d outcome(s): %w", n, err)
	}
	results = make([]Result, n)
	var refused []int
	for i, ok := range applied {
		switch {
		case ok:
		case appliedTwin(outcomes, applied, i):
			// The same claim's write twice: it applied once, for both.
		default:
			refused = append(refused, i)
		}
	}
	if len(refused) > 0 {
		s.nameRefusals(ctx, outcomes, refused, results)
	}
	return results, nil
}

// appliedTwin reports whether a write for the same claim as outcomes[i]
// (the same row, however its id is spelled, and token) applied.
func appliedTwin(outcomes []Outcome, applied []bool, i int) bool {
	id, err := uuid.Parse(outcomes[i].ID)
	if err != nil {
		return false
	}
	for j, o := range outcomes {
		if applied[j] && o.Token == outcomes[i].Token {
			if other, err := uuid.Parse(o.ID); err == nil && other == id {
				return true
			}
		}
	}
	return false
}

// nameRefusals sets results[i].Err, for each i of refused, to a
// *StaleError naming the row's current token and status (none when the row
// is gone), or the error of reading them; for a write found done (its row
// is in outcomeStatus under the write's token, with the write's reason
// for a dead; see RecordOutcomes) it sets results[i].FoundDone instead.
func (s *Store) nameRefusals(ctx context.Context, outcomes []Outcome, refused []int, results []Result) {
	ids := make([]string, len(refused))
	for k, i := range refused {
		ids[k] = outcomes[i].ID
	}
	type current struct {
		status, lastError string
		token             int64
	}
	cur := make(map[int64]current, len(refused))
	var k int64
	var c current
	rows, err := s.pool.Query(ctx, `
		SELECT w.k, e.status, e.fencing_token, coalesce(e.last_error, '')
		FROM unnest($1::uuid[]) WITH ORDINALITY AS w(id, k) JOIN emails e ON e.id = w.id`, ids)
	if err == nil {
		_, err = pgx.ForEachRow(rows, []any{&k, &c.status, &c.token, &c.lastError}, func() error {
			cur[k-1] = c
			return nil
		})
	}
	for at, i := range refused {
		o := outcomes[i]
		se := &StaleError{ID: o.ID, Token: o.Token}
		if err != nil {
			se.ReadErr = fmt.Errorf("read the refused row: %w", err)
		} else if c, ok := cur[int64(at)]; ok {
			// A sweep's dead under the token is found done only with the
			// write's own reason: the UPDATE applies a MarkDead over any
			// other (a sweep that came between the UPDATE and this read
			// leaves the write refused).
			if c.token == o.Token && c.status == outcomeStatus(o.Kind) && (o.Kind != OutcomeDead || c.lastError == o.Reason) {
				s.log.Info("outcome write found done under its token, reported applied (its own earlier commit whose answer was lost; for a release, also a sweep's dead an operator requeued)",
					"message_id", o.ID, "token", o.Token, "outcome", o.Kind)
				results[i].FoundDone = true
				continue
			}
			se.Current, se.Status = c.token, c.status
		}
		results[i].Err = se
	}
}

// outcomeStatus is the status an outcome write of kind leaves its row in
// (the SET of outcomeWrite).
func outcomeStatus(kind string) string {
	if kind == OutcomeReleased {
		return string(message.StatusQueued)
	}
	return kind
}

// ReleaseExpired acts on the claims whose lease expired (their worker died
// or lost Postgres for longer than the lease): below maxAttempts the row
// goes back on the outbox, so another worker claims it (a takeover); at
// maxAttempts, where no claim may follow, the row is recorded dead, since
// whether the relay got that last attempt is unknown. It returns how many
// rows it released and how many it recorded dead. One call acts on at most
// housekeepingBatch claims; the worker's next sweep takes the rest.
func (s *Store) ReleaseExpired(ctx context.Context, maxAttempts int) (released, dead int64, err error) {
	err = s.pool.QueryRow(ctx, `
		WITH expired AS (
		    SELECT id, attempts FROM emails
		    WHERE stage = 'open' AND status = 'sending' AND lease_expires_at < now()
		    LIMIT $2
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
		SELECT (SELECT count(*) FROM rel), (SELECT count(*) FROM dead)`, maxAttempts, housekeepingBatch).Scan(&released, &dead)
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
	switch {
	case len(ids) > 0:
		tag, err = s.pool.Exec(ctx, requeueSet+`WHERE id = ANY($1::uuid[]) AND status <> 'sending'`, ids)
	case len(statuses) > 0:
		tag, err = s.pool.Exec(ctx, requeueSet+requeueWhere(statuses), statuses)
	default:
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("requeue: %w", err)
	}
	return tag.RowsAffected(), nil
}

// requeueSet is Requeue's update, for a condition to follow.
const requeueSet = `UPDATE emails SET status = 'queued', attempts = 0, next_attempt_at = NULL,
	published_at = NULL, sending_since = NULL, lease_expires_at = NULL, updated_at = now() `

// requeueWhere is Requeue's condition for the messages with one of
// statuses ($1). No index covers status (see migration 00005): each
// status's stage, an OR of literals, lets the planner read the rows
// through the partial indexes by stage (emails_dead_idx, emails_open_idx)
// instead of the whole table, every message ever accepted.
func requeueWhere(statuses []string) string {
	var stages []string
	for _, st := range statuses {
		stage := "open"
		if st == "sent" || st == "dead" {
			stage = st
		}
		if c := "stage = '" + stage + "'"; !slices.Contains(stages, c) {
			stages = append(stages, c)
		}
	}
	return `WHERE (` + strings.Join(stages, " OR ") + `) AND status = ANY($1::text[]) AND status <> 'sending'`
}

// leaseRenewal extends the leases of the claims ($1 ids, $2 tokens) still
// held, by $3 seconds, and returns the ids renewed.
const leaseRenewal = `
		UPDATE emails e SET lease_expires_at = now() + make_interval(secs => $3)
		FROM unnest($1::uuid[], $2::bigint[]) AS c(id, token)
		WHERE e.id = c.id AND e.fencing_token = c.token AND e.status = 'sending'
		RETURNING e.id::text`

// outcomeWrite records outcomes ($1 ids, $2 tokens, $3 kinds, $4 reasons,
// $5 retry delays in seconds) under their tokens and returns the
// (1-based) positions of those that applied. Beside a sending row it takes
// a sent over a sweep's dead (the truth wins) and a dead over a sweep's
// dead whose last_error is not the write's own (the attempt's reason
// wins; see MarkDead).
const outcomeWrite = `
		UPDATE emails e SET
		    status = CASE o.kind WHEN 'released' THEN 'queued' ELSE o.kind END,
		    sent_at = CASE WHEN o.kind = 'sent' THEN now() ELSE e.sent_at END,
		    next_attempt_at = CASE WHEN o.kind = 'failed' THEN now() + make_interval(secs => o.delay) END,
		    last_error = CASE WHEN o.kind = 'sent' THEN e.last_error ELSE o.reason END,
		    published_at = CASE WHEN o.kind IN ('failed', 'released') THEN NULL ELSE e.published_at END,
		    attempts = CASE WHEN o.kind = 'released' THEN e.attempts - 1 ELSE e.attempts END,
		    sending_since = NULL, lease_expires_at = NULL, updated_at = now()
		FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::float8[]) WITH ORDINALITY
		    AS o(id, token, kind, reason, delay, i)
		WHERE e.id = o.id AND e.fencing_token = o.token
		  AND (e.status = 'sending' OR (o.kind = 'sent' AND e.status = 'dead')
		       OR (o.kind = 'dead' AND e.status = 'dead' AND e.last_error IS DISTINCT FROM o.reason))
		RETURNING o.i`
