package telemetry

import (
	"github.com/exaring/otelpgx"
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
// RecordPoolStats'.
func (t *Telemetry) PgxOption() func(*pgxpool.Config) {
	return func(c *pgxpool.Config) {
		cc := c.ConnConfig
		c.ConnConfig.Tracer = otelpgx.NewTracer(
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
		)
	}
}

// RecordPoolStats exports the pool's connection statistics.
func (t *Telemetry) RecordPoolStats(pool *pgxpool.Pool) error {
	return otelpgx.RecordStats(pool, otelpgx.WithStatsMeterProvider(t.Meters))
}

// InstrumentRedis traces rdb's commands, when spans are exported, and
// exports its pool statistics. Commands for which quiet returns true are
// not traced: blocking polls and periodic housekeeping would otherwise make
// a root span each time. A span carries no caller (code.function,
// code.filepath, code.lineno): finding it walks the stack on every command,
// and the span's parent already says which code sent it.
func (t *Telemetry) InstrumentRedis(rdb *redis.Client, quiet func(name string) bool) error {
	if t.Exporting {
		filter := func(cmd redis.Cmder) bool {
			return redisotel.DefaultCommandFilter(cmd) || quiet(cmd.Name())
		}
		if err := redisotel.InstrumentTracing(rdb,
			redisotel.WithTracerProvider(t.Traces),
			redisotel.WithCommandFilter(filter),
			redisotel.WithDBStatement(false),
			redisotel.WithCallerEnabled(false),
		); err != nil {
			return err
		}
	}
	return redisotel.InstrumentMetrics(rdb, redisotel.WithMeterProvider(t.Meters))
}
