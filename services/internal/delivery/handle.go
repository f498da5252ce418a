package delivery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/carteiro/carteiro/services/internal/mail"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// A job is one stream entry on its way through one delivery attempt,
// inside a CONSUMER span that continues the trace carried by the entry:
// claimed with the other entries of its read (one statement), sent while
// the heartbeat renews the claim, its outcome recorded under the token
// with the other outcomes ready at the same time (one statement), then
// acknowledged with them (one Redis round trip). If the claim or the
// recording fails, the entry stays pending and is delivered again after
// the lease; after WORKER_MAX_DELIVERIES it is poison (see poison). A
// refused (stale) outcome leaves the entry to the attempt that holds the
// message.
type job struct {
	entry queue.Entry
	ctx   context.Context
	span  trace.Span
	// log is made on first use, by logOf.
	log   *slog.Logger
	claim store.Claim
	// attempt is the claim held, which the heartbeat renews from the claim
	// until the outcome is recorded; sendCtx is the send's context, which
	// the heartbeat cancels (through attempt.stop) if the claim is lost.
	attempt *attempt
	sendCtx context.Context
	// outcome is what the recorder writes, name the metric's label.
	outcome store.Outcome
	name    string
}

// dispatch takes entries that hold one slot each from the stream (read or
// taken over): each invalid or poison entry is ended alone, the others are
// claimed in one statement; the claimed ones go to the senders, the rest
// are acknowledged together and their slots given back. If the claim
// fails, every entry stays pending.
func (p *Pool) dispatch(entries []queue.Entry) {
	if len(entries) == 0 {
		return
	}
	var jobs, done []*job
	reqs := make([]store.ClaimRequest, 0, len(entries))
	for _, e := range entries {
		j := p.start(e)
		switch {
		case uuid.Validate(e.MessageID) != nil:
			p.logOf(j).WarnContext(j.ctx, "worker: dropping a stream entry without a valid message id")
			j.span.SetStatus(codes.Error, "entry without a valid message id")
			done = append(done, j)
		case e.Deliveries > int64(p.d.Config.MaxDeliveries):
			p.poison(j)
			p.release(1)
		default:
			jobs = append(jobs, j)
			reqs = append(reqs, store.ClaimRequest{ID: e.MessageID, MessageID: p.d.Sender.MessageID(e.MessageID)})
		}
	}
	if len(jobs) > 0 {
		claims, err := p.claim(jobs, reqs)
		if err != nil {
			for _, j := range jobs {
				p.logOf(j).WarnContext(j.ctx, "worker: claim failed, leaving the entry pending", "deliveries", j.entry.Deliveries, "err", err)
				j.span.RecordError(err)
				j.span.SetStatus(codes.Error, "claim failed")
				j.span.End()
			}
			p.release(len(jobs))
			jobs = nil
		}
		byID := make(map[string]store.Claim, len(claims))
		for _, c := range claims {
			byID[c.ID] = c
		}
		for _, j := range jobs {
			c, ok := byID[j.entry.MessageID]
			if !ok {
				// Already sent, dead, not due yet, in someone else's
				// hands, or a second entry of a message this read holds.
				j.span.AddEvent("not claimable: acknowledged without sending")
				done = append(done, j)
				continue
			}
			delete(byID, c.ID)
			j.claim = c
			var stop context.CancelCauseFunc
			j.sendCtx, stop = context.WithCancelCause(j.ctx)
			j.attempt = &attempt{entry: j.entry, lease: store.Lease{ID: c.ID, Token: c.Token}, stop: stop}
			p.inflight.add(j.attempt)
			p.d.Metrics.inflight.Inc()
			p.jobs <- j
		}
	}
	if len(done) > 0 {
		p.ack(done)
		for _, j := range done {
			j.span.End()
		}
		p.release(len(done))
	}
}

// claim claims the rows of one read in one statement, within claimTimeout,
// in a span of its own linked to each entry's span.
func (p *Pool) claim(jobs []*job, reqs []store.ClaimRequest) ([]store.Claim, error) {
	ctx, cancel := context.WithTimeout(p.work, claimTimeout)
	defer cancel()
	ctx, span := p.d.Tracer.Start(inTrace(ctx, jobs), "claim "+p.d.Queue.Destination(), batchSpan(jobs,
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(reqs))))...)
	defer span.End()
	claims, err := p.d.Store.ClaimBatch(ctx, reqs, p.d.Config.Lease, p.d.Config.MaxAttempts)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "claim failed")
	}
	return claims, err
}

// start opens the entry's span and logger.
func (p *Pool) start(e queue.Entry) *job {
	ctx, span := p.startSpan(p.work, e)
	return &job{entry: e, ctx: ctx, span: span}
}

// logOf is j's logger: the worker's, with the entry's ids and, once the
// message is claimed, the attempt and its token. It is made on first use:
// most jobs log only their send's success, which has its attributes
// inline, and a logger's attributes are formatted when it is made. A job is handled by
// one goroutine at a time (dispatch, a sender, the recorder), so the
// cached logger needs no lock.
func (p *Pool) logOf(j *job) *slog.Logger {
	if j.log == nil {
		attrs := []any{"message_id", j.entry.MessageID, "stream_id", j.entry.StreamID}
		if j.attempt != nil {
			attrs = append(attrs, "attempt", j.claim.Attempts, "token", j.claim.Token)
		}
		j.log = p.d.Log.With(attrs...)
	}
	return j.log
}

