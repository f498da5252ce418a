package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Group commit: under concurrency, one transaction per message makes the
// commit (and its WAL flush) the bottleneck. With group commit enabled,
// Insert and InsertOnce hand their row to a few flushers; each takes every
// row waiting at that moment and stores them in one transaction: the
// Idempotency-Keys' locks in one statement and their look-up in a second,
// sent together with BEGIN (a pipeline: one round trip); then the new
// messages and their keys in one multi-row statement that also returns
// the transaction's id; one commit (pipelinedtx.go). Both still return only after their row's
// commit, so a 202 still means "committed in Postgres".
//
// A batch runs under a deadline of its own (one query timeout from when a
// flusher takes it), not its callers': a request near its deadline must not
// cut short a transaction that decides other requests' rows. A caller whose
// deadline passes while its row waits in the queue abandons it (nothing is
// stored); once a flusher has taken the row, the caller waits for the
// batch's real outcome (inTx's rules), past its own deadline if need be.

// pendingInsert is one row waiting for a flusher.
type pendingInsert struct {
	email Email
	// key and fingerprint are InsertOnce's; key is "" for Insert.
	key         string
	fingerprint []byte
	// replayed: the key's first message is in email (set before done).
	replayed bool
	// decided: the key alone decides the row's outcome, decision (nil for
	// a replay), and the row is not inserted. Only the flusher uses it.
	decided  bool
	decision error
	// state is waiting, then taken by a flusher or abandoned by its caller
	// (whose deadline passed first); exactly one of them wins.
	state atomic.Int32
	done  chan error
	span  trace.Span
}

const (
	pendingWaiting int32 = iota
	pendingTaken
	pendingAbandoned
)

// groupCommit is the flushers' shared queue.
type groupCommit struct {
	queue    chan *pendingInsert
	maxBatch int
	tracer   trace.Tracer
}

// EnableGroupCommit starts flushers goroutines that batch concurrent
// Inserts and InsertOnces, at most maxBatch rows per transaction, until ctx
// is done. Call it once, before serving. Each call is an INSERT span of
// tracer in its caller's trace, covering its wait and its batch's commit
// (the batch's statements themselves run outside any one request).
func (s *Store) EnableGroupCommit(ctx context.Context, flushers, maxBatch int, tracer trace.Tracer) {
	g := &groupCommit{queue: make(chan *pendingInsert, maxBatch*flushers), maxBatch: maxBatch, tracer: tracer}
	for range flushers {
		go s.flush(ctx, g)
	}
	s.group = g
}

// insertGrouped queues p and waits for its transaction's outcome; p.email
// and p.replayed hold the row afterwards.
func (s *Store) insertGrouped(ctx context.Context, p *pendingInsert) (err error) {
	ctx, span := s.group.tracer.Start(ctx, "INSERT", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("db.system.name", "postgresql"),
			attribute.String("db.operation.name", "INSERT"),
			attribute.String("db.collection.name", "emails"),
			attribute.Bool("carteiro.group_commit", true),
		))
	defer func() {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		}
		span.End()
	}()
	p.done, p.span = make(chan error, 1), span
	select {
	case s.group.queue <- p:
	case <-ctx.Done():
		return fmt.Errorf("insert message: %w", ctx.Err())
	}
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		if p.state.CompareAndSwap(pendingWaiting, pendingAbandoned) {
			// No flusher took it: nothing was stored.
			return fmt.Errorf("insert message: %w", ctx.Err())
		}
		// A flusher has it in a transaction: only its outcome says
		// whether the row is stored, and the batch's own deadline and
		// resolution bound the wait.
		return <-p.done
	}
}

func (s *Store) flush(ctx context.Context, g *groupCommit) {
	batch := make([]*pendingInsert, 0, g.maxBatch)
	for {
		batch = batch[:0]
		select {
		case <-ctx.Done():
			return
		case p := <-g.queue:
			batch = appendTaken(batch, p)
		}
	drain:
		for len(batch) < g.maxBatch {
			select {
			case p := <-g.queue:
				batch = appendTaken(batch, p)
			default:
				break drain
			}
		}
		if len(batch) > 0 {
			s.insertBatch(batch)
		}
	}
}

func appendTaken(batch []*pendingInsert, p *pendingInsert) []*pendingInsert {
	if p.state.CompareAndSwap(pendingWaiting, pendingTaken) {
		return append(batch, p)
	}
	return batch
}

