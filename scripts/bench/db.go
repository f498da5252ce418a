package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// connString for the admin role (DB_ADMIN_USER: a superuser, as
// the stack's database setup uses) to database name.
func connString(s settings, name string) string {
	return fmt.Sprintf("host=%s port=%s user=%s dbname=%s sslmode=disable connect_timeout=5 application_name=carteiro-bench",
		s.DBHost, s.DBPort, s.DBAdmin, name)
}

// dropDatabase removes the bench database (the stack creates it again,
// and the api migrates it).
func dropDatabase(ctx context.Context, s settings) error {
	c, err := pgx.Connect(ctx, connString(s, "postgres"))
	if err != nil {
		return fmt.Errorf("postgres at %s:%s as %s: %w", s.DBHost, s.DBPort, s.DBAdmin, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{s.DBName}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("drop database %s: %w", s.DBName, err)
	}
	return nil
}

// lockDatabase takes a session advisory lock named after the bench
// database, held on the returned connection until it is closed, so that
// two runs never use (and drop) the same database at once.
func lockDatabase(ctx context.Context, s settings) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, connString(s, "postgres"))
	if err != nil {
		return nil, fmt.Errorf("postgres at %s:%s as %s: %w", s.DBHost, s.DBPort, s.DBAdmin, err)
	}
	var ok bool
	if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtext('carteiro-bench:' || $1::text))", s.DBName).Scan(&ok); err != nil {
		c.Close(ctx)
		return nil, fmt.Errorf("lock: %w", err)
	}
	if !ok {
		c.Close(ctx)
		return nil, fmt.Errorf("another make bench is using database %s on this Postgres; wait for it, or set BENCH_DB to another name", s.DBName)
	}
	return c, nil
}

// benchDB is the bench's own connection pool to the stack's database.
type benchDB struct {
	pool *pgxpool.Pool
	// openRows and deadRows select the open and the dead rows through
	// their partial indexes, as the schema defines them (see pipeline).
	openRows, deadRows string
}

func openBenchDB(ctx context.Context, s settings) (*benchDB, error) {
	cfg, err := pgxpool.ParseConfig(connString(s, s.DBName))
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 2
	p, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := p.Ping(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return &benchDB{pool: p}, nil
}

func (d *benchDB) Close() { d.pool.Close() }

// serverInfo describes the Postgres settings the ceiling depends on.
func (d *benchDB) serverInfo(ctx context.Context) map[string]string {
	m := map[string]string{}
	for _, name := range []string{"server_version", "synchronous_commit", "fsync", "wal_sync_method",
		"commit_delay", "shared_buffers", "max_connections"} {
		var v string
		if err := d.pool.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err == nil {
			m[name] = v
		}
	}
	return m
}

// pipeline counts the rows still on their way. Each count uses one of the
// table's partial indexes, so polling it stays cheap.
type pipeline struct {
	Open, Unpublished, Dead int64
}

func (d *benchDB) pipeline(ctx context.Context) (pipeline, error) {
	var p pipeline
	if d.openRows == "" {
		// Since migration 00005 the partial indexes select by stage,
		// not status; a build from before it (a comparison run) still
		// has the older indexes. A count no index serves reads the
		// whole table on every poll, competing with what is measured.
		var stage bool
		if err := d.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_attribute
			WHERE attrelid = 'emails'::regclass AND attname = 'stage' AND NOT attisdropped)`).Scan(&stage); err != nil {
			return p, err
		}
		d.openRows, d.deadRows = "status IN ('queued', 'sending', 'failed')", "status = 'dead'"
		if stage {
			d.openRows, d.deadRows = "stage = 'open'", "stage = 'dead'"
		}
	}
	err := d.pool.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM emails WHERE `+d.openRows+`),
		       (SELECT count(*) FROM emails WHERE published_at IS NULL),
		       (SELECT count(*) FROM emails WHERE `+d.deadRows+`)`).Scan(&p.Open, &p.Unpublished, &p.Dead)
	return p, err
}

// settle waits until every accepted message is sent (nothing queued,
// sending, failed or unpublished; no dead one), then checkpoints and
// vacuums, so each measured run starts from the same quiet state.
func (d *benchDB) settle(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		p, err := d.pipeline(ctx)
		if err != nil {
			return 0, fmt.Errorf("settle: %w", err)
		}
		if p.Dead > 0 {
			return 0, fmt.Errorf("settle: %d dead message(s): lost", p.Dead)
		}
		if p.Open == 0 && p.Unpublished == 0 {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("settle: still %d open and %d unpublished message(s) after %s", p.Open, p.Unpublished, timeout)
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return 0, err
		}
	}
	waited := time.Since(start)
	if _, err := d.pool.Exec(ctx, "CHECKPOINT"); err != nil {
		return 0, fmt.Errorf("checkpoint: %w", err)
	}
	if _, err := d.pool.Exec(ctx, "VACUUM (ANALYZE) emails"); err != nil {
		return 0, fmt.Errorf("vacuum: %w", err)
	}
	return waited, nil
}

