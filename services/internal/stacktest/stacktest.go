// Package stacktest starts carteiro's native stack for end-to-end tests
// with package devstack, the launcher `make dev` runs: real nginx, api,
// worker and Mailpit processes (each under the devstack binary's
// supervisor, $BIN_DIR/devstack) on free ports, against a fresh database
// (or a private Postgres server) and a private Redis (package testenv). It
// can run several api and worker processes, replace Mailpit with another
// SMTP server, and read the pids, exit statuses and logs the supervisors
// record. services/e2e, services/browser and services/chaos use it; it is
// for tests only.
package stacktest

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/internal/devstack"
	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// Stack is one native carteiro stack.
type Stack struct {
	T       *testing.T
	Dir     string // DEV_DIR: <name>.log, <name>.pid, <name>.exit, nginx config
	Bin     string // BIN_DIR: the api, worker, mailpit and devstack binaries
	URL     string // nginx, e.g. http://127.0.0.1:40123
	Mailpit string // Mailpit's HTTP API, when started
	// Jaeger (query API), Prometheus and Alertmanager, with observability on.
	Jaeger, Prometheus, Alertmanager string
	DB                               config.Postgres
	// Postgres is the stack's own Postgres server, with
	// Options.PrivatePostgres (DB is then its database); nil otherwise.
	Postgres *testenv.Postgres
	Redis    *testenv.Redis
	// Env is the environment the stack was configured from
	// (devstack.Load): the test's, less OTEL_*, plus the stack's settings.
	Env []string
	// APIInternal and WorkerInternal are each api's and each worker's
	// internal listener (/metrics, /readyz), in instance order.
	APIInternal, WorkerInternal []string
	// Devstack is the launcher: its Config, Components and methods.
	Devstack *devstack.Stack
}

// Options change the stack.
type Options struct {
	// SMTPAddr, when set, replaces Mailpit with another SMTP server.
	SMTPAddr string
	// Observability also starts Jaeger, Prometheus, Alertmanager and the
	// nginx, Postgres and Redis exporters (make dev OBS=1).
	Observability bool
	// APIs and Workers are how many api and worker processes run
	// (API_INSTANCES, WORKER_INSTANCES); 0 means 1.
	APIs, Workers int
	// PrivatePostgres runs the stack's database on its own Postgres server
	// (testenv.StartPostgres, in Stack.Postgres), for a test that stops it,
	// instead of a fresh database on the shared one.
	PrivatePostgres bool
	// ExtraEnv is applied last, over the defaults: any devstack knob
	// (README "Configuration") or setting of the api and worker.
	ExtraEnv map[string]string
}

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

