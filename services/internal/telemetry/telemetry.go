package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Telemetry holds a process's providers. Pass it (or what it provides) to
// whatever needs to trace or count; nothing here is global.
type Telemetry struct {
	// Traces makes the spans.
	Traces trace.TracerProvider
	// Propagator injects and extracts W3C traceparent, tracestate and
	// baggage.
	Propagator propagation.TextMapPropagator
	// Registry holds every Prometheus metric of the process.
	Registry *prometheus.Registry
	// Meters feeds OpenTelemetry instruments (pgx pool and Redis client
	// statistics) into Registry.
	Meters metric.MeterProvider

	// Exporting reports whether spans leave the process. When false,
	// Traces starts no recorded trace (each span still has valid ids,
	// unsampled unless a remote parent is sampled: see noRoots), and
	// instrumentation that only makes spans can be left out.
	Exporting bool

	shutdown []func(context.Context) error
}

// Option changes how Setup builds the providers.
type Option func(*options)

type options struct {
	exporter sdktrace.SpanExporter
	blocking bool
}

// WithSpanExporter sends spans to e, synchronously, whatever the
// environment says; tests use it with an in-memory exporter.
func WithSpanExporter(e sdktrace.SpanExporter) Option {
	return func(o *options) { o.exporter = e }
}

// WithBlockingExport makes the OTLP exporter's BatchSpanProcessor wait for
// room in its queue (OTEL_BSP_MAX_QUEUE_SIZE, 2,048 spans by default)
// instead of dropping a span that finds it full. Benchmarks that measure
// what exporting every span costs use it: a load faster than the export
// otherwise drops spans silently, and their export goes uncounted. The
// services do not: a request must not wait for its telemetry.
func WithBlockingExport() Option {
	return func(o *options) { o.blocking = true }
}

// Setup builds the providers for service (carteiro-api, carteiro-worker)
// from the OTEL_* variables read through getenv:
//
//   - OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT:
//     where spans go; unset means no span is recorded, but every span
//     still gets its ids (they reach logs, responses and the stored trace
//     context)
//   - OTEL_EXPORTER_OTLP_PROTOCOL (or _TRACES_PROTOCOL): http/protobuf
//     (default) or grpc
//   - OTEL_TRACES_EXPORTER=none turns export off
//   - OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (without an
//     exporter no trace starts sampled: they only decide for a remote
//     parent, see noRoots)
//
// Call Shutdown to flush what is buffered.
func Setup(ctx context.Context, service string, getenv func(string) string, opts ...Option) (*Telemetry, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	res, err := newResource(service, getenv)
	if err != nil {
		return nil, err
	}
	sampler, err := newSampler(getenv)
	if err != nil {
		return nil, err
	}
	t := &Telemetry{
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Registry:   prometheus.NewRegistry(),
	}

	tpOpts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res), sdktrace.WithSampler(sampler)}
	switch {
	case o.exporter != nil:
		tpOpts = append(tpOpts, sdktrace.WithSyncer(o.exporter))
		t.Exporting = true
	default:
		exp, err := newExporter(ctx, getenv)
		if err != nil {
			return nil, err
		}
		if exp != nil {
			var bspOpts []sdktrace.BatchSpanProcessorOption
			if o.blocking {
				bspOpts = append(bspOpts, sdktrace.WithBlocking())
			}
			tpOpts = append(tpOpts, sdktrace.WithBatcher(exp, bspOpts...))
			t.Exporting = true
		} else {
			// Nothing would read a recorded span: every span gets its ids
			// (a new trace id at a root, the parent's below it, so they
			// still reach answers, logs and the stored trace context) and
			// no trace starts recorded (noRoots). A remote parent's sampled
			// flag is still followed (INCOMING_TRACE_CONTEXT=join: "sampled
			// flag included"), so a worker that exports still records it.
			tpOpts = append(tpOpts, sdktrace.WithSampler(noRoots{next: sampler}))
		}
	}
	tp := sdktrace.NewTracerProvider(tpOpts...)
	t.Traces = tp
	t.shutdown = append(t.shutdown, tp.Shutdown)

	t.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	promExporter, err := otelprom.New(otelprom.WithRegisterer(t.Registry), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(promExporter), sdkmetric.WithResource(res))
	t.Meters = mp
	t.shutdown = append(t.shutdown, mp.Shutdown)
	return t, nil
}

// Tracer returns the tracer for one instrumentation scope.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.Traces.Tracer(name) }

// MetricsHandler serves the registry, in OpenMetrics when the scraper asks
// for it, which is what carries exemplars.
func (t *Telemetry) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{EnableOpenMetrics: true, Registry: t.Registry})
}

// Close is Shutdown for a deferred call at the end of a process: it gives
// the flush five seconds, whatever the state of ctx, and logs a failure.
func (t *Telemetry) Close(ctx context.Context, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := t.Shutdown(ctx); err != nil {
		log.Warn("telemetry shutdown", "err", err)
	}
}

// Shutdown flushes buffered spans and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

func newResource(service string, getenv func(string) string) (*resource.Resource, error) {
	attrs := []attribute.KeyValue{
		attribute.String("service.name", service),
		attribute.String("service.version", version()),
		attribute.String("service.namespace", "carteiro"),
	}
	if v := getenv("OTEL_RESOURCE_ATTRIBUTES"); v != "" {
		for _, kv := range strings.Split(v, ",") {
			k, val, ok := strings.Cut(kv, "=")
			if !ok || strings.TrimSpace(k) == "" {
				return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %q is not key=value", kv)
			}
			if dec, err := url.PathUnescape(strings.TrimSpace(val)); err == nil {
				val = dec
			}
			attrs = append(attrs, attribute.String(strings.TrimSpace(k), val))
		}
	}
	if v := getenv("OTEL_SERVICE_NAME"); v != "" {
		attrs = append(attrs, attribute.String("service.name", v))
	}
	// Later attributes win: the environment overrides the defaults.
	return resource.Merge(resource.Default(), resource.NewSchemaless(dedupe(attrs)...))
}

func dedupe(attrs []attribute.KeyValue) []attribute.KeyValue {
	seen := map[attribute.Key]int{}
	var out []attribute.KeyValue
	for _, a := range attrs {
		if i, ok := seen[a.Key]; ok {
			out[i] = a
			continue
		}
		seen[a.Key] = len(out)
		out = append(out, a)
	}
	return out
}

// version is the module version the binary was built from, or "dev".
func version() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func newExporter(ctx context.Context, getenv func(string) string) (sdktrace.SpanExporter, error) {
	if getenv("OTEL_TRACES_EXPORTER") == "none" {
		return nil, nil
	}
	endpoint := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	generic := getenv("OTEL_EXPORTER_OTLP_ENDPOINT")
	if endpoint == "" && generic == "" {
		return nil, nil
	}
	protocol := getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	switch protocol {
	case "", "http/protobuf":
		if endpoint == "" {
			// The generic endpoint names the collector; the signal's
			// path is appended (OTLP exporter specification).
			endpoint = strings.TrimRight(generic, "/") + "/v1/traces"
		}
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(endpoint))
	case "grpc":
		if endpoint == "" {
			endpoint = generic
		}
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(endpoint))
	}
	return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not http/protobuf or grpc", protocol)
}
