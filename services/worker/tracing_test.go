package main

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/telemetry"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// spansOf groups by name the ended spans of one trace.
func spansOf(spans tracetest.SpanStubs, traceID trace.TraceID) map[string][]tracetest.SpanStub {
	out := map[string][]tracetest.SpanStub{}
	for _, s := range spans {
		if s.SpanContext.TraceID() == traceID {
			out[s.Name] = append(out[s.Name], s)
		}
	}
	return out
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value
		}
	}
	return attribute.Value{}
}

// An entry carrying a traceparent is processed in that trace: the CONSUMER
// span is the producer's child and links to it; the send is its child.
// The claim, the outcome write and the acknowledgement act on a batch of
// entries at once: each is one span (with the Postgres or Redis span as
// its child) under the first entry's process span, linked to every
// entry's, so it starts no trace of its own. An entry
// without trace context (published before tracing existed) is still
// processed, as a new trace.
func TestProcessingContinuesTheProducersTrace(t *testing.T) {
	r := newRig(t)
	exp := newExporter()
	q := queue.New(r.redis.Client(), r.stream, "carteiro-workers")
	ctx := context.Background()

	traced := r.insert("traced", "message")
	const producer = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := q.Add(ctx, queue.Entry{MessageID: traced, Carrier: map[string]string{"traceparent": producer}}); err != nil {
		t.Fatal(err)
	}
	old := r.insert("old", "message without trace context")
	if err := q.Add(ctx, queue.Entry{MessageID: old}); err != nil {
		t.Fatal(err)
	}
	stop := r.startWorker("w1", telemetry.WithSpanExporter(exp))
	r.waitStatus(traced, message.StatusSent)
	r.waitStatus(old, message.StatusSent)
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	parent, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	byName := spansOf(exp.GetSpans(), tid)
	process := byName["process "+q.Destination()]
	if len(process) != 1 {
		t.Fatalf("process spans in the producer's trace: got %d, want 1 (spans: %v)", len(process), names(byName))
	}
	p := process[0]
	if p.SpanKind != trace.SpanKindConsumer {
		t.Errorf("kind: got %v, want consumer", p.SpanKind)
	}
	if p.Parent.SpanID() != parent {
		t.Errorf("parent: got %v, want the producer %v", p.Parent.SpanID(), parent)
	}
	if len(p.Links) != 1 || p.Links[0].SpanContext.SpanID() != parent {
		t.Errorf("links: got %v, want one to the producer", p.Links)
	}
	for key, want := range map[string]string{
		"messaging.system": "redis", "messaging.destination.name": r.stream,
		"messaging.operation.name": "process", "messaging.operation.type": "process",
		"messaging.message.id": traced,
	} {
		if got := attr(p, key).AsString(); got != want {
			t.Errorf("%s: got %q, want %q", key, got, want)
		}
	}
	children := map[string]bool{}
	for name, spans := range byName {
		for _, s := range spans {
			if s.Parent.SpanID() == p.SpanContext.SpanID() {
				children[name] = true
			}
		}
	}
	if !children["smtp send"] {
		t.Errorf("child smtp send of the process span: missing (children: %v)", children)
	}
	// The batch spans that link to the process span, and their children.
	batch := map[string]bool{}
	for _, s := range exp.GetSpans() {
		linked := false
		for _, l := range s.Links {
			linked = linked || l.SpanContext.SpanID() == p.SpanContext.SpanID()
		}
		if !linked {
			continue
		}
		for _, c := range exp.GetSpans() {
			if c.Parent.SpanID() == s.SpanContext.SpanID() {
				batch[s.Name+" > "+c.Name] = true
			}
		}
	}
	for _, want := range []string{"claim " + q.Destination() + " > UPDATE", "record outcomes > UPDATE"} {
		if !batch[want] {
			t.Errorf("batch span %q linked to the process span: missing (got %v)", want, batch)
		}
	}
	ackFound := false
	for name := range batch {
		if strings.HasPrefix(name, "settle "+q.Destination()+" > ") {
			ackFound = true // the redisotel span of the XACK/XDEL transaction
		}
	}
	if !ackFound {
		t.Errorf("no Redis span for the acknowledgement among %v", batch)
	}
	// The statements' spans carry the connection's attributes.
	for _, s := range byName["UPDATE"] {
		if attr(s, "db.system.name").AsString() != "postgresql" || attr(s, "server.address").AsString() != r.db.Host ||
			attr(s, "server.port").AsInt64() != int64(r.db.Port) || attr(s, "db.namespace").AsString() != r.db.Name ||
			attr(s, "user.name").AsString() != r.db.User {
			t.Errorf("statement span: got attrs %v, want the connection's (%s:%d, %s as %s)", s.Attributes, r.db.Host, r.db.Port, r.db.Name, r.db.User)
		}
	}
	if len(byName["UPDATE"]) == 0 {
		t.Errorf("no statement span in the trace (spans: %v)", names(byName))
	}
	smtp := byName["smtp send"][0]
	if smtp.SpanKind != trace.SpanKindClient || attr(smtp, "server.address").AsString() != "127.0.0.1" ||
		attr(smtp, "smtp.reply.code").AsInt64() != 250 {
		t.Errorf("smtp span: got kind %v attrs %v", smtp.SpanKind, smtp.Attributes)
	}

	// The entry without context made a root span of its own.
	var roots int
	for _, s := range exp.GetSpans() {
		if s.Name == "process "+q.Destination() && attr(s, "messaging.message.id").AsString() == old {
			roots++
			if s.Parent.IsValid() || len(s.Links) != 0 || s.SpanContext.TraceID() == tid {
				t.Errorf("old entry: got parent %v links %v, want a new root trace", s.Parent, s.Links)
			}
		}
	}
	if roots != 1 {
		t.Errorf("process spans for the old entry: got %d, want 1", roots)
	}
	// No span for the blocking polls, nor for connection setup: the
	// first messages after the start are the ones whose sends open the
	// pools' connections (pgx's connect; redis.dial, HELLO and the CLIENT
	// SETINFO pipeline), inside their traces.
	for _, s := range exp.GetSpans() {
		if s.Name == "xreadgroup" || s.Name == "xpending" || s.Name == "xclaim" {
			t.Errorf("got a %q span; polls must not be traced", s.Name)
		}
		if connectionSetup(s.Name) {
			t.Errorf("got a %q span in trace %s; connection setup must not be traced", s.Name, s.SpanContext.TraceID())
		}
	}
}

