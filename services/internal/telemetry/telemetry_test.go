package telemetry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestSetupWithoutEndpointRunsWithoutExporting(t *testing.T) {
	tel, err := Setup(context.Background(), "carteiro-test", env(nil))
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	defer tel.Shutdown(context.Background())
	if tel.Exporting {
		t.Error("exporting: got true, want false with no endpoint")
	}
	ctx, span := tel.Tracer("test").Start(context.Background(), "x", trace.WithSpanKind(trace.SpanKindServer))
	defer span.End()
	if !span.SpanContext().IsValid() {
		t.Error("spans must still get ids (they reach logs and responses)")
	}
	// Nothing would read a recorded span: none is recorded or sampled.
	if span.IsRecording() || span.SpanContext().IsSampled() {
		t.Errorf("root span: recording %v, sampled %v, want neither", span.IsRecording(), span.SpanContext().IsSampled())
	}
	_, child := tel.Tracer("test").Start(ctx, "y")
	defer child.End()
	if child.SpanContext().TraceID() != span.SpanContext().TraceID() || child.IsRecording() {
		t.Errorf("child: trace %v recording %v, want trace %v, not recording", child.SpanContext().TraceID(), child.IsRecording(), span.SpanContext().TraceID())
	}
}

func TestSetupExporterFromEnvironment(t *testing.T) {
	for _, tt := range []struct {
		vars      map[string]string
		exporting bool
		wantErr   string
	}{
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, true, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, true, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, true, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_EXPORTER": "none"}, false, ""},
		{map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier-pigeon"}, false, "OTEL_EXPORTER_OTLP_PROTOCOL"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "sometimes"}, false, "OTEL_TRACES_SAMPLER"},
		{map[string]string{"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "2"}, false, "OTEL_TRACES_SAMPLER_ARG"},
		{map[string]string{"OTEL_RESOURCE_ATTRIBUTES": "novalue"}, false, "OTEL_RESOURCE_ATTRIBUTES"},
	} {
		tel, err := Setup(context.Background(), "carteiro-test", env(tt.vars))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: got %v, want an error naming %s", tt.vars, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: got %v, want nil", tt.vars, err)
			continue
		}
		if tel.Exporting != tt.exporting {
			t.Errorf("%v: exporting got %v, want %v", tt.vars, tel.Exporting, tt.exporting)
		}
		tel.Shutdown(context.Background())
	}
}

func TestResourceFromEnvironment(t *testing.T) {
	res, err := newResource("carteiro-api", env(map[string]string{
		"OTEL_RESOURCE_ATTRIBUTES": "deployment.environment.name=dev,team=carteiro%20core",
	}))
	if err != nil {
		t.Fatal(err)
	}
	got := map[attribute.Key]string{}
	for _, kv := range res.Attributes() {
		got[kv.Key] = kv.Value.Emit()
	}
	for k, want := range map[attribute.Key]string{
		"service.name": "carteiro-api", "deployment.environment.name": "dev", "team": "carteiro core",
	} {
		if got[k] != want {
			t.Errorf("%s: got %q, want %q", k, got[k], want)
		}
	}
	res, _ = newResource("carteiro-api", env(map[string]string{"OTEL_SERVICE_NAME": "renamed"}))
	for _, kv := range res.Attributes() {
		if kv.Key == "service.name" && kv.Value.Emit() != "renamed" {
			t.Errorf("OTEL_SERVICE_NAME: got %q, want renamed", kv.Value.Emit())
		}
	}
}

func TestSamplerDefaultFollowsTheParent(t *testing.T) {
	s, err := newSampler(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Description(); !strings.HasPrefix(got, "RequestRoots{ParentBased{root:AlwaysOnSampler") {
		t.Errorf("got %s, want parent-based always-on", got)
	}
	var _ sdktrace.Sampler = s
}

// With no exporter, no trace starts sampled, but a remote parent's sampled
// flag (INCOMING_TRACE_CONTEXT=join behind an edge that samples) is kept,
// as the configured sampler decides with an exporter: the stored trace
// context carries it to a worker that does export.
func TestSetupWithoutEndpointKeepsRemoteParentsFlag(t *testing.T) {
	traceID, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	spanID, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	for _, tt := range []struct {
		sampler     string
		flags       trace.TraceFlags
		wantSampled bool
	}{
		{"", trace.FlagsSampled, true},
		{"", 0, false},
		{"always_off", trace.FlagsSampled, false},
		{"parentbased_always_off", trace.FlagsSampled, true},
	} {
		tel, err := Setup(context.Background(), "carteiro-test", env(map[string]string{"OTEL_TRACES_SAMPLER": tt.sampler}))
		if err != nil {
			t.Fatal(err)
		}
		parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: tt.flags, Remote: true})
		_, span := tel.Tracer("test").Start(trace.ContextWithRemoteSpanContext(context.Background(), parent), "x",
			trace.WithSpanKind(trace.SpanKindServer))
		span.End()
		if got := span.SpanContext(); got.TraceID() != traceID || got.IsSampled() != tt.wantSampled {
			t.Errorf("sampler %q, parent flags %v: got trace %v sampled %v, want trace %v sampled %v",
				tt.sampler, tt.flags, got.TraceID(), got.IsSampled(), traceID, tt.wantSampled)
		}
		_ = tel.Shutdown(context.Background())
	}
}

// WithBlockingExport keeps every span when the load outruns the export:
// here the collector holds the first export until 10,000 spans have been
// ended, far more than the BatchSpanProcessor's queue (2,048) and batch
// (512) hold; without the option the rest are dropped.
func TestBlockingExportKeepsEverySpan(t *testing.T) {
	const spans = 10000
	var received atomic.Int64
	release := make(chan struct{})
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				received.Add(int64(len(ss.GetSpans())))
			}
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer collector.Close()
	tel, err := Setup(context.Background(), "carteiro-test", env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": collector.URL}), WithBlockingExport())
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		for range spans {
			_, span := tel.Tracer("test").Start(context.Background(), "x", trace.WithSpanKind(trace.SpanKindServer))
			span.End()
		}
	}()
	select {
	case <-ended:
		t.Error("all spans ended while the collector held the first export: the queue cannot have held them (dropped?)")
	case <-time.After(500 * time.Millisecond):
	}
	close(release)
	<-ended
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if got := received.Load(); got != spans {
		t.Errorf("spans exported: got %d, want %d", got, spans)
	}
}
