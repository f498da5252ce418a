package store

import (
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
// Insert hands its row to a few flushers; each takes every row waiting at
// that moment and inserts them with one multi-row INSERT, one commit.
// Insert still returns only after its row's commit, so a 202 still means
// "committed in Postgres".
//
// A batch runs under a deadline of its own (one query timeout from when a
// flusher takes it), not its callers': a request near its deadline must not
// cut short a transaction that decides other requests' rows. A caller whose
// deadline passes while its row waits in the queue abandons it (nothing is
// stored); once a flusher has taken the row, the caller waits for the
// batch's real outcome (inTx), past its own deadline if need be.

// pendingInsert is one row waiting for a flusher.
type pendingInsert struct {
	email Email
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
// Inserts, at most maxBatch rows per transaction, until ctx is done. Call
// it once, before serving. Each Insert is an INSERT span of tracer in its
// caller's trace, covering its wait and its batch's commit (the batch's
// statement itself runs outside any one request).
func (s *Store) EnableGroupCommit(ctx context.Context, flushers, maxBatch int, tracer trace.Tracer) {
	g := &groupCommit{queue: make(chan *pendingInsert, maxBatch*flushers), maxBatch: maxBatch, tracer: tracer}
	for range flushers {
		go s.flush(ctx, g)
	}
	s.group = g
}

// insertGrouped queues the row and waits for its transaction's outcome.
func (s *Store) insertGrouped(ctx context.Context, e Email) (_ Email, err error) {
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
	p := &pendingInsert{email: e, done: make(chan error, 1), span: span}
	select {
	case s.group.queue <- p:
	case <-ctx.Done():
		return Email{}, fmt.Errorf("insert message: %w", ctx.Err())
	}
	select {
	case err := <-p.done:
		return p.email, err
	case <-ctx.Done():
		if p.state.CompareAndSwap(pendingWaiting, pendingAbandoned) {
			// No flusher took it: nothing was stored.
			return Email{}, fmt.Errorf("insert message: %w", ctx.Err())
		}
		// A flusher has it in a transaction: only its outcome says
		// whether the row is stored, and the batch's own deadline and
		// resolution bound the wait.
		err := <-p.done
		return p.email, err
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

// insertBatch inserts the rows in one statement, in one transaction under
// a deadline of its own. If the batch fails for a reason other than the
// database being unavailable, each row is tried alone so one bad row cannot
// fail the rest.
func (s *Store) insertBatch(batch []*pendingInsert) {
	ctx, cancel := context.WithTimeout(context.Background(), s.queryTimeout)
	defer cancel()

	n := len(batch)
	ids, assuntos, mensagens := make([]string, n), make([]string, n), make([]string, n)
	tps, tss := make([]string, n), make([]string, n)
	for i, p := range batch {
		e := p.email
		ids[i], assuntos[i], mensagens[i], tps[i], tss[i] = e.ID, e.Assunto, e.Mensagem, e.Traceparent, e.Tracestate
	}
	var created time.Time
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			INSERT INTO emails (id, assunto, mensagem, traceparent, tracestate)
			SELECT id, assunto, mensagem, NULLIF(tp, ''), NULLIF(ts, '')
			FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) AS t(id, assunto, mensagem, tp, ts)
			RETURNING created_at`, ids, assuntos, mensagens, tps, tss)
		if err != nil {
			return err
		}
		for rows.Next() {
			if err := rows.Scan(&created); err != nil {
				rows.Close()
				return err
			}
		}
		rows.Close()
		return rows.Err()
	})
	if err != nil && n > 1 && !Unavailable(err) && !errors.Is(err, ErrOutcomeUnknown) && !errors.Is(err, context.Canceled) {
		// Alone, each row gets a transaction of its own, all of them
		// within one more query timeout.
		ctx, cancel := context.WithTimeout(context.Background(), s.queryTimeout)
		defer cancel()
		for _, p := range batch {
			p.done <- s.insertAlone(ctx, &p.email)
		}
		return
	}
	if err != nil && !errors.Is(err, ErrOutcomeUnknown) {
		err = fmt.Errorf("insert message: %w", err)
	}
	for _, p := range batch {
		p.email.CreatedAt = created // one transaction: one now()
		p.span.SetAttributes(attribute.Int("db.operation.batch.size", n))
		p.done <- err
	}
}

// insertAlone inserts one row of a failed batch in a transaction of its
// own, and sets its created_at.
func (s *Store) insertAlone(ctx context.Context, e *Email) error {
	return s.inTx(ctx, func(tx pgx.Tx) error {
		stored, err := insert(ctx, tx, *e)
		e.CreatedAt = stored.CreatedAt
		return err
	})
}
