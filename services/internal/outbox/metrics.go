package outbox

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/store"
)

// DepthCollector reports, on every scrape, how much work is waiting: the
// stream's entries (unread and pending) and the rows by status in
// Postgres, the outbox backlog and the age of the oldest waiting message.
// Each scrape costs what the backlog holds, never the whole table: the
// open rows are counted through their partial index on every scrape, the
// dead ones (which only pile up) at most every deadEvery.
type DepthCollector struct {
	store *store.Store
	queue *queue.Queue
	log   *slog.Logger

	mu       sync.Mutex
	dead     int64
	deadAt   time.Time
	deadSeen bool

	depth       *prometheus.Desc
	unpublished *prometheus.Desc
	oldest      *prometheus.Desc
}

// NewDepthCollector returns the collector; register it once.
func NewDepthCollector(s *store.Store, q *queue.Queue, log *slog.Logger) *DepthCollector {
	return &DepthCollector{
		store: s, queue: q, log: log,
		depth: prometheus.NewDesc("carteiro_queue_depth",
			"Messages waiting, by state: stream (entries on the Redis stream), lag (not yet read by a worker), pending (read, not acknowledged), and rows queued, sending, failed and dead in Postgres.",
			[]string{"state"}, nil),
		unpublished: prometheus.NewDesc("carteiro_outbox_unpublished",
			"Committed messages not yet put on the stream.", nil, nil),
		oldest: prometheus.NewDesc("carteiro_oldest_waiting_seconds",
			"Age of the oldest queued or failed message (0 when none waits).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *DepthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.depth
	ch <- c.unpublished
	ch <- c.oldest
}

// Collect implements prometheus.Collector. A store that does not answer
// within a second leaves its series out of this scrape.
func (c *DepthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if d, err := c.store.Depth(ctx); err != nil {
		c.log.Debug("depth: postgres", "err", err)
	} else {
		for state, n := range map[string]int64{"queued": d.Queued, "sending": d.Sending, "failed": d.Failed} {
			ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n), state)
		}
		ch <- prometheus.MustNewConstMetric(c.unpublished, prometheus.GaugeValue, float64(d.Unpublished))
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, d.OldestWaiting.Seconds())
	}
	if n, ok := c.deadCount(ctx); ok {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n), "dead")
	}
	if d, err := c.queue.Depth(ctx); err != nil {
		c.log.Debug("depth: redis", "err", err)
	} else {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(d.Length), "stream")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(d.Lag), "lag")
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(d.Pending), "pending")
	}
}

// deadEvery is how often the dead rows are counted again.
const deadEvery = 30 * time.Second

// deadCount is the dead rows' count, measured again once deadEvery has
// passed (a failed measure keeps the last one, if any).
func (c *DepthCollector) deadCount(ctx context.Context) (int64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.deadSeen || time.Since(c.deadAt) >= deadEvery {
		n, err := c.store.DeadCount(ctx)
		if err != nil {
			c.log.Debug("depth: postgres dead count", "err", err)
			return c.dead, c.deadSeen
		}
		c.dead, c.deadAt, c.deadSeen = n, time.Now(), true
	}
	return c.dead, true
}
