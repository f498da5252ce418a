package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/message"
)

// ErrNotFound is returned when no message has the given id.
var ErrNotFound = errors.New("message not found")

// Email is one row of the emails table.
type Email struct {
	ID            string
	Assunto       string
	Mensagem      string
	Status        message.Status
	Attempts      int
	LastError     string
	CreatedAt     time.Time
	NextAttemptAt *time.Time
	SentAt        *time.Time
	MessageID     string
	// Token is the fencing token of the row's latest claim: it grows by
	// one with every claim (see Claim) and never goes back.
	Token int64
	// Traceparent and Tracestate carry the W3C trace context of the request
	// that created the message, so its delivery joins the same trace.
	Traceparent string
	Tracestate  string
}

// Store is the Postgres-backed message store. It is safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	// queryTimeout bounds each call made on behalf of a request.
	queryTimeout time.Duration
	// statementTimeout is the server's bound on one statement (a COMMIT
	// included): statement_timeout on every connection.
	statementTimeout time.Duration
	// group, when set, batches Inserts (see EnableGroupCommit).
	group *groupCommit
}

// Open connects a pool to the database described by cfg. It does not wait
// for the database to be reachable; Ping does.
func Open(ctx context.Context, cfg config.Postgres, log *slog.Logger, opts ...Option) (*Store, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL())
	if err != nil {
		return nil, fmt.Errorf("postgres config: %w", err)
	}
	pc.ConnConfig.ConnectTimeout = cfg.ConnectTimeout
	// A statement that outlives the request's budget is cancelled by the
	// server too, not only abandoned by the client.
	statementTimeout := 4 * cfg.QueryTimeout
	pc.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(statementTimeout.Milliseconds())
	if cfg.MaxConns > 0 {
		pc.MaxConns = int32(cfg.MaxConns)
	}
	pc.MaxConnLifetime = 30 * time.Minute
	pc.HealthCheckPeriod = 15 * time.Second
	for _, o := range opts {
		o(pc)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("postgres pool: %w", err)
	}
	return &Store{pool: pool, log: log, queryTimeout: cfg.QueryTimeout, statementTimeout: statementTimeout}, nil
}

// Option adjusts the pool configuration before the pool is made (the
// telemetry package uses it to add tracing).
type Option func(*pgxpool.Config)

// GenericPlans makes the pool's connections plan each prepared statement
// once, for any arguments (plan_cache_mode = force_generic_plan; PostgreSQL
// 15 documentation, §20.7.4 and PREPARE's notes), rather than choosing at
// every execution. For the worker's statements: each takes its rows by
// primary key from arrays of ids, or through a partial index its text
// names, so the generic plan is the custom one. With the default (auto) a
// statement over an array of fewer than 10 ids, the estimate a generic
// plan makes for an array parameter, was planned again at every
// execution, because its custom plan's estimate looked cheaper: a drain's
// outcome write of about 6 rows spent more of the backend's CPU planning
// than executing (EXPLAIN (ANALYZE, SUMMARY): 0.45 ms planning, 0.30 ms
// execution). A generic plan is made again whenever emails' statistics
// change (ANALYZE, VACUUM), so one made while the table was small
// (sequential scans: right after an ANALYZE of the empty table, or up to
// a few thousand rows) is replaced as autovacuum follows its growth, as
// already happened to the claim (about 30 ids), which auto ran with
// generic plans; with statistics of 20,000 rows every statement reads by
// primary key (TestWorkerGenericPlanShapes). Where autovacuum is off, a
// small table's plan is kept until someone runs ANALYZE.
func GenericPlans() Option {
	return func(pc *pgxpool.Config) {
		pc.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
}

// Close closes every connection.
func (s *Store) Close() { s.pool.Close() }

// Pool exposes the pool for statistics.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers within the query timeout.
func (s *Store) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.queryTimeout)
	defer cancel()
	return s.pool.Ping(ctx)
}

