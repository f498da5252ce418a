package main

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/telemetry"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// keptSpans is an in-memory exporter whose spans survive the provider's
// shutdown.
type keptSpans struct{ *tracetest.InMemoryExporter }

func (keptSpans) Shutdown(context.Context) error { return nil }

// A request starts its own trace and links the caller's (an untrusted
// client's trace context is never joined): the server span is named by
// route, the INSERT is its child, and the relay's PRODUCER span descends
// from it.
func TestRequestSpans(t *testing.T) {
	exp := keptSpans{tracetest.NewInMemoryExporter()}
	r := testenv.StartRedis(t)
	api := startAPI(t, testenv.NewDatabase(t), r.Addr, telemetry.WithSpanExporter(exp))
	const caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	res, body := api.post(t, "/api/messages", "application/json", jsonBody("a", "b"), "traceparent", caller)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("status: got %d (%s)", res.StatusCode, body)
	}
	tid, err := trace.TraceIDFromHex(res.Header.Get("X-Trace-Id"))
	if err != nil || tid.String() == "0af7651916cd43dd8448eb211c80319c" {
		t.Fatalf("X-Trace-Id: got %q (%v), want a trace of the api's own", res.Header.Get("X-Trace-Id"), err)
	}
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
	if server.SpanKind != trace.SpanKindServer || server.Parent.IsValid() {
		t.Errorf("server span: got kind %v parent %v, want a server span starting the trace", server.SpanKind, server.Parent.SpanID())
	}
	if len(server.Links) != 1 || server.Links[0].SpanContext.TraceID().String() != "0af7651916cd43dd8448eb211c80319c" ||
		server.Links[0].SpanContext.SpanID().String() != "b7ad6b7169203331" {
		t.Errorf("server span links: got %+v, want one to the caller's span", server.Links)
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

// A caller's traceparent decides neither the trace nor its recording: by
// default (link) every request is recorded by carteiro's own sampler,
// whatever the caller's sampled flag; joined only with
// INCOMING_TRACE_CONTEXT=join, behind an edge that starts every trace.
func TestCallerTraceContext(t *testing.T) {
	const callerTrace, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	cases := []struct {
		name, mode, sampler, traceparent string
		recorded, joined                 bool
	}{
		{"link, caller sampled", config.TraceContextLink, "", "00-" + callerTrace + "-" + callerSpan + "-01", true, false},
		{"link, caller not sampled", config.TraceContextLink, "", "00-" + callerTrace + "-" + callerSpan + "-00", true, false},
		{"link, no caller trace", config.TraceContextLink, "", "", true, false},
		{"link, caller sampled, carteiro records nothing", config.TraceContextLink, "parentbased_always_off", "00-" + callerTrace + "-" + callerSpan + "-01", false, false},
		{"join, edge sampled", config.TraceContextJoin, "", "00-" + callerTrace + "-" + callerSpan + "-01", true, true},
		{"join, edge not sampled", config.TraceContextJoin, "", "00-" + callerTrace + "-" + callerSpan + "-00", false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			exp := tracetest.NewInMemoryExporter()
			tel, err := telemetry.Setup(context.Background(), "carteiro-api",
				func(k string) string { return map[string]string{"OTEL_TRACES_SAMPLER": c.sampler}[k] },
				telemetry.WithSpanExporter(exp))
			if err != nil {
				t.Fatal(err)
			}
			rec := postMessage(t, NewServer(slog.New(slog.DiscardHandler), &memStore{}, nopNotifier{}, tel, "http://jaeger.test", c.mode), c.traceparent)
			tid := rec.Header().Get("X-Trace-Id")
			if joined := tid == callerTrace; joined != c.joined {
				t.Errorf("X-Trace-Id %s: joined the caller's trace: got %v, want %v", tid, joined, c.joined)
			}
			// The answer links the trace in Jaeger only when it is recorded.
			got := decodeBody[acceptedResponse](t, rec.Body.String())
			if linked := got.TraceURL == "http://jaeger.test/trace/"+tid; linked != c.recorded || got.TraceID != tid {
				t.Errorf("answer: trace_id %q trace_url %q, want trace_id %s and a trace_url exactly when recorded (%v)", got.TraceID, got.TraceURL, tid, c.recorded)
			}
			var server *tracetest.SpanStub
			for _, s := range exp.GetSpans() {
				if s.Name == "POST /api/messages" {
					server = &s
				}
			}
			if recorded := server != nil; recorded != c.recorded {
				t.Fatalf("recorded: got %v, want %v", recorded, c.recorded)
			}
			if server == nil {
				return
			}
			if server.SpanContext.TraceID().String() != tid {
				t.Errorf("span's trace %s, answer's %s: want the same", server.SpanContext.TraceID(), tid)
			}
			wantLinks := 0
			if c.traceparent != "" && !c.joined {
				wantLinks = 1
			}
			if len(server.Links) != wantLinks || server.Parent.IsValid() != c.joined {
				t.Errorf("got %d links and parent %v, want %d links and a parent: %v", len(server.Links), server.Parent.SpanID(), wantLinks, c.joined)
			}
		})
	}
}