// Start starts a stack for t and stops it (Down) when t ends, before its
// private servers are stopped. The binaries come from $BIN_DIR, else bin/
// (make build tools: api, worker, devstack, and mailpit unless
// Options.SMTPAddr is set); a missing one, or a missing nginx, is reported
// with testenv.Missing.
func Start(t *testing.T, o Options) *Stack {
	t.Helper()
	root := RepoRoot()
	bin := os.Getenv("BIN_DIR")
	if bin == "" {
		bin = filepath.Join(root, "bin")
	}
	binaries := []string{"api", "worker", "devstack"}
	if o.SMTPAddr == "" {
		binaries = append(binaries, "mailpit")
	}
	for _, b := range binaries {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			testenv.Missing(t, "%s (run make build tools): %v", filepath.Join(bin, b), err)
		}
	}
	if _, err := exec.LookPath("nginx"); err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			testenv.Missing(t, "nginx: %v", err)
		}
	}
	s := &Stack{T: t, Dir: t.TempDir(), Bin: bin}
	if o.PrivatePostgres {
		s.Postgres = testenv.StartPostgres(t)
		s.DB = s.Postgres.Config
	} else {
		s.DB = testenv.NewDatabase(t)
	}
	s.Redis = testenv.StartRedis(t)
	// Every address of the stack is distinct, and each stays reserved
	// until just before the process that listens there starts.
	ports := &devstack.Ports{}
	t.Cleanup(ports.Close)
	addr := func() string {
		a, err := ports.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	addrs := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = addr()
		}
		return out
	}
	apis, workers := max(o.APIs, 1), max(o.Workers, 1)
	s.APIInternal, s.WorkerInternal = addrs(apis), addrs(workers)
	nginx, ui := addr(), addr()
	vars := map[string]string{
		"DEV_DIR": s.Dir, "BIN_DIR": bin, "SKIP_DB_SETUP": "1", "RATE_LIMIT": "0", "OBS": "0",
		"NGINX_LISTEN": nginx, "NGINX_STATUS_ADDR": addr(),
		"API_INSTANCES": strconv.Itoa(apis), "WORKER_INSTANCES": strconv.Itoa(workers),
		"API_HTTP_ADDR":        strings.Join(addrs(apis), ","),
		"API_INTERNAL_ADDR":    strings.Join(s.APIInternal, ","),
		"WORKER_INTERNAL_ADDR": strings.Join(s.WorkerInternal, ","),
		"MAILPIT_SMTP_ADDR":    addr(), "MAILPIT_UI_ADDR": ui,
		"DB_HOST": s.DB.Host, "DB_PORT": strconv.Itoa(s.DB.Port), "DB_NAME": s.DB.Name,
		"DB_USER": s.DB.User, "DB_SSLMODE": "disable",
		"REDIS_ADDR":            s.Redis.Addr,
		"OUTBOX_SWEEP_INTERVAL": "100ms", "RETRY_BASE_DELAY": "100ms", "RETRY_MAX_DELAY": "500ms",
		"MAIL_FROM": "carteiro@carteiro.test", "MAIL_TO": "contato@carteiro.test",
		"WORKER_SHUTDOWN_TIMEOUT": "5s", "STOP_TIMEOUT": "10",
	}
	if o.Observability {
		for _, b := range []string{"jaeger", "otelcol"} {
			if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
				testenv.Missing(t, "%s (run make %s): %v", filepath.Join(bin, b), b, err)
			}
		}
		for _, p := range []string{"prometheus", "prometheus-alertmanager", "prometheus-nginx-exporter",
			"prometheus-postgres-exporter", "prometheus-redis-exporter"} {
			if _, err := exec.LookPath(p); err != nil {
				testenv.Missing(t, "%s (Debian package of that name): %v", p, err)
			}
		}
		s.Jaeger, s.Prometheus, s.Alertmanager = addr(), addr(), addr()
		vars["OBS"] = "1"
		vars["JAEGER_QUERY_ADDR"] = s.Jaeger
		vars["JAEGER_OTLP_GRPC_ADDR"] = addr()
		vars["JAEGER_OTLP_HTTP_ADDR"] = addr()
		vars["JAEGER_QUERY_GRPC_ADDR"] = "127.0.0.1:0"
		vars["OTELCOL_OTLP_GRPC_ADDR"] = addr()
		vars["OTELCOL_OTLP_HTTP_ADDR"] = addr()
		vars["OTELCOL_METRICS_ADDR"] = addr()
		vars["OTELCOL_HEALTH_ADDR"] = addr()
		vars["OTELCOL_TELEMETRY_ADDR"] = addr()
		vars["PROMETHEUS_LISTEN"] = s.Prometheus
		vars["NGINX_EXPORTER_LISTEN"] = addr()
		vars["POSTGRES_EXPORTER_LISTEN"] = addr()
		vars["REDIS_EXPORTER_LISTEN"] = addr()
		vars["ALERTMANAGER_LISTEN"] = s.Alertmanager
		vars["PROMETHEUS_SCRAPE_INTERVAL"] = "1s"
		s.Jaeger, s.Prometheus, s.Alertmanager = "http://"+s.Jaeger, "http://"+s.Prometheus, "http://"+s.Alertmanager
	}
	if o.SMTPAddr != "" {
		vars["SKIP_MAILPIT"] = "1"
		vars["MAILPIT_SMTP_ADDR"] = o.SMTPAddr
	} else {
		s.Mailpit = "http://" + ui
	}
	for k, v := range o.ExtraEnv {
		vars[k] = v
	}
	// The stack's environment is the test's, less any telemetry settings
	// of the shell that runs the tests, plus the variables above (which
	// come first: devstack reads the first value of a name).
	for k, v := range vars {
		s.Env = append(s.Env, k+"="+v)
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := vars[k]; !ours && !strings.HasPrefix(k, "OTEL_") {
			s.Env = append(s.Env, kv)
		}
	}
	s.URL = "http://" + nginx
	cfg, err := devstack.Load(root, s.Env)
	if err != nil {
		t.Fatalf("stack configuration: %v", err)
	}
	cfg.Supervisor = filepath.Join(bin, "devstack")
	s.Devstack = devstack.New(cfg, t.Output())
	s.Devstack.Ports = ports
	t.Cleanup(func() {
		if err := s.Devstack.Down(context.Background()); err != nil {
			t.Errorf("stack down: %v", err)
		}
	})
	s.Up()
	return s
}

