package delivery

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/carteiro/carteiro/services/internal/mail"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// handle takes one stream entry through one delivery attempt, inside a
// CONSUMER span that continues the trace carried by the entry. The entry
// is acknowledged once the outcome is recorded in Postgres; if recording
// fails the entry stays pending and is recovered after the lease.
func (p *Pool) handle(ctx context.Context, e queue.Entry) {
	ctx, span := p.startSpan(ctx, e)
	defer span.End()
	p.d.Metrics.inflight.Inc()
	defer p.d.Metrics.inflight.Dec()
	log := p.d.Log.With("message_id", e.MessageID, "stream_id", e.StreamID)

	if e.MessageID == "" {
		log.WarnContext(ctx, "worker: dropping a stream entry without a message id")
		span.SetStatus(codes.Error, "entry without a message id")
		p.ack(ctx, e)
		return
	}
	email, ok, err := p.d.Store.Claim(ctx, e.MessageID, p.d.Sender.MessageID(e.MessageID), p.d.Config.Lease)
	if err != nil {
		log.WarnContext(ctx, "worker: claim failed, leaving the entry pending", "err", err)
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
	log = log.With("attempt", email.Attempts)
	span.SetAttributes(attribute.Int("carteiro.attempt", email.Attempts))

	start := time.Now()
	_, sendErr := p.d.Sender.Send(ctx, mail.Message{
		ID: email.ID, Assunto: email.Assunto, Mensagem: email.Mensagem, Date: email.CreatedAt,
	})
	telemetry.Observe(ctx, p.d.Metrics.send, time.Since(start).Seconds())

	var record func(context.Context) error
	var outcome string
	switch {
	case sendErr == nil:
		outcome = OutcomeSent
		log.InfoContext(ctx, "worker: sent")
		record = func(ctx context.Context) error { return p.d.Store.MarkSent(ctx, email.ID) }
	case mail.Permanent(sendErr) || email.Attempts >= p.d.Config.MaxAttempts:
		outcome = OutcomeDead
		log.WarnContext(ctx, "worker: giving up", "err", sendErr, "permanent", mail.Permanent(sendErr))
		span.AddEvent("dead-lettered", trace.WithAttributes(
			attribute.Int("carteiro.attempt", email.Attempts),
			attribute.Bool("carteiro.permanent", mail.Permanent(sendErr)),
			attribute.String("carteiro.last_error", sendErr.Error())))
		span.SetStatus(codes.Error, sendErr.Error())
		record = func(ctx context.Context) error { return p.d.Store.MarkDead(ctx, email.ID, sendErr.Error()) }
	default:
		outcome = OutcomeRetry
		wait := Backoff(email.Attempts, p.d.Config.RetryBaseDelay, p.d.Config.RetryMaxDelay, nil)
		next := time.Now().Add(wait)
		log.WarnContext(ctx, "worker: will retry", "err", sendErr, "in", wait)
		span.AddEvent("retry scheduled", trace.WithAttributes(
			attribute.Int("carteiro.attempt", email.Attempts),
			attribute.String("carteiro.next_attempt_at", next.UTC().Format(time.RFC3339Nano)),
			attribute.String("carteiro.last_error", sendErr.Error())))
		span.SetStatus(codes.Error, sendErr.Error())
		record = func(ctx context.Context) error { return p.d.Store.MarkFailed(ctx, email.ID, sendErr.Error(), next) }
	}
	if err := retry(ctx, record); err != nil {
		log.ErrorContext(ctx, "worker: could not record the outcome, leaving the entry pending", "err", err)
		span.RecordError(err)
		span.SetStatus(codes.Error, "could not record the outcome")
		return
	}
	p.d.Metrics.outcomes.WithLabelValues(outcome).Inc()
	if outcome == OutcomeSent {
		telemetry.Observe(ctx, p.d.Metrics.latency, time.Since(email.CreatedAt).Seconds())
	}
	p.ack(ctx, e)
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
		),
	}
	if sc := trace.SpanContextFromContext(parent); sc.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
	}
	return p.d.Tracer.Start(parent, "process "+p.d.Queue.Destination(), opts...)
}

func (p *Pool) ack(ctx context.Context, e queue.Entry) {
	if err := p.d.Queue.Ack(ctx, e.StreamID); err != nil {
		// The entry stays pending; after the lease it is reclaimed and the
		// claim finds the row finished, so it is only acknowledged then.
		p.d.Log.WarnContext(ctx, "worker: ack failed", "stream_id", e.StreamID, "err", err)
	}
}

// retry runs f up to five times, a little longer apart each time, so that
// a short database hiccup does not turn a finished send into a repeat.
func retry(ctx context.Context, f func(context.Context) error) error {
	var err error
	for i := range 5 {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = f(c)
		cancel()
		if err == nil || !sleep(ctx, time.Duration(i+1)*200*time.Millisecond) {
			return err
		}
	}
	return err
}
