package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

func TestLinesInsideASpanCarryItsIDs(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, "debug").With("service", "test")
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:  trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
	})
	log.InfoContext(trace.ContextWithSpanContext(context.Background(), sc), "inside")
	log.InfoContext(context.Background(), "outside")

	dec := json.NewDecoder(&buf)
	var inside, outside map[string]any
	if err := dec.Decode(&inside); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&outside); err != nil {
		t.Fatal(err)
	}
	if got := inside["trace_id"]; got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("trace_id: got %v, want 4bf92f3577b34da6a3ce929d0e0e4736", got)
	}
	if got := inside["span_id"]; got != "00f067aa0ba902b7" {
		t.Errorf("span_id: got %v, want 00f067aa0ba902b7", got)
	}
	if got := inside["service"]; got != "test" {
		t.Errorf("service: got %v, want test (attributes kept)", got)
	}
	if _, ok := outside["trace_id"]; ok {
		t.Errorf("line outside a span: got trace_id %v, want none", outside["trace_id"])
	}
}