// send makes the attempt of a claimed job and decides its outcome, which
// it hands to the recorder. The claim stays in flight (renewed by the
// heartbeat) until the recorder has written it. A claim still waiting for
// a sender when the worker is told to stop is given back unsent: only the
// sends already under way are finished.
func (p *Pool) send(j *job) {
	c := j.claim
	sendCtx, stop := j.sendCtx, j.attempt.stop
	defer stop(nil)
	lease := store.Lease{ID: c.ID, Token: c.Token}
	select {
	case <-p.stop:
		reason := fmt.Sprintf("attempt %d not started: %v", c.Attempts, errShutdown)
		j.span.SetStatus(codes.Error, reason)
		j.name, j.outcome = OutcomeReleased, store.Outcome{Lease: lease, Kind: store.OutcomeReleased, Reason: reason}
		j.attempt.recording.Store(true)
		p.outcomes <- j
		return
	default:
	}
	j.span.SetAttributes(attribute.Int("carteiro.attempt", c.Attempts), attribute.Int64("carteiro.fencing_token", c.Token))
	if c.TookOver {
		p.d.Metrics.takeovers.Inc()
		p.logOf(j).WarnContext(j.ctx, "worker: took over a message whose claim's lease expired", "previous_token", c.Token-1, "deliveries", j.entry.Deliveries)
	}

	start := time.Now()
	_, sendErr := p.d.Sender.Send(sendCtx, mail.Message{
		ID: c.ID, MessageID: c.MessageID, Assunto: c.Assunto, Mensagem: c.Mensagem, Date: c.CreatedAt,
	})
	telemetry.Observe(j.ctx, p.d.Metrics.send, time.Since(start).Seconds())

	switch {
	case sendErr == nil:
		j.name, j.outcome = OutcomeSent, store.Outcome{Lease: lease, Kind: store.OutcomeSent}
		// Each delivery is logged, as a mail server logs its status=sent:
		// the reply's code, not its text (which names the relay's hosts
		// and queue ids; the span carries it). Attributes inline, with no
		// logger made for the job: this is the line of every message.
		p.d.Log.LogAttrs(j.ctx, slog.LevelInfo, "worker: sent",
			slog.String("message_id", j.entry.MessageID), slog.String("stream_id", j.entry.StreamID),
			slog.Int("attempt", c.Attempts), slog.Int64("token", c.Token), slog.Int("smtp_reply_code", mail.ReplyAccepted))
	case sendCtx.Err() != nil:
		// Interrupted here: the shutdown deadline, or the claim was lost.
		// Not the relay's doing, so the attempt is given back.
		reason := fmt.Sprintf("attempt %d interrupted: %v", c.Attempts, context.Cause(sendCtx))
		p.logOf(j).WarnContext(j.ctx, "worker: send interrupted, releasing the message", "cause", context.Cause(sendCtx), "err", sendErr)
		j.span.SetStatus(codes.Error, reason)
		j.name, j.outcome = OutcomeReleased, store.Outcome{Lease: lease, Kind: store.OutcomeReleased, Reason: reason}
	case mail.Permanent(sendErr) || c.Attempts >= p.d.Config.MaxAttempts:
		p.logOf(j).WarnContext(j.ctx, "worker: giving up", "err", sendErr, "permanent", mail.Permanent(sendErr))
		j.span.AddEvent("dead-lettered", trace.WithAttributes(
			attribute.Int("carteiro.attempt", c.Attempts),
			attribute.Bool("carteiro.permanent", mail.Permanent(sendErr)),
			attribute.String("carteiro.last_error", sendErr.Error())))
		j.span.SetStatus(codes.Error, sendErr.Error())
		j.name, j.outcome = OutcomeDead, store.Outcome{Lease: lease, Kind: store.OutcomeDead, Reason: sendErr.Error()}
	default:
		wait := Backoff(c.Attempts, p.d.Config.RetryBaseDelay, p.d.Config.RetryMaxDelay, nil)
		p.logOf(j).WarnContext(j.ctx, "worker: will retry", "err", sendErr, "in", wait)
		j.span.AddEvent("retry scheduled", trace.WithAttributes(
			attribute.Int("carteiro.attempt", c.Attempts),
			attribute.String("carteiro.retry_in", wait.String()),
			attribute.String("carteiro.last_error", sendErr.Error())))
		j.span.SetStatus(codes.Error, sendErr.Error())
		j.name, j.outcome = OutcomeRetry, store.Outcome{Lease: lease, Kind: store.OutcomeFailed, Reason: sendErr.Error(), Delay: wait}
	}
	j.attempt.recording.Store(true)
	p.outcomes <- j
}

