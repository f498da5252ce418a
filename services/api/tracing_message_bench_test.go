package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// BenchmarkAcceptMessageSpans is BenchmarkAcceptTracing with the whole span
// set one accepted message makes in the api: otelhttp's server span, the
// group commit's INSERT span (its five attributes, as store.insertGrouped
// and insertBatch set them) and the outbox relay's producer span (its five,
// as outbox.Relay.publish sets them, parented by the stored traceparent),
// exported by the BatchSpanProcessor to a sink that decodes each export as
// the collector would (protobuf), over OTLP/HTTP or OTLP/gRPC. The two
// client spans are made here rather than by the store and the relay, which
// need Postgres and Redis; what they record is the same. Modes:
//
//   - off: no exporter (ids only)
//   - http, grpc: OTEL_EXPORTER_OTLP_PROTOCOL http/protobuf or grpc
//   - http-noattrs: OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT=0, every span
//     attribute computed but dropped by the SDK: an upper bound on what
//     the attributes cost beyond their computation
//   - http-server-only: the server span alone (BenchmarkAcceptTracing's
//     set, with this sink)
//   - http-traceparent: http with a caller's traceparent, as nginx sends
//     one: the server span links it (config.TraceContextLink)
//   - http-insert-event: http with the INSERT recorded as an event on the
//     server span instead of a span of its own (a candidate measured in
//     bench/README.md, not what the store does)
//
// Every span is exported (telemetry.WithBlockingExport: at this rate the
// default queue drops most of them) and the sink must receive exactly the
// mode's spans per request, or the benchmark fails.
//
// It reports the process's CPU per request (getrusage: the exporter's
// goroutines and the sink included) and allocations per request.
// go test ./services/api -run '^$' -bench AcceptMessageSpans -benchmem.
func BenchmarkAcceptMessageSpans(b *testing.B) {
	received := &traceSink{}
	httpSink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if err != nil {
			received.bad.Add(1)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		received.Export(r.Context(), &req)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer httpSink.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	grpcSink := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(grpcSink, received)
	go func() { _ = grpcSink.Serve(lis) }()
	defer grpcSink.Stop()

	for _, mode := range []struct {
		name       string
		env        map[string]string
		osEnv      map[string]string
		serverOnly bool
		header     http.Header
		event      bool
	}{
		{"off", nil, nil, false, nil, false},
		{"http", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": httpSink.URL}, nil, false, nil, false},
		{"grpc", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + lis.Addr().String(), "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, nil, false, nil, false},
		{"http-noattrs", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": httpSink.URL},
			map[string]string{"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "0"}, false, nil, false},
		{"http-server-only", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": httpSink.URL}, nil, true, nil, false},
		{"http-traceparent", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": httpSink.URL}, nil, false,
			http.Header{"Traceparent": {"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}, false},
		{"http-insert-event", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": httpSink.URL}, nil, false, nil, true},
	} {
		b.Run(mode.name, func(b *testing.B) {
			for k, v := range mode.osEnv {
				b.Setenv(k, v) // the SDK reads its span limits from the process's environment
			}
			// Blocking: every span is exported and its export counted; at
			// the benchmark's rate the default would drop most of them.
			tel, err := telemetry.Setup(context.Background(), "carteiro-api", func(k string) string { return mode.env[k] },
				telemetry.WithBlockingExport())
			if err != nil {
				b.Fatal(err)
			}
			st := &spanStore{tracer: tel.Tracer("carteiro/store"), relay: tel.Tracer("carteiro/outbox"), propagator: tel.Propagator, event: mode.event}
			var messages messageStore = st
			if mode.serverOnly {
				messages = &st.memStore
			}
			h := NewServer(slog.New(slog.DiscardHandler), messages, nopNotifier{}, tel, "", config.TraceContextLink)
			received.spans.Store(0)
			received.bad.Store(0)
			benchAccept(b, tel, h, mode.header)
			// Every export is over (tel shut down): the exporter really
			// exported, and the sink could decode each export.
			spans, bad := received.spans.Load(), received.bad.Load()
			want := int64(3) // server, INSERT, producer
			switch {
			case mode.env == nil:
				want = 0
			case mode.serverOnly:
				want = 1
			case mode.event:
				want = 2
			}
			switch {
			case bad > 0:
				b.Fatalf("%d export(s) the sink could not decode", bad)
			case spans != want*int64(b.N):
				b.Fatalf("%d span(s) exported for %d requests, want %d a request", spans, b.N, want)
			}
			b.ReportMetric(float64(spans)/float64(b.N), "spans/op")
		})
	}
}

// traceSink is an OTLP trace receiver (gRPC, and the HTTP sink's decoded
// exports) that counts the spans it received and discards them; bad
// counts the exports the HTTP sink could not decode.
type traceSink struct {
	coltracepb.UnimplementedTraceServiceServer
	spans, bad atomic.Int64
}

// Export counts req's spans.
func (s *traceSink) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			s.spans.Add(int64(len(ss.GetSpans())))
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// spanStore is memStore plus the spans the group commit and the relay
// record for each message (see BenchmarkAcceptMessageSpans).
type spanStore struct {
	memStore
	tracer, relay trace.Tracer
	propagator    propagation.TextMapPropagator
	event         bool
}

func (s *spanStore) Insert(ctx context.Context, in message.Input, tp, ts string) (store.Email, error) {
	if s.event {
		e, err := s.memStore.Insert(ctx, in, tp, ts)
		trace.SpanFromContext(ctx).AddEvent("INSERT committed", trace.WithAttributes(
			attribute.String("db.system.name", "postgresql"),
			attribute.String("db.operation.name", "INSERT"),
			attribute.String("db.collection.name", "emails"),
			attribute.Int("db.operation.batch.size", 8)))
		s.produce(e.ID, tp, ts)
		return e, err
	}
	_, span := s.tracer.Start(ctx, "INSERT", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("db.system.name", "postgresql"),
			attribute.String("db.operation.name", "INSERT"),
			attribute.String("db.collection.name", "emails"),
			attribute.Bool("carteiro.group_commit", true),
		))
	span.SetAttributes(attribute.Int("db.operation.batch.size", 8))
	e, err := s.memStore.Insert(ctx, in, tp, ts)
	span.End()
	s.produce(e.ID, tp, ts)
	return e, err
}

func (s *spanStore) produce(id, tp, ts string) {
	parent := s.propagator.Extract(context.Background(), propagation.MapCarrier{"traceparent": tp, "tracestate": ts})
	spanCtx, producer := s.relay.Start(parent, "send emails",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.destination.name", "carteiro:emails"),
			attribute.String("messaging.operation.name", "send"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.message.id", id),
		))
	s.propagator.Inject(spanCtx, propagation.MapCarrier{})
	producer.End()
}
