package e2e

import (
	"net/http"
	"testing"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/stacktest"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// stack is one native carteiro stack (package stacktest), with the short
// names these tests use. URL, Mailpit, Jaeger and Prometheus come from the
// embedded stacktest.Stack.
type stack struct {
	*stacktest.Stack
	t     *testing.T
	dir   string
	db    config.Postgres
	redis *testenv.Redis
	env   []string
}

type stackOptions struct {
	// smtpAddr, when set, replaces Mailpit with another SMTP server.
	smtpAddr string
	// observability also starts Jaeger and Prometheus (make dev OBS=1).
	observability bool
	// privatePostgres runs the database on the stack's own Postgres
	// server (Stack.Postgres), for a test that stops it.
	privatePostgres bool
	extraEnv        map[string]string
}

func repoRoot(t *testing.T) string { return stacktest.RepoRoot() }

func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	s := stacktest.Start(t, stacktest.Options{
		SMTPAddr: o.smtpAddr, Observability: o.observability, PrivatePostgres: o.privatePostgres, ExtraEnv: o.extraEnv,
	})
	return &stack{Stack: s, t: t, dir: s.Dir, db: s.DB, redis: s.Redis, env: s.Env}
}

// logs returns the tail of every component's log, for failure messages.
func (s *stack) logs() string { return s.Logs() }

var client = stacktest.Client

// request sends a request through nginx and returns the status, headers
// and body.
func (s *stack) request(method, path, contentType, body string, headers ...string) (*http.Response, string) {
	s.t.Helper()
	return s.Request(method, path, contentType, body, headers...)
}

// submitJSON posts a message as the page's script does and returns its id.
func (s *stack) submitJSON(assunto, mensagem string) string {
	s.t.Helper()
	return s.SubmitJSON(assunto, mensagem)
}

type status = stacktest.Status

// waitStatus polls the status URL through nginx until want.
func (s *stack) waitStatus(id, want string) status {
	s.t.Helper()
	return s.WaitStatus(id, want)
}

// queryRow runs one query on the stack's database and scans its row.
func (s *stack) queryRow(sql string, args []any, dest ...any) {
	s.t.Helper()
	s.QueryRow(sql, args, dest...)
}

func (s *stack) countRows() int { s.t.Helper(); return s.CountRows() }

func (s *stack) messageID(id string) string { s.t.Helper(); return s.MessageID(id) }

// mailpitMessage is what Mailpit's API says of one message.
type mailpitMessage = stacktest.MailpitMessage

// mailByMessageID finds the mail with the given Message-ID in Mailpit.
func (s *stack) mailByMessageID(mid string) (mailpitMessage, int) {
	s.t.Helper()
	return s.MailByMessageID(mid)
}
