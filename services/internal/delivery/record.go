package delivery

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// maxOutcomeBatch is the most outcomes written in one statement.
const maxOutcomeBatch = 256

// recordLoop writes the outcomes the senders hand it, as a group commit
// does: it takes every outcome waiting (up to maxOutcomeBatch), waits up to
// WORKER_OUTCOME_DELAY for the other senders' (gatherOutcomes), writes them
// in one statement and acknowledges their entries in one Redis round trip;
// the outcomes that arrive meanwhile form the next batch. It returns once
// the senders are done and every outcome is written.
func (p *Pool) recordLoop() {
	for j := range p.outcomes {
		p.record(gatherOutcomes(p.outcomes, j, p.d.Config.OutcomeDelay, p.d.Config.Concurrency))
	}
}

// gatherOutcomes makes a batch of first and the outcomes waiting on
// outcomes, then, while fewer than senders are in, those that arrive
// within delay of first's: under load the senders finish milliseconds
// apart, and a batch each commit instead of one or two outcomes each
// halves the commits and Redis round trips per message. It returns early
// when outcomes is closed (the senders are done) and never holds more
// than maxOutcomeBatch.
func gatherOutcomes(outcomes <-chan *job, first *job, delay time.Duration, senders int) []*job {
	batch := []*job{first}
waiting:
	for len(batch) < maxOutcomeBatch {
		select {
		case j, ok := <-outcomes:
			if !ok {
				return batch
			}
			batch = append(batch, j)
		default:
			break waiting
		}
	}
	if delay <= 0 || len(batch) >= senders {
		return batch
	}
	wait := time.NewTimer(delay)
	defer wait.Stop()
	for len(batch) < senders && len(batch) < maxOutcomeBatch {
		select {
		case j, ok := <-outcomes:
			if !ok {
				return batch
			}
			batch = append(batch, j)
		case <-wait.C:
			return batch
		}
	}
	return batch
}

// record writes a batch of outcomes under their tokens (with retries, on
// its own context: see outcomeContext), then acknowledges the entries of
// those that applied. A try whose answer was lost after its commit is
// safe to retry: the store reports a write it finds done under its token
// as applied (see store.RecordOutcomes), so that outcome is counted once,
// here, and its entry acknowledged; such a write is also counted as found
// done (carteiro_outcome_writes_found_done_total). A refused (stale) outcome is counted
// and logged; its entry is left to the attempt that holds the message. If
// the batch cannot be written, its entries stay pending and are delivered
// again after the lease.
func (p *Pool) record(batch []*job) {
	defer func() {
		for _, j := range batch {
			p.inflight.remove(j.attempt)
			p.d.Metrics.inflight.Dec()
			j.span.End()
		}
	}()
	outcomes := make([]store.Outcome, len(batch))
	for i, j := range batch {
		outcomes[i] = j.outcome
	}
	ctx, done := p.outcomeContext(context.Background())
	defer done()
	ctx, span := p.d.Tracer.Start(inTrace(ctx, batch), "record outcomes", batchSpan(batch,
		trace.WithAttributes(attribute.Int("messaging.batch.message_count", len(batch))))...)
	var results []store.Result
	err := retry(ctx, func(ctx context.Context) (err error) {
		results, err = p.d.Store.RecordOutcomes(ctx, outcomes)
		return err
	})
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "could not record the outcomes")
	}
	span.End()
	if err != nil {
		for _, j := range batch {
			p.logOf(j).ErrorContext(j.ctx, "worker: could not record the outcome, leaving the entry pending", "outcome", j.name, "err", err)
			j.span.RecordError(err)
			j.span.SetStatus(codes.Error, "could not record the outcome")
		}
		return
	}
	applied := make([]*job, 0, len(batch))
	for i, j := range batch {
		var stale *store.StaleError
		if errors.As(results[i].Err, &stale) {
			p.d.Metrics.staleByOutcome[j.name].Inc()
			attrs := []any{"outcome", j.name, "current_token", stale.Current, "current_status", stale.Status}
			if stale.ReadErr != nil {
				// Refused, but the row's current claim is unknown.
				attrs = []any{"outcome", j.name, "err", stale.ReadErr}
			}
			p.logOf(j).WarnContext(j.ctx, "worker: stale outcome refused: another attempt claimed the message since", attrs...)
			j.span.AddEvent("stale outcome refused", trace.WithAttributes(
				attribute.String("carteiro.outcome", j.name), attribute.Int64("carteiro.current_token", stale.Current)))
			continue
		}
		if results[i].FoundDone {
			p.d.Metrics.foundDoneByOutcome[j.name].Inc()
		}
		p.d.Metrics.byOutcome[j.name].Inc()
		if j.name == OutcomeSent {
			telemetry.Observe(j.ctx, p.d.Metrics.latency, time.Since(j.claim.CreatedAt).Seconds())
		}
		applied = append(applied, j)
	}
	if len(applied) > 0 {
		p.ack(applied)
	}
}
