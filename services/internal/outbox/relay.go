package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/store"
)

// Relay publishes committed messages. It is safe to run one per api
// process: rows are locked with SKIP LOCKED, so relays never publish the
// same row at the same time.
type Relay struct {
	store *store.Store
	queue *queue.Queue
	log   *slog.Logger
	cfg   config.Outbox
	wake  chan struct{}
	// epoch is the last stream epoch seen (see queue.Epoch).
	epoch string
	// lost is set from the moment a lost stream is seen until every
	// undelivered message has been put back on the outbox.
	lost bool
}

// New returns a relay; call Run to start it.
func New(s *store.Store, q *queue.Queue, log *slog.Logger, cfg config.Outbox) *Relay {
	return &Relay{store: s, queue: q, log: log, cfg: cfg, wake: make(chan struct{}, 1)}
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
	tick := time.NewTicker(r.cfg.SweepInterval)
	defer tick.Stop()
	lastStale := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-tick.C:
			r.checkEpoch(ctx)
			if time.Since(lastStale) >= r.cfg.RepublishAfter/4 {
				lastStale = time.Now()
				if n, err := r.store.RepublishStale(ctx, r.cfg.RepublishAfter); err != nil {
					r.log.WarnContext(ctx, "outbox: stale sweep failed", "err", err)
				} else if n > 0 {
					r.log.WarnContext(ctx, "outbox: republishing messages nobody took", "count", n)
				}
			}
		}
		r.drain(ctx)
	}
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

func (r *Relay) publish(ctx context.Context, batch []store.Pending) error {
	entries := make([]queue.Entry, len(batch))
	for i, p := range batch {
		entries[i] = queue.Entry{MessageID: p.ID, Carrier: map[string]string{
			"traceparent": p.Traceparent, "tracestate": p.Tracestate,
		}}
	}
	return r.queue.Publish(ctx, entries)
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
