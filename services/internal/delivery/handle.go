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

// handle takes one stream entry through one delivery attempt, inside a
// CONSUMER span that continues the trace carried by the entry: claim the
// row (a fencing token and a lease), send while the heartbeat renews the
// claim, record the outcome under the token, then acknowledge the entry.
// If the claim or the recording fails, the entry stays pending and is
// delivered again after the lease; after WORKER_MAX_DELIVERIES it is
// poison (see poison). A refused (stale) outcome leaves the entry to the
// attempt that holds the message.
func (p *Pool) handle(ctx context.Context, e queue.Entry) {
	ctx, span := p.startSpan(ctx, e)
	defer span.End()
	p.d.Metrics.inflight.Inc()
	defer p.d.Metrics.inflight.Dec()
	log := p.d.Log.With("message_id", e.MessageID, "stream_id", e.StreamID)

	if uuid.Validate(e.MessageID) != nil {
		log.WarnContext(ctx, "worker: dropping a stream entry without a valid message id")
		span.SetStatus(codes.Error, "entry without a valid message id")
		p.ack(ctx, e)
		return
	}
	if e.Deliveries > int64(p.d.Config.MaxDeliveries) {
		p.poison(ctx, e, log, span)
		return
	}
	cctx, cancel := context.WithTimeout(ctx, claimTimeout)
	c, ok, err := p.d.Store.Claim(cctx, e.MessageID, p.d.Sender.MessageID(e.MessageID), p.d.Config.Lease, p.d.Config.MaxAttempts)
	cancel()
	if err != nil {
		log.WarnContext(ctx, "worker: claim failed, leaving the entry pending", "deliveries", e.Deliveries, "err", err)
		span.RecordError(err)
		span.SetStatus(codes.Error, "claim failed")
		return
	}
	if !ok {
		// Already sent, dead, not due yet, or in someone else's hands.
		span.AddEvent("not claimable: acknowledged without sending")
		p.ack(ctx, e)
		return
	}
	log = log.With("attempt", c.Attempts, "token", c.Token)
	span.SetAttributes(attribute.Int("carteiro.attempt", c.Attempts), attribute.Int64("carteiro.fencing_token", c.Token))
	if c.TookOver {
		p.d.Metrics.takeovers.Inc()
		log.WarnContext(ctx, "worker: took over a message whose claim's lease expired", "previous_token", c.Token-1, "deliveries", e.Deliveries)
	}

	sendCtx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	a := &attempt{entry: e, lease: store.Lease{ID: c.ID, Token: c.Token}, stop: stop}
	p.inflight.add(a)
	defer p.inflight.remove(a)

	start := time.Now()
	_, sendErr := p.d.Sender.Send(sendCtx, mail.Message{
		ID: c.ID, MessageID: c.MessageID, Assunto: c.Assunto, Mensagem: c.Mensagem, Date: c.CreatedAt,
	})
	telemetry.Observe(ctx, p.d.Metrics.send, time.Since(start).Seconds())

	var record func(context.Context) error
	var outcome string
	switch {
	case sendErr == nil:
		outcome = OutcomeSent
		log.InfoContext(ctx, "worker: sent")
		record = func(ctx context.Context) error { return p.d.Store.MarkSent(ctx, c.ID, c.Token) }
	case sendCtx.Err() != nil:
		// Interrupted here: the shutdown deadline, or the claim was lost.
		// Not the relay's doing, so the attempt is given back.
		outcome = OutcomeReleased
		reason := fmt.Sprintf("attempt %d interrupted: %v", c.Attempts, context.Cause(sendCtx))
		log.WarnContext(ctx, "worker: send interrupted, releasing the message", "cause", context.Cause(sendCtx), "err", sendErr)
		span.SetStatus(codes.Error, reason)
		record = func(ctx context.Context) error { return p.d.Store.Release(ctx, c.ID, c.Token, reason) }
	case mail.Permanent(sendErr) || c.Attempts >= p.d.Config.MaxAttempts:
		outcome = OutcomeDead
		log.WarnContext(ctx, "worker: giving up", "err", sendErr, "permanent", mail.Permanent(sendErr))
		span.AddEvent("dead-lettered", trace.WithAttributes(
			attribute.Int("carteiro.attempt", c.Attempts),
			attribute.Bool("carteiro.permanent", mail.Permanent(sendErr)),
			attribute.String("carteiro.last_error", sendErr.Error())))
		span.SetStatus(codes.Error, sendErr.Error())
		record = func(ctx context.Context) error { return p.d.Store.MarkDead(ctx, c.ID, c.Token, sendErr.Error()) }
	default:
		outcome = OutcomeRetry
		wait := Backoff(c.Attempts, p.d.Config.RetryBaseDelay, p.d.Config.RetryMaxDelay, nil)
		log.WarnContext(ctx, "worker: will retry", "err", sendErr, "in", wait)
		span.AddEvent("retry scheduled", trace.WithAttributes(
			attribute.Int("carteiro.attempt", c.Attempts),
			attribute.String("carteiro.retry_in", wait.String()),
			attribute.String("carteiro.last_error", sendErr.Error())))
		span.SetStatus(codes.Error, sendErr.Error())
		record = func(ctx context.Context) error {
			return p.d.Store.MarkFailed(ctx, c.ID, c.Token, sendErr.Error(), wait)
		}
	}

	a.recording.Store(true)
	rctx, done := p.outcomeContext(ctx)
	err = retry(rctx, record)
	done()
	var stale *store.StaleError
	switch {
	case errors.As(err, &stale):
		p.d.Metrics.stale.WithLabelValues(outcome).Inc()
		log.WarnContext(ctx, "worker: stale outcome refused: another attempt claimed the message since",
			"outcome", outcome, "current_token", stale.Current, "current_status", stale.Status)
		span.AddEvent("stale outcome refused", trace.WithAttributes(
			attribute.String("carteiro.outcome", outcome), attribute.Int64("carteiro.current_token", stale.Current)))
		return
	case err != nil:
		log.ErrorContext(ctx, "worker: could not record the outcome, leaving the entry pending", "outcome", outcome, "err", err)
		span.RecordError(err)
		span.SetStatus(codes.Error, "could not record the outcome")
		return
	}
	p.d.Metrics.outcomes.WithLabelValues(outcome).Inc()
	if outcome == OutcomeSent {
		telemetry.Observe(ctx, p.d.Metrics.latency, time.Since(c.CreatedAt).Seconds())
	}
	p.ack(ctx, e)
}

