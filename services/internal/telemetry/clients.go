package telemetry

import (
	"context"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/metric/noop"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// PgxOption traces every statement on a pool (otelpgx): pass it to the
// pool's configuration before the pool is made. Statements get spans only;
// otelpgx's per-operation histogram (db_client_operation_duration_seconds)
// is not recorded: no dashboard or alert reads it, and recording it cost
// 1.7 to 3.5 % of the api's CPU in the bench with observability off or on
// (about 1 µs per statement, bench/README.md). Pool statistics are
// RecordPoolStats'. Connecting makes no span (see statementTracer).
func (t *Telemetry) PgxOption() func(*pgxpool.Config) {
	return func(c *pgxpool.Config) {
		cc := c.ConnConfig
		c.ConnConfig.Tracer = statementTracer{otelpgx.NewTracer(
			otelpgx.WithTracerProvider(t.Traces),
			otelpgx.WithMeterProvider(noop.NewMeterProvider()),
			// The connection's attributes (those otelpgx sets), given once:
			// otelpgx would read them for every recorded span from a copy of
			// the connection's configuration, and at each acquire from three
			// copies of the pool's (pgx.Conn.Config, pgxpool.Pool.Config).
			otelpgx.WithDisableConnectionDetailsInAttributes(),
			otelpgx.WithTracerAttributes(
				semconv.ServerAddress(cc.Host),
				semconv.ServerPort(int(cc.Port)),
				semconv.UserName(cc.User),
				semconv.DBNamespace(cc.Database),
			),
		)}
	}
}

// statementTracer is otelpgx's tracer without its connect span. A pool
// opens a connection when a statement needs one, in that statement's
// context: the first statements after a start, or after an idle
// connection was closed, would carry a connect span into a request's or a
// delivery's trace. Connection setup is the pool's doing, not the
// request's, and its failures reach the trace anyway, as the error of the
// `pool.acquire` span (otelpgx's pgxpool.AcquireTracer, still in place):
// the statement whose connection failed never starts. otelpgx has no
// option for it (v0.13), so its ConnectTracer is shadowed here; every
// other hook is otelpgx's.
type statementTracer struct{ *otelpgx.Tracer }

// TraceConnectStart implements pgx.ConnectTracer: it records nothing.
func (statementTracer) TraceConnectStart(ctx context.Context, _ pgx.TraceConnectStartData) context.Context {
	return ctx
}

// TraceConnectEnd implements pgx.ConnectTracer: it records nothing.
func (statementTracer) TraceConnectEnd(context.Context, pgx.TraceConnectEndData) {}

// RecordPoolStats exports the pool's connection statistics.
func (t *Telemetry) RecordPoolStats(pool *pgxpool.Pool) error {
	return otelpgx.RecordStats(pool, otelpgx.WithStatsMeterProvider(t.Meters))
}

// InstrumentRedis traces rdb's commands, when spans are exported, and
// exports its pool statistics. Commands for which quiet returns true are
// not traced: blocking polls and periodic housekeeping would otherwise make
// a root span each time. Connection setup is not traced either: go-redis
// opens a connection when a command needs one and sets it up in that
// command's context (redis.dial, then HELLO and a pipeline of CLIENT
// SETINFO, SELECT, AUTH), which would put those spans into a request's or
// a delivery's trace. A span carries no caller (code.function,
// code.filepath, code.lineno): finding it walks the stack on every command,
// and the span's parent already says which code sent it.
func (t *Telemetry) InstrumentRedis(rdb *redis.Client, quiet func(name string) bool) error {
	if t.Exporting {
		filter := func(cmd redis.Cmder) bool {
			return redisotel.DefaultCommandFilter(cmd) || setupCommand(cmd.Name()) || quiet(cmd.Name())
		}
		if err := redisotel.InstrumentTracing(rdb,
			redisotel.WithTracerProvider(t.Traces),
			redisotel.WithDialFilter(true),
			redisotel.WithCommandFilter(filter),
			redisotel.WithCommandsFilter(setupPipeline),
			redisotel.WithDBStatement(false),
			redisotel.WithCallerEnabled(false),
		); err != nil {
			return err
		}
	}
	return redisotel.InstrumentMetrics(rdb, redisotel.WithMeterProvider(t.Meters))
}

// setupCommand reports whether a Redis command (by its name, lower case as
// go-redis gives it) is one go-redis sends only to set a new connection
// up: carteiro itself sends none of them.
func setupCommand(name string) bool {
	switch name {
	case "hello", "auth", "select", "client", "readonly":
		return true
	}
	return false
}

// setupPipeline reports whether a pipeline is go-redis's setup of a new
// connection: every command in it is a setup command.
func setupPipeline(cmds []redis.Cmder) bool {
	for _, c := range cmds {
		if !setupCommand(c.Name()) {
			return false
		}
	}
	return len(cmds) > 0
}