// postMessage posts a valid message to h, with traceparent when not
// empty, and wants 202.
// JAEGER_UI_URL may be an absolute URL or, for a Jaeger that nginx serves
// on the page's own origin, an absolute path: trace_url is then a path the
// page (and any client) resolves against the api's origin.
func TestTraceURLFromJaegerURL(t *testing.T) {
	for _, c := range []struct{ jaegerURL, want string }{
		{"http://jaeger.test", "http://jaeger.test/trace/"},
		{"https://jaeger.test/ui/", "https://jaeger.test/ui/trace/"},
		{"/jaeger", "/jaeger/trace/"},
		{"/jaeger/", "/jaeger/trace/"},
	} {
		tel, err := telemetry.Setup(context.Background(), "carteiro-api", func(string) string { return "" },
			telemetry.WithSpanExporter(tracetest.NewInMemoryExporter()))
		if err != nil {
			t.Fatal(err)
		}
		rec := postMessage(t, NewServer(slog.New(slog.DiscardHandler), &memStore{}, nopNotifier{}, tel, c.jaegerURL, config.TraceContextLink), "")
		got := decodeBody[acceptedResponse](t, rec.Body.String())
		if want := c.want + got.TraceID; got.TraceID == "" || got.TraceURL != want {
			t.Errorf("%q: got trace_url %q, want %q", c.jaegerURL, got.TraceURL, want)
		}
	}
}

func postMessage(t *testing.T, h http.Handler, traceparent string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/messages", strings.NewReader(jsonBody("a", "b")))
	req.Header.Set("Content-Type", "application/json")
	if traceparent != "" {
		req.Header.Set("traceparent", traceparent)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("status: got %d, want 202 (%s)", rec.Code, rec.Body)
	}
	return rec
}

// tracedStore is a messageStore that keeps, for each insert, the trace
// context it was given and whether the caller's span records.
type tracedStore struct {
	memStore
	traceparent string
	recording   bool
}

func (s *tracedStore) Insert(ctx context.Context, in message.Input, traceparent, tracestate string) (store.Email, error) {
	s.traceparent, s.recording = traceparent, trace.SpanFromContext(ctx).IsRecording()
	return s.memStore.Insert(ctx, in, traceparent, tracestate)
}