// poison ends a stream entry that was delivered more than
// WORKER_MAX_DELIVERIES times without an outcome (its claim or its
// recording kept failing, or each worker that took it died): its message
// is recorded dead with the reason, unless it is finished or under a live
// claim, and the entry is acknowledged. If even that write fails, the
// entry is acknowledged anyway: the row is still in Postgres, where the
// outbox's sweeps find it again, at their own pace.
func (p *Pool) poison(ctx context.Context, e queue.Entry, log *slog.Logger, span trace.Span) {
	p.d.Metrics.poison.Inc()
	reason := fmt.Sprintf("stream entry %s was handed to workers %d times (WORKER_MAX_DELIVERIES=%d) without an outcome: its claim or its recording kept failing, or its workers died",
		e.StreamID, e.Deliveries-1, p.d.Config.MaxDeliveries)
	rctx, done := p.outcomeContext(ctx)
	var dead bool
	err := retry(rctx, func(ctx context.Context) (err error) {
		dead, err = p.d.Store.DeadLetter(ctx, e.MessageID, reason)
		return err
	})
	done()
	log.ErrorContext(ctx, "worker: poison entry acknowledged", "deliveries", e.Deliveries, "dead_lettered", dead, "err", err)
	span.SetStatus(codes.Error, reason)
	p.ack(ctx, e)
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

func (p *Pool) ack(ctx context.Context, e queue.Entry) {
	// Its own context too: an outcome recorded is acknowledged even
	// after the work was cancelled.
	ctx, done := p.outcomeContext(ctx)
	defer done()
	if err := p.d.Queue.Ack(ctx, e.StreamID); err != nil {
		// The entry stays pending; after the lease it is reclaimed and the
		// claim finds the row finished, so it is only acknowledged then.
		p.d.Log.WarnContext(ctx, "worker: ack failed", "stream_id", e.StreamID, "err", err)
	}
}

// retry runs f up to five times, a little longer apart each time, so that
// a short database hiccup does not turn a finished send into a repeat. A
// refused (stale) write is final.
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