// queueDirect inserts n queued messages in one statement, each with a W3C
// traceparent as the api would store it in this observability mode:
// sampled (flags 01) when the api exports spans, unsampled (00) when it
// has no exporter and so starts no recorded trace. With a sampled parent
// the worker records its spans and exemplars, which is what observability
// on costs; it must not be charged to the off mode.
func (d *benchDB) queueDirect(ctx context.Context, prefix string, n int, sampled bool) error {
	flags := "00"
	if sampled {
		flags = "01"
	}
	_, err := d.pool.Exec(ctx, `
		INSERT INTO emails (id, assunto, mensagem, traceparent)
		SELECT gen_random_uuid(), $1::text || i, $2::text,
		       '00-' || md5(random()::text) || '-' || left(md5(random()::text), 16) || '-' || $4::text
		FROM generate_series(1, $3::int) AS i`, prefix, benchText, n, flags)
	if err != nil {
		return fmt.Errorf("queue %d messages: %w", n, err)
	}
	return nil
}

// waitPublished waits until the outbox relay has put every row on the
// stream.
func (d *benchDB) waitPublished(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		p, err := d.pipeline(ctx)
		if err != nil {
			return 0, err
		}
		if p.Unpublished == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("outbox: %d row(s) still unpublished after %s", p.Unpublished, timeout)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// delivered summarises the rows whose subject starts with prefix.
type delivered struct {
	Rows, Sent, Dead int64
	FirstCreated     time.Time
	LastSent         time.Time
	// Latencies (seconds) from created_at to sent_at over the sent rows.
	Min, Mean, P50, P90, P99, Max float64
}

func (d *benchDB) delivered(ctx context.Context, prefix string) (delivered, error) {
	var r delivered
	var first, last *time.Time
	var mn, mean, p50, p90, p99, mx *float64
	err := d.pool.QueryRow(ctx, `
		SELECT count(*),
		       count(*) FILTER (WHERE status = 'sent'),
		       count(*) FILTER (WHERE status = 'dead'),
		       min(created_at), max(sent_at),
		       min(l)::float8, avg(l)::float8,
		       percentile_cont(0.5) WITHIN GROUP (ORDER BY l),
		       percentile_cont(0.9) WITHIN GROUP (ORDER BY l),
		       percentile_cont(0.99) WITHIN GROUP (ORDER BY l),
		       max(l)::float8
		FROM emails, LATERAL (SELECT extract(epoch FROM sent_at - created_at)::float8 AS l) AS lat
		WHERE starts_with(assunto, $1)`, prefix).
		Scan(&r.Rows, &r.Sent, &r.Dead, &first, &last, &mn, &mean, &p50, &p90, &p99, &mx)
	if err != nil {
		return r, fmt.Errorf("delivered %q: %w", prefix, err)
	}
	if first != nil {
		r.FirstCreated = *first
	}
	if last != nil {
		r.LastSent = *last
	}
	for _, x := range []struct {
		dst *float64
		src *float64
	}{{&r.Min, mn}, {&r.Mean, mean}, {&r.P50, p50}, {&r.P90, p90}, {&r.P99, p99}, {&r.Max, mx}} {
		if x.src != nil {
			*x.dst = *x.src
		}
	}
	return r, nil
}

// waitSent polls until no row is open any more (the stack was settled
// before, so every open row is the run's) and returns the run's rows.
func (d *benchDB) waitSent(ctx context.Context, prefix string, want int64, timeout time.Duration) (delivered, error) {
	deadline := time.Now().Add(timeout)
	for {
		p, err := d.pipeline(ctx)
		if err != nil {
			return delivered{}, err
		}
		if p.Open == 0 && p.Unpublished == 0 || p.Dead > 0 {
			break
		}
		if time.Now().After(deadline) {
			r, _ := d.delivered(ctx, prefix)
			return r, fmt.Errorf("%d of %d message(s) sent after %s (%d still open)", r.Sent, want, timeout, p.Open)
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return delivered{}, err
		}
	}
	r, err := d.delivered(ctx, prefix)
	if err != nil {
		return r, err
	}
	switch {
	case r.Dead > 0:
		return r, fmt.Errorf("%d message(s) dead: lost", r.Dead)
	case r.Rows < want:
		return r, fmt.Errorf("%d row(s) for %d accepted message(s): %d lost", r.Rows, want, want-r.Rows)
	case r.Sent < r.Rows:
		return r, errors.New("rows left unsent")
	}
	return r, nil
}

// countEmails is the number of rows in emails (every state).
func (d *benchDB) countEmails(ctx context.Context) (int64, error) {
	var n int64
	err := d.pool.QueryRow(ctx, "SELECT count(*) FROM emails").Scan(&n)
	return n, err
}
