package telemetry

import (
	"fmt"
	"strconv"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// newSampler reads OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (the
// OpenTelemetry SDK environment variables specification) and wraps the
// sampler they name in requestRoots. The default follows the parent's
// decision and records every new trace.
func newSampler(getenv func(string) string) (sdktrace.Sampler, error) {
	s, err := configuredSampler(getenv)
	if err != nil {
		return nil, err
	}
	return requestRoots{next: s}, nil
}

func configuredSampler(getenv func(string) string) (sdktrace.Sampler, error) {
	ratio := func() (float64, error) {
		arg := getenv("OTEL_TRACES_SAMPLER_ARG")
		if arg == "" {
			return 1, nil
		}
		r, err := strconv.ParseFloat(arg, 64)
		if err != nil || r < 0 || r > 1 {
			return 0, fmt.Errorf("OTEL_TRACES_SAMPLER_ARG: %q is not a ratio between 0 and 1", arg)
		}
		return r, nil
	}
	switch name := getenv("OTEL_TRACES_SAMPLER"); name {
	case "", "parentbased_always_on":
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case "always_on":
		return sdktrace.AlwaysSample(), nil
	case "always_off":
		return sdktrace.NeverSample(), nil
	case "parentbased_always_off":
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "traceidratio", "parentbased_traceidratio":
		r, err := ratio()
		if err != nil {
			return nil, err
		}
		if name == "traceidratio" {
			return sdktrace.TraceIDRatioBased(r), nil
		}
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(r)), nil
	default:
		return nil, fmt.Errorf("OTEL_TRACES_SAMPLER: %q is not a supported sampler", name)
	}
}

// requestRoots is carteiro's trace policy around the configured sampler:
// only a request (a SERVER span) or a delivery (a CONSUMER span) may start
// a trace. Work done outside both, such as connection setup (go-redis's
// redis.dial with its HELLO and CLIENT SETINFO, pgx's connect), pool
// warm-up, the outbox relay's sweeps and the metrics collectors' queries,
// makes no root span, so Jaeger shows only what users did. (Connection
// setup done inside a request's or a delivery's context makes no span at
// all: see PgxOption and InstrumentRedis.)
//
// A span whose parent is in the same process follows that parent: one not
// recorded has no recorded children, whatever the configured sampler, so
// a dropped root leaves no orphans behind. Remote parents, and new roots of
// the two kinds, are the configured sampler's to decide. Whether a remote
// parent exists at all for an HTTP request is the server's choice
// (services/api: a caller's trace is linked, not joined, unless
// INCOMING_TRACE_CONTEXT=join), so no caller forces or suppresses
// recording.
type requestRoots struct{ next sdktrace.Sampler }

func (s requestRoots) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	parent := trace.SpanContextFromContext(p.ParentContext)
	switch {
	case parent.IsValid() && !parent.IsRemote():
		decision := sdktrace.Drop
		if parent.IsSampled() {
			decision = sdktrace.RecordAndSample
		}
		return sdktrace.SamplingResult{Decision: decision, Tracestate: parent.TraceState()}
	case !parent.IsValid() && p.Kind != trace.SpanKindServer && p.Kind != trace.SpanKindConsumer:
		return sdktrace.SamplingResult{Decision: sdktrace.Drop}
	}
	return s.next.ShouldSample(p)
}

func (s requestRoots) Description() string {
	return "RequestRoots{" + s.next.Description() + "}"
}

// noRoots is the sampler when no span is exported: a new trace is never
// sampled (nothing would read its spans), and a span with a parent is
// next's to decide. A remote parent's sampled flag, by which the caller
// asks the components downstream to record the request too (W3C Trace
// Context §3.2.2.5.1), is then kept as it is with an exporter: with INCOMING_TRACE_CONTEXT=join behind an
// edge that samples, those spans are recorded and dropped, the price of
// the flag reaching the stored trace context.
type noRoots struct{ next sdktrace.Sampler }

func (s noRoots) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if !trace.SpanContextFromContext(p.ParentContext).IsValid() {
		return sdktrace.SamplingResult{Decision: sdktrace.Drop}
	}
	return s.next.ShouldSample(p)
}

func (s noRoots) Description() string { return "NoRoots{" + s.next.Description() + "}" }