// With no exporter the api starts no recorded trace, yet every answer
// still has a trace id: the same in the body and X-Trace-Id, stored with
// the row (the worker's log lines carry it), the caller's only when
// joined, and linked to Jaeger only when the edge it joined sampled it
// (the trace is the edge's, recorded there): the sampled flag is then kept
// ("sampled flag included"), and the worker records its part if it exports.
func TestTraceIDsWithoutExport(t *testing.T) {
	const callerTrace, callerSpan = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	for _, c := range []struct {
		name, mode, traceparent string
		joined, sampled         bool
	}{
		{"link, no caller trace", config.TraceContextLink, "", false, false},
		{"link, caller sampled", config.TraceContextLink, "00-" + callerTrace + "-" + callerSpan + "-01", false, false},
		{"join, edge sampled", config.TraceContextJoin, "00-" + callerTrace + "-" + callerSpan + "-01", true, true},
		{"join, edge not sampled", config.TraceContextJoin, "00-" + callerTrace + "-" + callerSpan + "-00", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			tel, err := telemetry.Setup(context.Background(), "carteiro-api", func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			defer tel.Shutdown(context.Background())
			if tel.Exporting {
				t.Fatal("exporting: got true, want false with no endpoint")
			}
			st := &tracedStore{}
			rec := postMessage(t, NewServer(slog.New(slog.DiscardHandler), st, nopNotifier{}, tel, "http://jaeger.test", c.mode), c.traceparent)
			tid := rec.Header().Get("X-Trace-Id")
			if id, err := trace.TraceIDFromHex(tid); err != nil || !id.IsValid() {
				t.Fatalf("X-Trace-Id: got %q (%v), want a trace id", tid, err)
			}
			if joined := tid == callerTrace; joined != c.joined {
				t.Errorf("X-Trace-Id %s: joined the caller's trace: got %v, want %v", tid, joined, c.joined)
			}
			got := decodeBody[acceptedResponse](t, rec.Body.String())
			wantURL, wantFlags := "", "-00"
			if c.sampled {
				wantURL, wantFlags = "http://jaeger.test/trace/"+tid, "-01"
			}
			if got.TraceID != tid || got.TraceURL != wantURL {
				t.Errorf("answer: trace_id %q trace_url %q, want trace_id %s and trace_url %q", got.TraceID, got.TraceURL, tid, wantURL)
			}
			if st.recording != c.sampled {
				t.Errorf("the request's span records: got %v, want %v (only a sampled edge's trace)", st.recording, c.sampled)
			}
			if !strings.HasPrefix(st.traceparent, "00-"+tid+"-") || !strings.HasSuffix(st.traceparent, wantFlags) {
				t.Errorf("stored traceparent: got %q, want trace %s, flags %s", st.traceparent, tid, wantFlags[1:])
			}
		})
	}
}

// Exemplars name traces: with no exporter none is recorded, and no bucket
// points at one.
func TestNoExemplarsWithoutExport(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	api.post(t, "/api/messages", "application/json", jsonBody("a", "b"))
	_, body := api.get(t, api.Internal+"/metrics", "Accept", "application/openmetrics-text; version=1.0.0")
	if !strings.Contains(body, `carteiro_http_requests_total{code="202",method="POST",route="POST /api/messages"} 1`) {
		t.Fatalf("metrics lack the request:\n%s", body)
	}
	if strings.Contains(body, `# {trace_id=`) {
		t.Errorf("got a trace_id exemplar with no exporter, want none:\n%s", body)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr,
		telemetry.WithSpanExporter(keptSpans{tracetest.NewInMemoryExporter()}))
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
	// otelpgx's per-statement histogram is left out (telemetry.PgxOption):
	// nothing reads it, and it cost every statement about a microsecond.
	if strings.Contains(body, "db_client_operation_duration_seconds") {
		t.Errorf("metrics have db_client_operation_duration_seconds, want otelpgx's histogram left out")
	}
	// Each latency bucket keeps its latest observation's trace as exemplar.
	if !regexp.MustCompile(`(?m)^carteiro_http_request_duration_seconds_bucket\{[^}]*\} \d+ # \{trace_id="[0-9a-f]{32}"\}`).MatchString(body) {
		t.Errorf("no trace_id exemplar on carteiro_http_request_duration_seconds")
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", body)
	}
}
