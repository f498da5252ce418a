package telemetry

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestOnlyRequestsAndDeliveriesStartTraces(t *testing.T) {
	remote := func(sampled bool) context.Context {
		flags := trace.TraceFlags(0)
		if sampled {
			flags = trace.FlagsSampled
		}
		return trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
			TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: flags, Remote: true,
		}))
	}
	cases := []struct {
		name    string
		sampler string // OTEL_TRACES_SAMPLER
		parent  func(trace.Tracer) context.Context
		kind    trace.SpanKind
		want    bool
	}{
		{"request", "", nil, trace.SpanKindServer, true},
		{"delivery", "", nil, trace.SpanKindConsumer, true},
		{"redis.dial", "", nil, trace.SpanKindClient, false},
		{"pgx query outside a request", "", nil, trace.SpanKindClient, false},
		{"relay publish without a stored context", "", nil, trace.SpanKindProducer, false},
		{"internal work", "", nil, trace.SpanKindInternal, false},
		{"redis.dial under always_on", "always_on", nil, trace.SpanKindClient, false},
		{"query in a request", "", func(tr trace.Tracer) context.Context {
			ctx, _ := tr.Start(context.Background(), "GET /", trace.WithSpanKind(trace.SpanKindServer))
			return ctx
		}, trace.SpanKindClient, true},
		{"HELLO under a dropped redis.dial, always_on", "always_on", func(tr trace.Tracer) context.Context {
			ctx, _ := tr.Start(context.Background(), "redis.dial", trace.WithSpanKind(trace.SpanKindClient))
			return ctx
		}, trace.SpanKindClient, false},
		{"request under always_off", "always_off", nil, trace.SpanKindServer, false},
		{"delivery of a recorded message", "", func(trace.Tracer) context.Context { return remote(true) }, trace.SpanKindConsumer, true},
		{"delivery of an unrecorded message", "", func(trace.Tracer) context.Context { return remote(false) }, trace.SpanKindConsumer, false},
		{"unrecorded remote parent, always_on", "always_on", func(trace.Tracer) context.Context { return remote(false) }, trace.SpanKindConsumer, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := newSampler(env(map[string]string{"OTEL_TRACES_SAMPLER": c.sampler}))
			if err != nil {
				t.Fatal(err)
			}
			tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(s))
			defer tp.Shutdown(context.Background())
			tr := tp.Tracer("test")
			ctx := context.Background()
			if c.parent != nil {
				ctx = c.parent(tr)
			}
			_, span := tr.Start(ctx, c.name, trace.WithSpanKind(c.kind))
			defer span.End()
			if got := span.SpanContext().IsSampled(); got != c.want {
				t.Errorf("sampled: got %v, want %v", got, c.want)
			}
			if !span.SpanContext().IsValid() {
				t.Errorf("span context: got invalid, want ids even when not recorded (they reach logs and answers)")
			}
		})
	}
}
