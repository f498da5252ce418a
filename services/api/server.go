package main

import (
	"context"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// messageStore is what the handlers need from the store.
type messageStore interface {
	Insert(ctx context.Context, in message.Input, traceparent, tracestate string) (store.Email, error)
	InsertOnce(ctx context.Context, key string, fingerprint []byte, in message.Input, traceparent, tracestate string) (store.Email, bool, error)
	Get(ctx context.Context, id string) (store.Email, error)
	Ping(ctx context.Context) error
}

// notifier is woken after each commit (the outbox relay).
type notifier interface{ Notify() }

// NewServer returns the api's public handler: the routes behind the
// cross-origin protection that rejects cross-site POSTs, measured (RED
// metrics) and traced (one server span per request, named by route; when
// tel exports no span, each request only gets its trace ids: see traceIDs).
// jaegerURL, when set, is where the pages link trace ids. incomingTrace is
// config.TraceContextLink (each request starts a trace and links the
// caller's traceparent) or config.TraceContextJoin (the span is the
// traceparent's child; only behind an edge that starts every trace).
func NewServer(log *slog.Logger, messages messageStore, relay notifier, tel *telemetry.Telemetry, jaegerURL, incomingTrace string) http.Handler {
	metrics := newHTTPMetrics(tel.Registry)
	mux := http.NewServeMux()
	addRoutes(mux, log, messages, relay, tel, metrics, jaegerURL)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		respondError(w, r, log, errForbiddenCrossSite)
	}))
	handler := metrics.instrument(cop.Handler(mux))
	if !tel.Exporting {
		return traceIDs(handler, tel, incomingTrace == config.TraceContextJoin)
	}
	return otelhttp.NewHandler(handler, "carteiro-api",
		otelhttp.WithTracerProvider(tel.Traces),
		otelhttp.WithPropagators(tel.Propagator),
		// A caller's trace context is untrusted: linked, not joined, so
		// its sampled flag neither forces nor suppresses recording.
		otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return incomingTrace != config.TraceContextJoin }),
		// RED metrics are ours (Prometheus names); otelhttp only traces.
		otelhttp.WithMeterProvider(noop.NewMeterProvider()),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			if r.Pattern != "" {
				return r.Pattern
			}
			return r.Method
		}),
	)
}
