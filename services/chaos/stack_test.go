package chaos

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// mailDomain is MAIL_FROM's domain: every Message-ID is <row id@mailDomain>.
const mailDomain = "carteiro.test"

// stack is one native carteiro stack started by scripts/dev.sh in its own
// DEV_DIR, on free ports, with a fresh database and a private Redis.
type stack struct {
	t   *testing.T
	dir string // DEV_DIR: <name>.pid, <name>.log, <name>.exit
	bin string
	URL string // nginx

	db    config.Postgres
	pg    *testenv.Postgres // the private Postgres, when asked for
	redis *testenv.Redis
	inbox inbox
	env   []string
	vars  map[string]string

	apis, workers int
	// apiInternal and workerInternal are the instances' internal listeners.
	apiInternal, workerInternal []string
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

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func binDir() string {
	if b := os.Getenv("BIN_DIR"); b != "" {
		return b
	}
	return filepath.Join(repoRoot(), "bin")
}

func requireBinaries(t *testing.T, mailpit bool) {
	t.Helper()
	names := []string{"api", "worker"}
	if mailpit {
		names = append(names, "mailpit")
	}
	for _, b := range names {
		if _, err := os.Stat(filepath.Join(binDir(), b)); err != nil {
			testenv.Missing(t, "%s (run make build tools): %v", filepath.Join(binDir(), b), err)
		}
	}
	if _, err := exec.LookPath("nginx"); err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			testenv.Missing(t, "nginx: %v", err)
		}
	}
}

func freeAddr(t *testing.T) string {
	return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
}

func freeAddrs(t *testing.T, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = freeAddr(t)
	}
	return out
}

// startStack starts a stack and stops it (dev.sh down) when t ends, before
// its private servers are stopped.
func startStack(t *testing.T, o options) *stack {
	t.Helper()
	requireBinaries(t, o.smtp == nil)
	s := &stack{t: t, dir: t.TempDir(), bin: binDir(), apis: max(o.apis, 1), workers: max(o.workers, 1)}
	if o.privatePostgres {
		s.pg = testenv.StartPostgres(t)
		s.db = s.pg.Config
	} else {
		s.db = testenv.NewDatabase(t)
	}
	s.redis = testenv.StartRedis(t)
	s.apiInternal = freeAddrs(t, s.apis)
	s.workerInternal = freeAddrs(t, s.workers)
	nginx := freeAddr(t)
	s.vars = map[string]string{
		"DEV_DIR": s.dir, "BIN_DIR": s.bin, "SKIP_DB_SETUP": "1", "RATE_LIMIT": "0", "OBS": "0",
		"NGINX_LISTEN": nginx, "NGINX_STATUS_ADDR": freeAddr(t),
		"API_INSTANCES": strconv.Itoa(s.apis), "WORKER_INSTANCES": strconv.Itoa(s.workers),
		"API_HTTP_ADDR":        strings.Join(freeAddrs(t, s.apis), ","),
		"API_INTERNAL_ADDR":    strings.Join(s.apiInternal, ","),
		"WORKER_INTERNAL_ADDR": strings.Join(s.workerInternal, ","),
		"DB_HOST":              s.db.Host, "DB_PORT": strconv.Itoa(s.db.Port), "DB_NAME": s.db.Name,
		"DB_USER": s.db.User, "DB_SSLMODE": "disable",
		"REDIS_ADDR":            s.redis.Addr,
		"OUTBOX_SWEEP_INTERVAL": "100ms", "RETRY_BASE_DELAY": "100ms", "RETRY_MAX_DELAY": "1s",
		"MAIL_FROM": "carteiro@" + mailDomain, "MAIL_TO": "contato@" + mailDomain,
		"WORKER_SHUTDOWN_TIMEOUT": "10s", "STOP_TIMEOUT": "15", "READY_TIMEOUT": "30",
		// A send that outlives the lease is taken over and sent again, so
		// where nothing is killed the lease is long enough for a busy
		// machine (go test runs packages in parallel on 2 cores).
		// Scenarios that kill or starve the worker set a short one, so
		// recovery fits in a test. SMTP_TIMEOUT must be shorter.
		"WORKER_LEASE": "30s", "SMTP_TIMEOUT": "10s",
		"LOG_LEVEL": "info",
	}
	if o.smtp != nil {
		s.vars["SKIP_MAILPIT"] = "1"
		s.vars["MAILPIT_SMTP_ADDR"] = o.smtp.Addr
		s.inbox = smtpInbox{o.smtp}
	} else {
		ui := freeAddr(t)
		s.vars["MAILPIT_SMTP_ADDR"] = freeAddr(t)
		s.vars["MAILPIT_UI_ADDR"] = ui
		// Mailpit keeps 500 messages unless told otherwise.
		s.vars["MAILPIT_ARGS"] = "--max 0"
		s.inbox = mailpitInbox{url: "http://" + ui}
	}
	for k, v := range o.env {
		s.vars[k] = v
	}
	// The stack's environment is the test's, less telemetry settings and
	// the dev.sh knobs of the shell that runs the tests, plus the above.
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		s.env = append(s.env, kv)
	}
	for k, v := range s.vars {
		s.env = append(s.env, k+"="+v)
	}
	s.URL = "http://" + nginx
	t.Cleanup(func() {
		if out, err := s.script("down"); err != nil {
			t.Errorf("dev.sh down: %v\n%s", err, out)
		}
	})
	if out, err := s.script("up"); err != nil {
		t.Fatalf("dev.sh up: %v\n%s\n%s", err, out, s.logs())
	}
	return s
}

