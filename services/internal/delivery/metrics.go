package delivery

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one delivery attempt, the values of the outcome label.
const (
	OutcomeSent  = "sent"
	OutcomeRetry = "retry"
	OutcomeDead  = "dead"
	// OutcomeReleased is an attempt this worker interrupted itself (the
	// shutdown deadline): the message goes back on the queue, uncounted.
	OutcomeReleased = "released"
)

// Metrics are the worker's delivery measurements.
type Metrics struct {
	send     prometheus.Histogram
	latency  prometheus.Histogram
	outcomes *prometheus.CounterVec
	// byOutcome, staleByOutcome and foundDoneByOutcome are outcomes',
	// stale's and foundDone's counters, bound to each outcome once, so a
	// message costs no label lookup.
	byOutcome, staleByOutcome, foundDoneByOutcome map[string]prometheus.Counter
	inflight                                      prometheus.Gauge
	// stale counts outcome writes refused because their claim was no
	// longer held, by write (sent, retry, dead, released).
	stale *prometheus.CounterVec
	// foundDone counts outcome writes found already recorded under their
	// own token and reported applied (store.Result.FoundDone), by write:
	// mostly retries after a try committed but its answer was lost.
	foundDone *prometheus.CounterVec
	// takeovers counts claims that replaced one whose lease expired.
	takeovers prometheus.Counter
	// lost counts attempts stopped because a heartbeat found their claim
	// taken over.
	lost prometheus.Counter
	// renewFailures counts heartbeats that could not renew the leases.
	renewFailures prometheus.Counter
	// poison counts stream entries ended after too many deliveries.
	poison prometheus.Counter
}

// NewMetrics registers the delivery metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		send: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "carteiro_send_duration_seconds",
			Help:    "Time of one SMTP send, successful or not.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "carteiro_delivery_latency_seconds",
			Help:    "Time from acceptance (the row's created_at) to the relay accepting the mail.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "carteiro_messages_total",
			Help: "Delivery attempts by outcome: sent, retry (transient failure, tried again later), dead, or released (interrupted by the worker's shutdown, queued again).",
		}, []string{"outcome"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "carteiro_worker_inflight",
			Help: "Messages this worker holds a claim on: being sent, claimed and waiting for a sender, or with their outcome being written.",
		}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "carteiro_stale_writes_total",
			Help: "Outcome writes refused because another attempt had claimed the message since (fencing), by outcome.",
		}, []string{"outcome"}),
		foundDone: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "carteiro_outcome_writes_found_done_total",
			Help: "Outcome writes the update refused yet found already recorded under their own fencing token, so counted as applied, by outcome: a retry after a try that committed but lost its answer (the connection broke after COMMIT); for released, also a sweep's dead an operator requeued.",
		}, []string{"outcome"}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "carteiro_takeovers_total",
			Help: "Claims that took a message over from an attempt whose lease had expired.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "carteiro_claims_lost_total",
			Help: "Attempts stopped because their claim had been taken over while they ran.",
		}),
		renewFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "carteiro_lease_renewal_failures_total",
			Help: "Heartbeats that could not renew the leases of the sends in flight.",
		}),
		poison: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "carteiro_poison_entries_total",
			Help: "Stream entries delivered WORKER_MAX_DELIVERIES times without an outcome, then ended.",
		}),
	}
	// Every outcome exists from the start, so rates and alerts see zeros
	// rather than nothing.
	m.byOutcome, m.staleByOutcome, m.foundDoneByOutcome = map[string]prometheus.Counter{}, map[string]prometheus.Counter{}, map[string]prometheus.Counter{}
	for _, o := range []string{OutcomeSent, OutcomeRetry, OutcomeDead, OutcomeReleased} {
		m.byOutcome[o] = m.outcomes.WithLabelValues(o)
		m.staleByOutcome[o] = m.stale.WithLabelValues(o)
		m.foundDoneByOutcome[o] = m.foundDone.WithLabelValues(o)
	}
	reg.MustRegister(m.send, m.latency, m.outcomes, m.inflight, m.stale, m.foundDone, m.takeovers, m.lost, m.renewFailures, m.poison)
	return m
}