// connectionSetup reports whether a span's name is that of a connection's
// setup: pgx's (otelpgx) connect, or go-redis's (redisotel) dial, HELLO and
// the pipeline after it (CLIENT SETINFO, SELECT, AUTH, CLIENT SETNAME).
func connectionSetup(name string) bool {
	switch name {
	case "connect", "redis.dial", "hello", "auth":
		return true
	}
	cmds, ok := strings.CutPrefix(name, "redis.pipeline ")
	if !ok {
		return false
	}
	for _, c := range strings.Fields(cmds) {
		switch c {
		case "client", "select", "auth", "hello":
		default:
			return false
		}
	}
	return true
}

// A retry and a dead letter show on the span as events and error status.
func TestFailuresAreSpanEvents(t *testing.T) {
	r := newRig(t)
	r.env["MAX_ATTEMPTS"] = "2"
	r.smtp.Reply(func(int) error { return testenv.Error(451, "4.3.0 later") })
	exp := newExporter()
	r.startRelay()
	stop := r.startWorker("w1", telemetry.WithSpanExporter(exp))
	id := r.insert("fails", "twice")
	r.waitStatus(id, message.StatusDead)
	stop()
	events := map[string]bool{}
	for _, s := range exp.GetSpans() {
		if attr(s, "messaging.message.id").AsString() != id {
			continue
		}
		if s.Status.Code.String() != "Error" {
			t.Errorf("span %s: status %v, want Error", s.Name, s.Status)
		}
		for _, e := range s.Events {
			events[e.Name] = true
		}
	}
	if !events["retry scheduled"] || !events["dead-lettered"] {
		t.Errorf("events: got %v, want retry scheduled and dead-lettered", events)
	}
}

func names(m map[string][]tracetest.SpanStub) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	return out
}

// keptSpans is an in-memory exporter whose spans survive the provider's
// shutdown (tracetest's resets on Shutdown, and run shuts down on return).
type keptSpans struct{ *tracetest.InMemoryExporter }

func (keptSpans) Shutdown(context.Context) error { return nil }

func newExporter() keptSpans { return keptSpans{tracetest.NewInMemoryExporter()} }
