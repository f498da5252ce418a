package main

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/carteiro/carteiro/services/internal/telemetry"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// keptSpans is an in-memory exporter whose spans survive the provider's
// shutdown.
type keptSpans struct{ *tracetest.InMemoryExporter }

func (keptSpans) Shutdown(context.Context) error { return nil }

// A request joins the caller's trace: the server span is named by route,
// the INSERT is its child, and the relay's PRODUCER span descends from it.
func TestRequestSpans(t *testing.T) {
	exp := keptSpans{tracetest.NewInMemoryExporter()}
	r := testenv.StartRedis(t)
	api := startAPI(t, testenv.NewDatabase(t), r.Addr, telemetry.WithSpanExporter(exp))
	const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	res, body := api.post(t, "/api/messages", "application/json", jsonBody("a", "b"), "traceparent", caller)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status: got %d (%s)", res.StatusCode, body)
	}
	tid, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	var server, insert, producer *tracetest.SpanStub
	waitFor(t, "the producer span", func() bool {
		for _, s := range exp.GetSpans() {
			if s.SpanContext.TraceID() != tid {
				continue
			}
			switch {
			case s.Name == "POST /api/messages":
				server = &s
			case s.Name == "INSERT":
				insert = &s
			case strings.HasPrefix(s.Name, "send ") && s.SpanKind == trace.SpanKindProducer:
				producer = &s
			}
		}
		return server != nil && insert != nil && producer != nil
	})
	if server.SpanKind != trace.SpanKindServer || server.Parent.SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("server span: got kind %v parent %v, want server under the caller's span", server.SpanKind, server.Parent.SpanID())
	}
	if insert.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("INSERT parent: got %v, want the server span", insert.Parent.SpanID())
	}
	if producer.Parent.SpanID() != server.SpanContext.SpanID() {
		t.Errorf("producer parent: got %v, want the server span (stored with the row)", producer.Parent.SpanID())
	}
	// The stream entry carries the producer's context.
	entries, _ := r.Client().XRange(context.Background(), api.stream, "-", "+").Result()
	if len(entries) != 1 || entries[0].Values["traceparent"] != "00-"+tid.String()+"-"+producer.SpanContext.SpanID().String()+"-01" {
		t.Errorf("stream entry: got %v, want the producer span's traceparent", entries)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	api.post(t, "/api/messages", "application/json", jsonBody("a", "b"),
		"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
	api.post(t, "/api/messages", "application/json", `{}`)
	waitFor(t, "the outbox to publish", func() bool {
		_, body := api.get(t, api.Internal+"/metrics")
		return strings.Contains(body, "carteiro_outbox_published_total 1")
	})
	_, body := api.get(t, api.Internal+"/metrics", "Accept", "application/openmetrics-text; version=1.0.0")
	for _, want := range []string{
		`carteiro_http_requests_total{code="202",method="POST",route="POST /api/messages"} 1`,
		`carteiro_http_requests_total{code="400",method="POST",route="POST /api/messages"} 1`,
		`carteiro_messages_accepted_total 1`,
		`carteiro_queue_depth{state="queued"} 1`,
		`carteiro_queue_depth{state="stream"} 1`,
		`carteiro_queue_depth{state="lag"} `,
		`carteiro_outbox_unpublished 0`,
		`carteiro_oldest_waiting_seconds `,
		`go_goroutines `,
		`pgxpool_total_connections`,
		`db_client_connections_usage{db_system="redis"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// Each latency bucket keeps its latest observation's trace as exemplar.
	if !regexp.MustCompile(`(?m)^carteiro_http_request_duration_seconds_bucket\{[^}]*\} \d+ # \{trace_id="[0-9a-f]{32}"\}`).MatchString(body) {
		t.Errorf("no trace_id exemplar on carteiro_http_request_duration_seconds")
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}