func (s *stack) script(cmd string) (string, error) {
	c := exec.Command("bash", filepath.Join(repoRoot(), "scripts", "dev.sh"), cmd)
	c.Env = s.env
	out, err := c.CombinedOutput()
	return string(out), err
}

// up runs dev.sh up again: it starts whatever is not running.
func (s *stack) up() {
	s.t.Helper()
	if out, err := s.script("up"); err != nil {
		s.t.Fatalf("dev.sh up: %v\n%s\n%s", err, out, s.logs())
	}
}

// logs returns the tail of every component's log, for failure messages.
func (s *stack) logs() string {
	var b strings.Builder
	files, _ := filepath.Glob(filepath.Join(s.dir, "*.log"))
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

// pid is the pid dev.sh recorded for a component (api, worker, worker-2…).
func (s *stack) pid(name string) int {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(s.dir, name+".pid"))
	if err != nil {
		s.t.Fatalf("%s: no pid file: %v", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		s.t.Fatalf("%s: pid file: %v", name, err)
	}
	return pid
}

// signal sends sig to a component and returns its pid.
func (s *stack) signal(name string, sig syscall.Signal) int {
	s.t.Helper()
	pid := s.pid(name)
	if err := syscall.Kill(pid, sig); err != nil {
		s.t.Fatalf("kill -%d %s (pid %d): %v", sig, name, pid, err)
	}
	return pid
}

// exitStatus waits for a component to end and returns its exit status as
// dev.sh's wrapper recorded it (128+N after signal N).
func (s *stack) exitStatus(name string, timeout time.Duration) int {
	s.t.Helper()
	f := filepath.Join(s.dir, name+".exit")
	deadline := time.Now().Add(timeout)
	for {
		if b, err := os.ReadFile(f); err == nil {
			rc, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				s.t.Fatalf("%s: %v", f, err)
			}
			return rc
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s did not exit within %s (no %s)\n%s", name, timeout, f, s.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logText is a component's whole log.
func (s *stack) logText(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.dir, name+".log"))
	return string(b)
}

// errorLines returns the ERROR lines of a component's log.
func (s *stack) errorLines(name string) []string {
	var out []string
	for _, line := range strings.Split(s.logText(name), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			out = append(out, line)
		}
	}
	return out
}

// alive reports whether pid runs (and is not a zombie).
func alive(pid int) bool {
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

// rss is a process's resident set size in KiB (VmRSS), 0 when unknown.
func rss(pid int) int {
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

// workerCommand runs bin/worker with args (a subcommand such as
// reprocess) in the stack's environment, as an operator would.
func (s *stack) workerCommand(args ...string) (string, error) {
	c := exec.Command(filepath.Join(s.bin, "worker"), args...)
	c.Env = s.env
	out, err := c.CombinedOutput()
	return string(out), err
}

// conn opens a connection to the stack's database.
func (s *stack) conn(ctx context.Context) (*pgx.Conn, error) {
	return pgx.Connect(ctx, s.db.URL())
}

// rows is every row's id, status, attempts and last_error.
type row struct {
	status    string
	attempts  int
	lastError string
	messageID string
}

func (s *stack) rows() (map[string]row, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := s.conn(ctx)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	rs, err := c.Query(ctx, `SELECT id::text, status, attempts, coalesce(last_error, ''), coalesce(message_id, '') FROM emails`)
	if err != nil {
		return nil, err
	}
	out := map[string]row{}
	for rs.Next() {
		var id string
		var r row
		if err := rs.Scan(&id, &r.status, &r.attempts, &r.lastError, &r.messageID); err != nil {
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

// metric reads one unlabelled (or fully labelled, as written) sample from
// a process's /metrics; -1 when absent.
func metric(addr, name string) (float64, error) {
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1, err
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return f, err
		}
	}
	return -1, errors.Join(sc.Err(), fmt.Errorf("%s: no sample %s", addr, name))
}
