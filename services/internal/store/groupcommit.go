package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

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

// pendingInsert is one row waiting for a flusher.
type pendingInsert struct {
	email    Email
	deadline time.Time
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
	p.deadline, _ = ctx.Deadline()
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
		// A flusher has it in a transaction bounded by this deadline: its
		// verdict says whether the row is stored.
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

// insertBatch inserts the rows in one statement. Its deadline is the
// earliest of theirs, so no caller outlives the transaction that decides
// its row. If the batch fails for a reason other than the database being
// unavailable, each row is tried alone so one bad row cannot fail the rest.
func (s *Store) insertBatch(batch []*pendingInsert) {
	deadline := batch[0].deadline
	for _, p := range batch[1:] {
		if !p.deadline.IsZero() && (deadline.IsZero() || p.deadline.Before(deadline)) {
			deadline = p.deadline
		}
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(s.queryTimeout)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	n := len(batch)
	ids, assuntos, mensagens := make([]string, n), make([]string, n), make([]string, n)
	tps, tss := make([]string, n), make([]string, n)
	for i, p := range batch {
		e := p.email
		ids[i], assuntos[i], mensagens[i], tps[i], tss[i] = e.ID, e.Assunto, e.Mensagem, e.Traceparent, e.Tracestate
	}
	rows, err := s.pool.Query(ctx, `
		INSERT INTO emails (id, assunto, mensagem, traceparent, tracestate)
		SELECT id, assunto, mensagem, NULLIF(tp, ''), NULLIF(ts, '')
		FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[]) AS t(id, assunto, mensagem, tp, ts)
		RETURNING created_at`, ids, assuntos, mensagens, tps, tss)
	var created time.Time
	if err == nil {
		for rows.Next() {
			if err = rows.Scan(&created); err != nil {
				break
			}
		}
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
	}
	if err != nil && n > 1 && !Unavailable(err) && !errors.Is(err, context.Canceled) {
		for _, p := range batch {
			e, err := insert(ctx, s.pool, p.email)
			p.email.CreatedAt = e.CreatedAt
			p.done <- err
		}
		return
	}
	if err != nil {
		err = fmt.Errorf("insert message: %w", err)
	}
	for _, p := range batch {
		p.email.CreatedAt = created // one transaction: one now()
		p.span.SetAttributes(attribute.Int("db.operation.batch.size", n))
		p.done <- err
	}
}