// Up starts whatever is not running (a component a test killed or
// stopped) and waits until it is ready; it fails the test if it cannot.
func (s *Stack) Up() {
	s.T.Helper()
	if err := s.Devstack.Up(context.Background()); err != nil {
		s.T.Fatalf("stack up: %v\n%s", err, s.Logs())
	}
}

// Down stops every component, as make dev-down does; Up starts them again.
func (s *Stack) Down() {
	s.T.Helper()
	if err := s.Devstack.Down(context.Background()); err != nil {
		s.T.Fatalf("stack down: %v", err)
	}
}

// Stop stops the named components (api, worker-2, nginx, ...) together:
// SIGTERM, then SIGKILL after STOP_TIMEOUT. It returns once each has ended
// and its exit status is recorded (ExitStatus); Up starts them again.
func (s *Stack) Stop(names ...string) {
	s.T.Helper()
	if err := s.Devstack.Stop(context.Background(), names...); err != nil {
		s.T.Fatalf("stop %v: %v", names, err)
	}
}

// Logs returns the tail of every component's log, for failure messages.
func (s *Stack) Logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(s.Dir, "*.log"))
	for _, f := range files {
		data, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimSpace(string(data)), "\n")
		if len(lines) > 30 {
			lines = lines[len(lines)-30:]
		}
		fmt.Fprintf(&b, "== %s\n%s\n", filepath.Base(f), strings.Join(lines, "\n"))
	}
	return b.String()
}

// LogText is a component's whole log (api, worker, worker-2, mailpit…).
func (s *Stack) LogText(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, name+".log"))
	return string(b)
}

// ErrorLines returns the ERROR lines of a component's JSON log.
func (s *Stack) ErrorLines(name string) []string {
	var out []string
	for _, line := range strings.Split(s.LogText(name), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			out = append(out, line)
		}
	}
	return out
}

