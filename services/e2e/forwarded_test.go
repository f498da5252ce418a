package e2e

import (
	"compress/gzip"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// nginx is the edge: it replaces a client-sent X-Forwarded-For with the
// address the connection came from (nginx/snippets/proxy-api.conf.template),
// so a client cannot choose the address the api records. The api records
// it as its request span's client.address (otelhttp takes the first
// X-Forwarded-For entry, else the peer), read here from the spans the api
// exports to a receiver in the test. Sent to the api directly, the forged
// header is what the api records: the check can fail.
func TestEdgeReplacesForwardedFor(t *testing.T) {
	spans := &otlpReceiver{attrs: map[string]map[string]string{}}
	receiver := httptest.NewServer(spans)
	t.Cleanup(receiver.Close)
	s := startStack(t, stackOptions{extraEnv: map[string]string{
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": receiver.URL + "/v1/traces",
		"OTEL_BSP_SCHEDULE_DELAY":            "100",
	}})
	const forged = "203.0.113.66"
	for _, c := range []struct {
		what, base, want string
	}{
		{"through nginx", s.URL, "127.0.0.1"},
		{"to the api directly", "http://" + s.envVar("API_HTTP_ADDR"), forged},
	} {
		req, err := http.NewRequest("GET", c.base+"/api/messages/00000000-0000-0000-0000-000000000000", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("X-Forwarded-For", forged)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		traceID := res.Header.Get("X-Trace-Id")
		if res.StatusCode != http.StatusNotFound || traceID == "" {
			t.Fatalf("%s: got %d with X-Trace-Id %q, want 404 with a trace id", c.what, res.StatusCode, traceID)
		}
		var attrs map[string]string
		waitFor(t, 20*time.Second, c.what+": the api's request span", func() bool {
			attrs = spans.server(traceID)
			return attrs != nil
		})
		if got := attrs["client.address"]; got != c.want {
			t.Errorf("%s: client.address got %q, want %q (X-Forwarded-For sent: %s)", c.what, got, c.want, forged)
		}
	}
}

// otlpReceiver is an OTLP/HTTP trace receiver (POST /v1/traces, protobuf,
// the api's default protocol) that keeps the string attributes of the
// api's SERVER spans by trace id (hex).
type otlpReceiver struct {
	mu    sync.Mutex
	attrs map[string]map[string]string
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		z, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = z
	}
	b, err := io.ReadAll(body)
	var req coltracepb.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(b, &req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.GetResourceSpans() {
		if stringAttrs(rs.GetResource().GetAttributes())["service.name"] != "carteiro-api" {
			continue
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				if sp.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
					continue
				}
				o.attrs[hex.EncodeToString(sp.GetTraceId())] = stringAttrs(sp.GetAttributes())
			}
		}
	}
	o.mu.Unlock()
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// server returns the attributes of the api's SERVER span in traceID, nil
// until it has arrived.
func (o *otlpReceiver) server(traceID string) map[string]string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.attrs[traceID]
}

// stringAttrs are the string-valued attributes of kvs.
func stringAttrs(kvs []*commonpb.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		if v, ok := kv.GetValue().GetValue().(*commonpb.AnyValue_StringValue); ok {
			m[kv.GetKey()] = v.StringValue
		}
	}
	return m
}