// poison ends a stream entry that was delivered more than
// WORKER_MAX_DELIVERIES times without an outcome (its claim or its
// recording kept failing, or each worker that took it died): its message
// is recorded dead with the reason, unless it is finished or under a live
// claim, and the entry is acknowledged. If even that write fails, the
// entry is acknowledged anyway: the row is still in Postgres, where the
// outbox's sweeps find it again, at their own pace.
func (p *Pool) poison(j *job) {
	e := j.entry
	p.d.Metrics.poison.Inc()
	reason := fmt.Sprintf("stream entry %s was handed to workers %d times (WORKER_MAX_DELIVERIES=%d) without an outcome: its claim or its recording kept failing, or its workers died",
		e.StreamID, e.Deliveries-1, p.d.Config.MaxDeliveries)
	rctx, done := p.outcomeContext(j.ctx)
	var dead bool
	err := retry(rctx, func(ctx context.Context) (err error) {
		dead, err = p.d.Store.DeadLetter(ctx, e.MessageID, reason)
		return err
	})
	done()
	p.logOf(j).ErrorContext(j.ctx, "worker: poison entry acknowledged", "deliveries", e.Deliveries, "dead_lettered", dead, "err", err)
	j.span.SetStatus(codes.Error, reason)
	p.ack([]*job{j})
	j.span.End()
}

// outcomeContext is the context of an outcome write: ctx's values (the
// span) without its cancellation, so an outcome is recorded even when the
// work was cancelled, within outcomeTimeout, and until Shutdown's deadline.
func (p *Pool) outcomeContext(ctx context.Context) (context.Context, context.CancelFunc) {
	c, cancel := context.WithTimeout(context.WithoutCancel(ctx), outcomeTimeout)
	stop := context.AfterFunc(p.final, cancel)
	return c, func() { stop(); cancel() }
}

// startSpan starts the CONSUMER span for an entry. Its parent is the
// producer's context carried in the entry, and it also links to it, as the
// messaging conventions ask; an entry without trace context (published
// before tracing existed) starts a new trace.
func (p *Pool) startSpan(ctx context.Context, e queue.Entry) (context.Context, trace.Span) {
	parent := p.d.Propagator.Extract(ctx, propagation.MapCarrier(e.Carrier))
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.destination.name", p.d.Queue.Stream()),
			attribute.String("messaging.consumer.group.name", p.d.Config.Redis.Group),
			attribute.String("messaging.operation.name", "process"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.message.id", e.MessageID),
			attribute.String("carteiro.stream_id", e.StreamID),
			attribute.Int64("messaging.message.delivery_count", e.Deliveries),
		),
	}
	if sc := trace.SpanContextFromContext(parent); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	return p.d.Tracer.Start(parent, "process "+p.d.Queue.Destination(), opts...)
}

// ack acknowledges the jobs' entries (and deletes them) in one Redis round
// trip, in a span linked to each job's.
func (p *Pool) ack(jobs []*job) {
	// Its own context too: an outcome recorded is acknowledged even
	// after the work was cancelled.
	ctx, done := p.outcomeContext(context.Background())
	defer done()
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.entry.StreamID
	}
	ctx, span := p.d.Tracer.Start(inTrace(ctx, jobs), "settle "+p.d.Queue.Destination(), batchSpan(jobs,
		trace.WithAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.operation.name", "ack"),
			attribute.String("messaging.operation.type", "settle"),
			attribute.Int("messaging.batch.message_count", len(jobs))))...)
	defer span.End()
	if err := p.d.Queue.Ack(ctx, ids...); err != nil {
		// The entries stay pending; after the lease they are reclaimed
		// and the claim finds the rows finished, so they are only
		// acknowledged then.
		span.RecordError(err)
		p.d.Log.WarnContext(ctx, "worker: ack failed", "entries", len(ids), "err", err)
	}
}

// A span that acts on a batch of jobs (the claim, the outcome write, the
// acknowledgement) is a child of the first job's span, so it starts no
// trace of its own (carteiro's trace policy: only requests and deliveries
// do), and links to every job's span, the first included.

// inTrace is ctx inside the first job's span.
func inTrace(ctx context.Context, jobs []*job) context.Context {
	return trace.ContextWithSpan(ctx, jobs[0].span)
}

// batchSpan are the options of a batch span: its links, then more.
func batchSpan(jobs []*job, more ...trace.SpanStartOption) []trace.SpanStartOption {
	links := make([]trace.Link, len(jobs))
	for i, j := range jobs {
		links[i] = trace.Link{SpanContext: j.span.SpanContext()}
	}
	return append([]trace.SpanStartOption{trace.WithLinks(links...)}, more...)
}

// retry runs f up to five times, a little longer apart each time, so that
// a short database hiccup does not turn a finished send into a repeat. A
// refused (stale) write is final. f must be safe to repeat after a try
// that committed but lost its answer: RecordOutcomes reports a write it
// finds done as applied; a repeated DeadLetter changes nothing (and
// reports that it changed nothing).
func retry(ctx context.Context, f func(context.Context) error) error {
	var err error
	for i := range 5 {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = f(c)
		cancel()
		if err == nil || errors.Is(err, store.ErrStale) || !sleep(ctx, time.Duration(i+1)*200*time.Millisecond) {
			return err
		}
	}
	return err
}