// PID is the pid recorded for a component (api, worker, worker-2…): the
// component's own process (it may have ended since; see Alive).
func (s *Stack) PID(name string) int {
	s.T.Helper()
	b, err := os.ReadFile(filepath.Join(s.Dir, name+".pid"))
	if err != nil {
		s.T.Fatalf("%s: no pid file: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		s.T.Fatalf("%s: pid file: %v", name, err)
	}
	return pid
}

// Signal sends sig to a running component and returns its pid; the test
// fails if the component does not run.
func (s *Stack) Signal(name string, sig syscall.Signal) int {
	s.T.Helper()
	p, err := s.Devstack.Signal(name, sig)
	if err != nil {
		s.T.Fatalf("kill -%d %s: %v", sig, name, err)
	}
	return p.PID
}

// ExitStatus waits up to timeout for a component to end and returns its
// exit status as its supervisor recorded it in <name>.exit (128+N after
// signal N).
func (s *Stack) ExitStatus(name string, timeout time.Duration) int {
	s.T.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if rc, ok := s.Devstack.ExitStatus(name); ok {
			return rc
		}
		if time.Now().After(deadline) {
			s.T.Fatalf("%s did not exit within %s (no %s.exit)\n%s", name, timeout, name, s.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WorkerCommand runs bin/worker with args (a subcommand such as
// reprocess) in the stack's environment, as an operator would.
func (s *Stack) WorkerCommand(args ...string) (string, error) {
	c := exec.Command(filepath.Join(s.Bin, "worker"), args...)
	c.Env = s.Env
	out, err := c.CombinedOutput()
	return string(out), err
}

// Alive reports whether pid runs (and is not a zombie).
func Alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: Z is a zombie.
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// RSS is a process's resident set size in KiB (VmRSS), 0 when unknown.
func RSS(pid int) int {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// Client is the HTTP client of the helpers.
var Client = &http.Client{Timeout: 20 * time.Second}

// Request sends a request through nginx and returns the response (its
// body read and closed) and the body. headers are name, value pairs.
func (s *Stack) Request(method, path, contentType, body string, headers ...string) (*http.Response, string) {
	s.T.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		s.T.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := Client.Do(req)
	if err != nil {
		s.T.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// SubmitJSON posts a message as the page's script does and returns its id.
func (s *Stack) SubmitJSON(assunto, mensagem string) string {
	s.T.Helper()
	b, _ := json.Marshal(map[string]string{"assunto": assunto, "mensagem": mensagem})
	res, body := s.Request("POST", "/api/messages", "application/json", string(b),
		"Accept", "application/json", "Origin", s.URL)
	if res.StatusCode != http.StatusAccepted {
		s.T.Fatalf("submit: got %d, want 202 (%s)", res.StatusCode, body)
	}
	var out struct{ ID string }
	json.Unmarshal([]byte(body), &out)
	return out.ID
}

// Status is what GET /api/messages/{id} says.
type Status struct {
	Status   string   `json:"status"`
	Attempts int      `json:"attempts"`
	Failure  *Failure `json:"failure"`
}

// Failure is the public account of a failed delivery: its kind
// ("temporary" or "permanent"), a pt-BR label and, for a temporary one,
// the next attempt. The relay's reply is never part of it.
type Failure struct {
	Kind          string     `json:"kind"`
	Label         string     `json:"label"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
}

// WaitStatus polls the status URL through nginx until want (30 s).
func (s *Stack) WaitStatus(id, want string) Status {
	s.T.Helper()
	var st Status
	for range 300 {
		res, body := s.Request("GET", "/api/messages/"+id, "", "")
		if res.StatusCode == 200 {
			json.Unmarshal([]byte(body), &st)
			if st.Status == want {
				return st
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.T.Fatalf("message %s: status %+v, want %s\n%s", id, st, want, s.Logs())
	return st
}

// QueryRow runs one query on the stack's database and scans its row.
func (s *Stack) QueryRow(sql string, args []any, dest ...any) {
	s.T.Helper()
	conn, err := pgx.Connect(context.Background(), s.DB.URL())
	if err != nil {
		s.T.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(dest...); err != nil {
		s.T.Fatalf("%s: %v", sql, err)
	}
}

// CountRows counts the stored messages.
func (s *Stack) CountRows() (n int) {
	s.QueryRow("SELECT count(*) FROM emails", nil, &n)
	return n
}

// MessageID is the Message-ID header the worker gives message id.
func (s *Stack) MessageID(id string) (mid string) {
	s.QueryRow("SELECT message_id FROM emails WHERE id = $1", []any{id}, &mid)
	return mid
}

// MailpitMessage is what Mailpit's API says of one message.
type MailpitMessage struct {
	ID        string
	MessageID string
	Subject   string
	Text      string
	From      struct{ Address string }
	To        []struct{ Address string }
}

// Mails lists every message in Mailpit (summaries: no Text).
func (s *Stack) Mails() []MailpitMessage {
	s.T.Helper()
	res, err := Client.Get(s.Mailpit + "/api/v1/messages?limit=1000")
	if err != nil {
		s.T.Fatal(err)
	}
	defer res.Body.Close()
	var list struct{ Messages []MailpitMessage }
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		s.T.Fatal(err)
	}
	return list.Messages
}

// MailByMessageID finds the mail with the given Message-ID in Mailpit and
// returns it in full, and how many mails have that Message-ID.
func (s *Stack) MailByMessageID(mid string) (MailpitMessage, int) {
	s.T.Helper()
	var found []MailpitMessage
	for _, m := range s.Mails() {
		if m.MessageID == mid {
			found = append(found, m)
		}
	}
	if len(found) == 0 {
		return MailpitMessage{}, 0
	}
	return s.Mail(found[0].ID), len(found)
}

// Mail returns one mail of Mailpit in full, by Mailpit's id (a summary's ID).
func (s *Stack) Mail(id string) MailpitMessage {
	s.T.Helper()
	res, err := Client.Get(s.Mailpit + "/api/v1/message/" + id)
	if err != nil {
		s.T.Fatal(err)
	}
	defer res.Body.Close()
	var full MailpitMessage
	if err := json.NewDecoder(res.Body).Decode(&full); err != nil {
		s.T.Fatal(err)
	}
	return full
}
