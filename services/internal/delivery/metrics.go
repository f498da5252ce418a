package delivery

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one delivery attempt, the values of the outcome label.
const (
	OutcomeSent  = "sent"
	OutcomeRetry = "retry"
	OutcomeDead  = "dead"
)

// Metrics are the worker's delivery measurements.
type Metrics struct {
	send     prometheus.Histogram
	latency  prometheus.Histogram
	outcomes *prometheus.CounterVec
	inflight prometheus.Gauge
}

// NewMetrics registers the delivery metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		send: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "carteiro_send_duration_seconds",
			Help:    "Time of one SMTP send, successful or not.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "carteiro_delivery_latency_seconds",
			Help:    "Time from acceptance (the row's created_at) to the relay accepting the mail.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "carteiro_messages_total",
			Help: "Delivery attempts by outcome: sent, retry (transient failure, tried again later) or dead.",
		}, []string{"outcome"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "carteiro_worker_inflight",
			Help: "Messages being delivered right now.",
		}),
	}
	// Every outcome exists from the start, so rates and alerts see zeros
	// rather than nothing.
	for _, o := range []string{OutcomeSent, OutcomeRetry, OutcomeDead} {
		m.outcomes.WithLabelValues(o)
	}
	reg.MustRegister(m.send, m.latency, m.outcomes, m.inflight)
	return m
}
