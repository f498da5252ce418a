package chaos

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/stacktest"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// mailDomain is MAIL_FROM's domain: every Message-ID is <row id@mailDomain>.
const mailDomain = "carteiro.test"

// stack is one native carteiro stack (package stacktest) started by
// package devstack in its own DEV_DIR, on free ports, with a fresh database
// (or a private Postgres) and a private Redis, plus the inbox the scenario
// counts.
type stack struct {
	*stacktest.Stack
	t     *testing.T
	inbox inbox
}

type options struct {
	// smtp, when set, replaces Mailpit as the worker's relay.
	smtp *testenv.SMTPServer
	// privatePostgres runs the stack's database on its own server, for a
	// test that stops it.
	privatePostgres bool
	// apis and workers are how many processes of each (default 1).
	apis, workers int
	env           map[string]string
}

// startStack starts a stack and stops it (Down) when t ends, before
// its private servers are stopped.
func startStack(t *testing.T, o options) *stack {
	t.Helper()
	env := map[string]string{
		"RETRY_MAX_DELAY":         "1s",
		"WORKER_SHUTDOWN_TIMEOUT": "10s", "STOP_TIMEOUT": "15", "READY_TIMEOUT": "30",
		// The lease is renewed while a send runs, so it only says how
		// soon a dead worker's messages are taken over: long enough that
		// a worker starved on a busy machine (go test runs packages in
		// parallel on 2 cores) keeps its claims, short where a scenario
		// kills or starves the worker, so recovery fits in a test.
		"WORKER_LEASE": "30s", "SMTP_TIMEOUT": "10s",
		"LOG_LEVEL": "info",
		// Mailpit keeps 500 messages unless told otherwise.
		"MAILPIT_ARGS": "--max 0",
	}
	for k, v := range o.env {
		env[k] = v
	}
	so := stacktest.Options{APIs: o.apis, Workers: o.workers, PrivatePostgres: o.privatePostgres, ExtraEnv: env}
	if o.smtp != nil {
		so.SMTPAddr = o.smtp.Addr
	}
	s := &stack{Stack: stacktest.Start(t, so), t: t}
	if o.smtp != nil {
		s.inbox = smtpInbox{o.smtp}
	} else {
		s.inbox = mailpitInbox{url: s.Mailpit}
	}
	return s
}

// conn opens a connection to the stack's database.
func (s *stack) conn(ctx context.Context) (*pgx.Conn, error) {
	return pgx.Connect(ctx, s.DB.URL())
}

// row is one stored message's status, attempts, last_error and Message-ID.
type row struct {
	subject   string
	status    string
	attempts  int
	lastError string
	messageID string
}

// rows is every row by id.
func (s *stack) rows() (map[string]row, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	rs, err := c.Query(ctx, `SELECT id::text, assunto, status, attempts, coalesce(last_error, ''), coalesce(message_id, '') FROM emails`)
	if err != nil {
		return nil, err
	}
	out := map[string]row{}
	for rs.Next() {
		var id string
		var r row
		if err := rs.Scan(&id, &r.subject, &r.status, &r.attempts, &r.lastError, &r.messageID); err != nil {
			return nil, err
		}
		out[id] = r
	}
	return out, rs.Err()
}

// scalar runs a one-value query on the stack's database.
func (s *stack) scalar(sql string, dest any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return c.QueryRow(ctx, sql).Scan(dest)
}