// insertBatch stores the batch's rows in one transaction under a deadline
// of its own (storeBatch) and answers each. If the transaction fails for a
// reason other than the database being unavailable, each row its key did
// not decide is tried alone (Insert's or InsertOnce's own transaction) so
// one bad row cannot fail the rest.
func (s *Store) insertBatch(batch []*pendingInsert) {
	ctx, cancel := context.WithTimeout(context.Background(), s.queryTimeout)
	defer cancel()
	for _, p := range batch {
		p.span.SetAttributes(attribute.Int("db.operation.batch.size", len(batch)))
	}
	rest := answerRepeatedKeys(batch)
	err := s.inTxPipelined(ctx, func(tx batchTx) (*written, error) { return storeBatch(ctx, tx, rest) })
	// The transaction is over and its keys' locks released: a client told
	// its message was stored (or its key reused) may send its next request
	// with the key at once. The decided rows' outcomes stand whatever the
	// transaction's: they come from rows committed before it.
	undecided := rest[:0:0]
	for _, p := range rest {
		if p.decided {
			p.done <- p.decision
		} else {
			undecided = append(undecided, p)
		}
	}
	if err != nil && len(undecided) > 1 && !Unavailable(err) && !errors.Is(err, ErrOutcomeUnknown) && !errors.Is(err, context.Canceled) {
		// Alone, each row gets a transaction of its own, all of them
		// within one more query timeout.
		ctx, cancel := context.WithTimeout(context.Background(), s.queryTimeout)
		defer cancel()
		for _, p := range undecided {
			p.done <- s.insertAlone(ctx, p)
		}
		return
	}
	if err != nil && !errors.Is(err, ErrOutcomeUnknown) {
		err = fmt.Errorf("insert message: %w", err)
	}
	for _, p := range undecided {
		p.done <- err
	}
}

// answerRepeatedKeys answers ErrKeyInFlight to every row whose key an
// earlier row of the batch has (that one is in flight), and returns the
// others.
func answerRepeatedKeys(batch []*pendingInsert) []*pendingInsert {
	rest := batch[:0:0]
	seen := map[string]bool{}
	for _, p := range batch {
		switch {
		case p.key == "":
		case seen[p.key]:
			p.done <- ErrKeyInFlight
			continue
		default:
			seen[p.key] = true
		}
		rest = append(rest, p)
	}
	return rest
}

// storeBatch stores the rows of batch (no two with the same key) in tx and
// returns what the transaction wrote (nil if nothing). The rows whose
// key decides their outcome (in flight, reused, replayed) are only marked
// decided.
func storeBatch(ctx context.Context, tx batchTx, batch []*pendingInsert) (*written, error) {
	inserted, err := settleKeys(ctx, tx, batch)
	if err != nil || len(inserted) == 0 {
		return nil, err
	}
	n := len(inserted)
	ids, assuntos, mensagens := make([]string, n), make([]string, n), make([]string, n)
	tps, tss := make([]string, n), make([]string, n)
	var keys, keyIDs []string
	var fingerprints [][]byte
	for i, p := range inserted {
		e := p.email
		ids[i], assuntos[i], mensagens[i], tps[i], tss[i] = e.ID, e.Assunto, e.Mensagem, e.Traceparent, e.Tracestate
		if p.key != "" {
			keys, keyIDs, fingerprints = append(keys, p.key), append(keyIDs, e.ID), append(fingerprints, p.fingerprint)
		}
	}
	// The keys' foreign key is checked at the end of the statement, when
	// their emails rows are in. An expired key is replaced.
	var created time.Time
	w := written{messageID: ids[0]}
	err = tx.QueryRow(ctx, `
		WITH remembered AS (
			INSERT INTO idempotency_keys (key, fingerprint, email_id)
			SELECT * FROM unnest($6::text[], $7::bytea[], $8::uuid[])
			ON CONFLICT (key) DO UPDATE SET fingerprint = excluded.fingerprint,
				email_id = excluded.email_id, created_at = now()
		)
		INSERT INTO emails (id, assunto, mensagem, traceparent, tracestate)
		SELECT id, assunto, mensagem, NULLIF(tp, ''), NULLIF(ts, '')
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) AS t(id, assunto, mensagem, tp, ts)
		RETURNING created_at, pg_current_xact_id()::text`,
		ids, assuntos, mensagens, tps, tss, keys, fingerprints, keyIDs).Scan(&created, &w.xid)
	if err != nil {
		return nil, err
	}
	for _, p := range inserted {
		p.email.CreatedAt = created // one transaction: one now()
	}
	return &w, nil
}