// NewID returns a new message id: a UUIDv7, so ids sort by creation time and
// index inserts stay local.
func NewID() string { return uuid.Must(uuid.NewV7()).String() }

// Insert stores a new message as queued, in one transaction, and returns it.
// When Insert returns nil the message is committed: it will be delivered.
// Any other error but ErrOutcomeUnknown means it is not stored, even when
// ctx ended while the transaction was committing: Insert then waits for the
// transaction's real outcome (see inTx): at most a query timeout in the
// queue, one for the transaction (one more when its batch retries each row
// alone), then statement_timeout and one more query timeout to learn a
// COMMIT's fate: 8 query timeouts in all.
func (s *Store) Insert(ctx context.Context, in message.Input, traceparent, tracestate string) (Email, error) {
	ctx, cancel := context.WithTimeout(ctx, s.queryTimeout)
	defer cancel()
	e := newEmail(in, traceparent, tracestate)
	if s.group != nil {
		p := &pendingInsert{email: e}
		if err := s.insertGrouped(ctx, p); err != nil {
			return Email{}, err
		}
		return p.email, nil
	}
	err := s.inTx(ctx, e.ID, func(tx pgx.Tx) (err error) {
		e, err = insert(ctx, tx, e)
		return err
	})
	if err != nil {
		return Email{}, err
	}
	return e, nil
}

func newEmail(in message.Input, traceparent, tracestate string) Email {
	return Email{ID: NewID(), Assunto: in.Assunto, Mensagem: in.Mensagem, Status: message.StatusQueued,
		Traceparent: traceparent, Tracestate: tracestate}
}

// querier is a pool or a transaction.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func insert(ctx context.Context, q querier, e Email) (Email, error) {
	err := q.QueryRow(ctx, `
		INSERT INTO emails (id, assunto, mensagem, traceparent, tracestate)
		VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''))
		RETURNING created_at`,
		e.ID, e.Assunto, e.Mensagem, e.Traceparent, e.Tracestate).Scan(&e.CreatedAt)
	if err != nil {
		return Email{}, fmt.Errorf("insert message: %w", err)
	}
	return e, nil
}

const emailColumns = `id::text, assunto, mensagem, status, attempts, coalesce(last_error, ''),
	created_at, next_attempt_at, sent_at, coalesce(message_id, ''), fencing_token,
	coalesce(traceparent, ''), coalesce(tracestate, '')`

// emailDest is where emailColumns scan to.
func emailDest(e *Email) []any {
	return []any{&e.ID, &e.Assunto, &e.Mensagem, &e.Status, &e.Attempts, &e.LastError,
		&e.CreatedAt, &e.NextAttemptAt, &e.SentAt, &e.MessageID, &e.Token, &e.Traceparent, &e.Tracestate}
}

func scanEmail(row pgx.Row) (Email, error) {
	var e Email
	err := row.Scan(emailDest(&e)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return Email{}, ErrNotFound
	}
	return e, err
}

// Get returns the message with the given id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (Email, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Email{}, ErrNotFound
	}
	ctx, cancel := context.WithTimeout(ctx, s.queryTimeout)
	defer cancel()
	return scanEmail(s.pool.QueryRow(ctx, `SELECT `+emailColumns+` FROM emails WHERE id = $1`, id))
}

// Unavailable reports whether err means the database could not be reached
// or did not answer in time, as opposed to a fault in the request itself.
// Callers answer such errors with 503 and a Retry-After: nothing was stored.
// ErrOutcomeUnknown is never one of them.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, ErrOutcomeUnknown) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || pgconn.Timeout(err) ||
		// the server went away mid-conversation
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		// Class 08 connection exceptions, 57P0x shutdown/cannot connect,
		// 53xxx insufficient resources, 57014 statement timeout.
		c := pe.Code
		return c[:2] == "08" || c[:2] == "53" || c == "57014" || c[:4] == "57P0"
	}
	return errors.Is(err, pgx.ErrTxClosed) || pgconn.SafeToRetry(err)
}
