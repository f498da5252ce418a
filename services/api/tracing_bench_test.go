package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// BenchmarkAcceptTracing is the api's handler for an accepted JSON message
// (in-memory store, no network hop in front) with observability off (no
// exporter: ids only) and on (otelhttp's server span, exported by the
// BatchSpanProcessor over OTLP/HTTP to a sink that reads and discards each
// request, standing in for the collector). Besides ns/op it reports the
// process's CPU per request (getrusage, the exporter's goroutine and the
// sink included), which is what observability costs the api's core; on −
// off is the tracing. go test ./services/api -run '^$' -bench AcceptTracing.
func BenchmarkAcceptTracing(b *testing.B) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer sink.Close()
	for _, mode := range []struct {
		name string
		env  map[string]string
	}{
		{"off", nil},
		{"on", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": sink.URL}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			tel, err := telemetry.Setup(context.Background(), "carteiro-api", func(k string) string { return mode.env[k] },
				telemetry.WithBlockingExport()) // every span exported: see BenchmarkAcceptMessageSpans
			if err != nil {
				b.Fatal(err)
			}
			h := NewServer(slog.New(slog.DiscardHandler), &memStore{}, nopNotifier{}, tel, "", config.TraceContextLink)
			benchAccept(b, tel, h, nil)
		})
	}
}

// benchAccept posts an accepted JSON message to h (with header's fields
// besides the usual ones), from parallel goroutines, b.N times; then shuts tel down, so everything recorded is
// exported within the measurement, and reports the process's CPU per
// request (cpu-µs/op: getrusage, every goroutine included).
func benchAccept(b *testing.B, tel *telemetry.Telemetry, h http.Handler, header http.Header) {
	body := jsonBody("Olá", "Tudo bem?")
	before := cpuTime()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, "/api/messages", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json")
			req.Header.Set("User-Agent", "wrk")
			req.Header.Set("X-Forwarded-For", "203.0.113.7")
			for k, v := range header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				b.Errorf("status: got %d, want 202 (%s)", rec.Code, rec.Body)
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tel.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-before).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
