package telemetry

import (
	"context"
	"maps"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// The pools open their connections when a statement or a command needs
// one, in that statement's context: the first request or delivery after
// a start would carry the connection's setup in its trace. It carries only
// its own statement and command: no pgx connect, no redis.dial, HELLO or
// setup pipeline (CLIENT SETINFO, SELECT).
func TestConnectionSetupLeavesNoSpans(t *testing.T) {
	ctx := context.Background()
	exp := tracetest.NewInMemoryExporter()
	tel, err := Setup(ctx, "carteiro-test", env(nil), WithSpanExporter(exp))
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)

	pc, err := pgxpool.ParseConfig(testenv.NewDatabase(t).URL())
	if err != nil {
		t.Fatal(err)
	}
	tel.PgxOption()(pc)
	pool, err := pgxpool.NewWithConfig(ctx, pc) // opens no connection yet
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	// DB 1: go-redis then adds a SELECT to its setup pipeline.
	rdb := redis.NewClient(&redis.Options{Addr: testenv.StartRedis(t).Addr, DB: 1})
	defer rdb.Close()
	if err := tel.InstrumentRedis(rdb, func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}

	rctx, span := tel.Tracer("test").Start(ctx, "request", trace.WithSpanKind(trace.SpanKindServer))
	if _, err := pool.Exec(rctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(rctx, "carteiro:test:key", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	span.End()

	got := map[string]int{}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID() != span.SpanContext().TraceID() {
			t.Errorf("span %q outside the request's trace", s.Name)
		}
		got[s.Name]++
	}
	want := map[string]int{"request": 1, "pool.acquire": 1, "SELECT": 1, "set": 1}
	if !maps.Equal(got, want) {
		t.Errorf("spans: got %v, want %v", got, want)
	}
}