// genericPlans makes the rest of a keyed batch's transaction run its
// prepared statements (pgx's statement cache) on their generic plans. With
// plan_cache_mode = auto, PostgreSQL plans the key look-up anew at every
// execution: its generic plan's estimate (ten keys in the array) costs more
// than a custom plan for the few keys of a batch, so auto never settles on
// it, and planning the look-up's join took 0.2 to 0.3 ms against 0.02 to
// 0.07 ms to run it (EXPLAIN ANALYZE, a bench database of 50,000 rows).
// Every statement it covers has one sensible plan whatever the statistics:
// the locks scan the array alone, the INSERT's conflict is its arbiter
// index's, and lookupKeys is written so that any plan of it reads both
// tables by primary key (TestKeyLookupPlan).
const genericPlans = `SET LOCAL plan_cache_mode = force_generic_plan`

// lookupKeys returns, for the keys of $1 used in the last $2 seconds, each
// key's fingerprint and its message: one primary-key look-up per key, then
// its message's by primary key. The OFFSET 0 fences keep that shape in any
// plan, also a generic one made while the tables are empty or small (a
// generic plan is made once and kept until the tables' statistics change):
// unfenced, such a plan joined the messages by hashing a sequential scan of
// emails (empty tables), or read the keys through idempotency_keys_created_idx,
// i.e. every key within the TTL, at each batch (a few thousand keys).
const lookupKeys = `
		SELECT k.key, k.fingerprint, e.* FROM unnest($1::text[]) AS q(key)
		CROSS JOIN LATERAL (SELECT key, fingerprint, email_id, created_at FROM idempotency_keys
			WHERE idempotency_keys.key = q.key OFFSET 0) k
		CROSS JOIN LATERAL (SELECT ` + emailColumns + ` FROM emails WHERE emails.id = k.email_id OFFSET 0) e
		WHERE k.created_at > now() - make_interval(secs => $2)`

// settleKeys takes the transaction-scoped advisory locks of the batch's
// keys (a key another transaction holds is in flight) and then, in a
// statement of its own so that its snapshot is taken after the locks,
// looks up the keys used in the last IdempotencyTTL; both are sent in
// one round trip. It marks the rows the keys decide and returns the rows
// to insert.
func settleKeys(ctx context.Context, tx batchTx, batch []*pendingInsert) ([]*pendingInsert, error) {
	var keys []string
	for _, p := range batch {
		if p.key != "" {
			keys = append(keys, p.key)
		}
	}
	if len(keys) == 0 {
		return batch, nil
	}
	locked := make(map[string]bool, len(keys))
	type first struct {
		fingerprint []byte
		email       Email
	}
	seen := map[string]first{}
	b := &pgx.Batch{}
	b.Queue(genericPlans)
	b.Queue(`SELECT k, pg_try_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k`, keys).
		Query(func(rows pgx.Rows) error {
			var k string
			var ok bool
			_, err := pgx.ForEachRow(rows, []any{&k, &ok}, func() error {
				locked[k] = ok
				return nil
			})
			if err != nil {
				return fmt.Errorf("lock idempotency keys: %w", err)
			}
			return nil
		})
	b.Queue(lookupKeys, keys, IdempotencyTTL.Seconds()).
		Query(func(rows pgx.Rows) error {
			var k string
			var f first
			_, err := pgx.ForEachRow(rows, append([]any{&k, &f.fingerprint}, emailDest(&f.email)...), func() error {
				seen[k] = f
				return nil
			})
			if err != nil {
				return fmt.Errorf("look up idempotency keys: %w", err)
			}
			return nil
		})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, err
	}
	rest := batch[:0:0]
	for _, p := range batch {
		if p.key == "" {
			rest = append(rest, p)
			continue
		}
		f, used := seen[p.key]
		switch {
		case !locked[p.key]:
			p.decided, p.decision = true, ErrKeyInFlight
		case !used:
			rest = append(rest, p)
		case !bytes.Equal(f.fingerprint, p.fingerprint):
			p.decided, p.decision = true, ErrKeyReused
		default:
			p.email, p.replayed, p.decided = f.email, true, true
		}
	}
	return rest, nil
}

// insertAlone stores one row of a failed batch in a transaction of its
// own: Insert's or InsertOnce's, without group commit.
func (s *Store) insertAlone(ctx context.Context, p *pendingInsert) error {
	return s.inTx(ctx, p.email.ID, func(tx pgx.Tx) (err error) {
		if p.key == "" {
			p.email, err = insert(ctx, tx, p.email)
			return err
		}
		p.email, p.replayed, err = insertOnce(ctx, tx, p.key, p.fingerprint, p.email)
		return err
	})
}
