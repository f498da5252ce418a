package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/store"
)

// Relay publishes committed messages. It is safe to run one per api
// process: rows are locked with SKIP LOCKED, so relays never publish the
// same row at the same time.
type Relay struct {
	store      *store.Store
	queue      *queue.Queue
	log        *slog.Logger
	cfg        config.Outbox
	tracer     trace.Tracer
	propagator propagation.TextMapPropagator
	published  prometheus.Counter
	wake       chan struct{}
	// epoch is the last stream epoch seen (see queue.Epoch).
	epoch string
	// lost is set from the moment a lost stream is seen until every
	// undelivered message has been put back on the outbox.
	lost bool
}

// Deps are what a relay works with. Tracer, Propagator and Published may
// be nil: no spans, no trace context on the stream, no counting.
type Deps struct {
	Store      *store.Store
	Queue      *queue.Queue
	Log        *slog.Logger
	Config     config.Outbox
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// Published counts the entries put on the stream.
	Published prometheus.Counter
}

// New returns a relay; call Run to start it.
func New(d Deps) *Relay {
	r := &Relay{store: d.Store, queue: d.Queue, log: d.Log, cfg: d.Config,
		tracer: d.Tracer, propagator: d.Propagator, published: d.Published,
		wake: make(chan struct{}, 1)}
	if r.tracer == nil {
		r.tracer = noop.NewTracerProvider().Tracer("")
	}
	if r.propagator == nil {
		r.propagator = propagation.NewCompositeTextMapPropagator()
	}
	if r.published == nil {
		r.published = prometheus.NewCounter(prometheus.CounterOpts{Name: "unused"})
	}
	return r
}

// Notify wakes the relay after a commit. It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run publishes until ctx is done.
func (r *Relay) Run(ctx context.Context) {
	// Learn the stream's epoch before publishing anything, so that a
	// fresh Redis is not taken for a lost one after the first publish.
	r.checkEpoch(ctx)
	tick := time.NewTicker(r.cfg.SweepInterval)
	defer tick.Stop()
	lastStale := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
			if !r.gather(ctx) {
				return
			}
		case <-tick.C:
			r.checkEpoch(ctx)
			if time.Since(lastStale) >= r.cfg.RepublishAfter/4 {
				lastStale = time.Now()
				r.sweepStale(ctx)
				if _, err := r.store.ForgetExpiredKeys(ctx); err != nil {
					r.log.WarnContext(ctx, "outbox: forgetting expired idempotency keys failed", "err", err)
				}
			}
		}
		r.drain(ctx)
	}
}

// gather waits the configured WakeDelay after a wake, so that the
// commits of the next few milliseconds are published with the one that
// woke the relay (one transaction, one stream round trip, instead of one
// each), and then takes the wakes they sent. No wake is lost: a Notify
// taken here followed its commit, and the drain that follows starts
// after it, so it sees that commit's row; a Notify after this point
// wakes the next drain. It returns false when ctx is done.
func (r *Relay) gather(ctx context.Context) bool {
	if r.cfg.WakeDelay > 0 {
		t := time.NewTimer(r.cfg.WakeDelay)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	select {
	case <-r.wake:
	default:
	}
	return true
}

// drain publishes batches until none is full.
func (r *Relay) drain(ctx context.Context) {
	for ctx.Err() == nil {
		n, err := r.store.PublishPending(ctx, r.cfg.BatchSize, r.publish)
		if err != nil {
			if ctx.Err() == nil {
				r.log.WarnContext(ctx, "outbox: publish failed, will retry", "err", err)
			}
			return
		}
		if n < r.cfg.BatchSize {
			return
		}
	}
}

// sweepStale puts back on the outbox the messages published long ago
// whose stream entry is gone (see store.RepublishStale): only rows
// published well before the oldest entry still on the stream, so a
// healthy backlog waiting its turn is never added again. Without an answer
// from Redis it waits for the next sweep.
func (r *Relay) sweepStale(ctx context.Context) {
	oldest, ok, err := r.queue.Oldest(ctx)
	if err != nil {
		r.log.WarnContext(ctx, "outbox: stale sweep skipped: cannot read the stream", "err", err)
		return
	}
	var before *time.Time
	if ok {
		before = &oldest
	}
	if n, err := r.store.RepublishStale(ctx, r.cfg.RepublishAfter, before); err != nil {
		r.log.WarnContext(ctx, "outbox: stale sweep failed", "err", err)
	} else if n > 0 {
		r.log.WarnContext(ctx, "outbox: republishing messages nobody took", "count", n)
	}
}

// publish puts the batch on the stream in one round trip (pipelined
// XADDs), each message inside a PRODUCER span whose parent is the request
// that created the message, and writes that span's context into the
// entry, so the worker's span joins the same trace.
func (r *Relay) publish(ctx context.Context, batch []store.Pending) error {
	entries := make([]queue.Entry, len(batch))
	spans := make([]trace.Span, len(batch))
	for i, p := range batch {
		parent := r.propagator.Extract(ctx, propagation.MapCarrier{"traceparent": p.Traceparent, "tracestate": p.Tracestate})
		spanCtx, span := r.tracer.Start(parent, "send "+r.queue.Destination(),
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.system", "redis"),
				attribute.String("messaging.destination.name", r.queue.Stream()),
				attribute.String("messaging.operation.name", "send"),
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.message.id", p.ID),
			))
		carrier := propagation.MapCarrier{}
		r.propagator.Inject(spanCtx, carrier)
		entries[i], spans[i] = queue.Entry{MessageID: p.ID, Carrier: carrier}, span
	}
	added, err := r.queue.AddBatch(ctx, entries)
	for i, span := range spans {
		if err != nil && (added == nil || !added[i]) {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
		} else {
			r.published.Inc()
		}
		span.End()
	}
	return err
}

// checkEpoch republishes every undelivered message when the stream's epoch
// changed: Redis restarted without its data or was flushed, so entries
// that were on the stream are gone.
func (r *Relay) checkEpoch(ctx context.Context) {
	epoch, created, err := r.queue.Epoch(ctx)
	if err != nil {
		return // Redis is down; the next publish will say so.
	}
	if created || (r.epoch != "" && epoch != r.epoch) {
		r.lost = true
	}
	r.epoch = epoch
	if !r.lost {
		return
	}
	n, err := r.store.RepublishAll(ctx)
	if err != nil {
		r.log.WarnContext(ctx, "outbox: republish after stream loss failed, will retry", "err", err)
		return
	}
	r.lost = false
	if n > 0 {
		r.log.WarnContext(ctx, "outbox: stream was lost, republishing", "count", n)
	}
}
