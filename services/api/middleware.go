package main

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// httpMetrics are the RED metrics of the public routes.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	accepted prometheus.Counter
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "carteiro_http_requests_total",
			Help: "HTTP requests answered, by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "carteiro_http_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by route pattern and method.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "carteiro_messages_accepted_total",
			Help: "Messages accepted (committed in Postgres, answered 202).",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.accepted)
	return m
}

// traceIDs is the api's tracing when no span leaves the process (no OTLP
// endpoint): each request gets a span that records nothing (tel.Traces
// starts no recorded trace then; a joined edge's sampled flag is kept, see
// telemetry's noRoots) but has the ids a recorded one would have, so the
// answer's trace_id and X-Trace-Id, the log lines and the trace context
// stored with the row are the same as with observability on. otelhttp,
// which would compute a span's attributes and wrap the body and the
// writer for nothing, is not installed. join is INCOMING_TRACE_CONTEXT=join:
// the caller's traceparent names the trace; otherwise each request starts
// one (a link to the caller would be recorded nowhere).
func traceIDs(next http.Handler, tel *telemetry.Telemetry, join bool) http.Handler {
	tracer := tel.Tracer("carteiro/api")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		if join {
			ctx = tel.Propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		ctx, span := tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// instrument records each request's outcome under the route pattern the
// mux matched, with the trace id as an exemplar, and tells the caller the
// trace id in X-Trace-Id. It sits inside otelhttp (or traceIDs), which
// starts the span.
func (m *httpMetrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sc := trace.SpanContextFromContext(r.Context())
		if sc.IsValid() {
			w.Header().Set("X-Trace-Id", sc.TraceID().String())
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched" // refused before routing (cross-site)
		}
		method := boundedMethod(r.Method)
		m.requests.WithLabelValues(route, method, strconv.Itoa(sw.code)).Inc()
		telemetry.Observe(r.Context(), m.duration.WithLabelValues(route, method), time.Since(start).Seconds())
	})
}

// boundedMethod keeps the method label's values few, whatever clients send.
func boundedMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return m
	}
	return "OTHER"
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code        int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.code, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
