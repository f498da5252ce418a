package e2e

import (
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
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// stack is one native carteiro stack.
type stack struct {
	t       *testing.T
	dir     string
	URL     string // nginx
	Mailpit string // Mailpit's HTTP API, when started
	// Jaeger (query API) and Prometheus, with observability on.
	Jaeger, Prometheus string
	db                 config.Postgres
	redis              *testenv.Redis
	env                []string
}

type stackOptions struct {
	// smtpAddr, when set, replaces Mailpit with another SMTP server.
	smtpAddr string
	// observability also starts Jaeger and Prometheus (make dev OBS=1).
	observability bool
	extraEnv      map[string]string
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func startStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	root := repoRoot(t)
	bin := os.Getenv("BIN_DIR")
	if bin == "" {
		bin = filepath.Join(root, "bin")
	}
	for _, b := range []string{"api", "worker", "mailpit"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			testenv.Missing(t, "%s (run make build tools): %v", filepath.Join(bin, b), err)
		}
	}
	if _, err := exec.LookPath("nginx"); err != nil {
		if _, err := os.Stat("/usr/sbin/nginx"); err != nil {
			testenv.Missing(t, "nginx: %v", err)
		}
	}
	s := &stack{t: t, dir: t.TempDir(), db: testenv.NewDatabase(t), redis: testenv.StartRedis(t)}
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }
	nginx, ui := addr(), addr()
	vars := map[string]string{
		"DEV_DIR": s.dir, "BIN_DIR": bin, "SKIP_DB_SETUP": "1", "RATE_LIMIT": "0", "OBS": "0",
		"NGINX_LISTEN": nginx, "NGINX_STATUS_ADDR": addr(), "API_HTTP_ADDR": addr(), "API_INTERNAL_ADDR": addr(),
		"WORKER_INTERNAL_ADDR": addr(), "MAILPIT_SMTP_ADDR": addr(), "MAILPIT_UI_ADDR": ui,
		"DB_HOST": s.db.Host, "DB_PORT": strconv.Itoa(s.db.Port), "DB_NAME": s.db.Name,
		"DB_USER": s.db.User, "DB_SSLMODE": "disable",
		"REDIS_ADDR":            s.redis.Addr,
		"OUTBOX_SWEEP_INTERVAL": "100ms", "RETRY_BASE_DELAY": "100ms", "RETRY_MAX_DELAY": "500ms",
		"MAIL_FROM": "carteiro@carteiro.test", "MAIL_TO": "contato@carteiro.test",
		"WORKER_SHUTDOWN_TIMEOUT": "5s", "STOP_TIMEOUT": "10",
	}
	if o.observability {
		if _, err := os.Stat(filepath.Join(bin, "jaeger")); err != nil {
			testenv.Missing(t, "%s (run make jaeger): %v", filepath.Join(bin, "jaeger"), err)
		}
		if _, err := exec.LookPath("prometheus"); err != nil {
			testenv.Missing(t, "prometheus: %v", err)
		}
		s.Jaeger, s.Prometheus = addr(), addr()
		vars["OBS"] = "1"
		vars["JAEGER_QUERY_ADDR"] = s.Jaeger
		vars["JAEGER_OTLP_GRPC_ADDR"] = addr()
		vars["JAEGER_OTLP_HTTP_ADDR"] = addr()
		vars["JAEGER_QUERY_GRPC_ADDR"] = "127.0.0.1:0"
		vars["PROMETHEUS_LISTEN"] = s.Prometheus
		vars["NGINX_EXPORTER_LISTEN"] = addr()
		vars["PROMETHEUS_SCRAPE_INTERVAL"] = "1s"
		s.Jaeger, s.Prometheus = "http://"+s.Jaeger, "http://"+s.Prometheus
	}
	if o.smtpAddr != "" {
		vars["SKIP_MAILPIT"] = "1"
		vars["MAILPIT_SMTP_ADDR"] = o.smtpAddr
	} else {
		s.Mailpit = "http://" + ui
	}
	for k, v := range o.extraEnv {
		vars[k] = v
	}
	// The stack's environment is the test's, less any telemetry settings
	// of the shell that runs the tests, plus the variables above.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OTEL_") {
			s.env = append(s.env, kv)
		}
	}
	for k, v := range vars {
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
	c := exec.Command("bash", filepath.Join(repoRoot(s.t), "scripts", "dev.sh"), cmd)
	c.Env = s.env
	out, err := c.CombinedOutput()
	return string(out), err
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

var client = &http.Client{Timeout: 20 * time.Second}

// request sends a request through nginx and returns the status, headers
// and body.
func (s *stack) request(method, path, contentType, body string, headers ...string) (*http.Response, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// submitJSON posts a message as the page's script does and returns its id.
func (s *stack) submitJSON(assunto, mensagem string) string {
	s.t.Helper()
	b, _ := json.Marshal(map[string]string{"assunto": assunto, "mensagem": mensagem})
	res, body := s.request("POST", "/api/messages", "application/json", string(b),
		"Accept", "application/json", "Origin", s.URL)
	if res.StatusCode != http.StatusAccepted {
		s.t.Fatalf("submit: got %d, want 202 (%s)", res.StatusCode, body)
	}
	var out struct{ ID string }
	json.Unmarshal([]byte(body), &out)
	return out.ID
}

type status struct {
	Status    string  `json:"status"`
	Attempts  int     `json:"attempts"`
	LastError *string `json:"last_error"`
}

// waitStatus polls the status URL through nginx until want.
func (s *stack) waitStatus(id, want string) status {
	s.t.Helper()
	var st status
	for range 300 {
		res, body := s.request("GET", "/api/messages/"+id, "", "")
		if res.StatusCode == 200 {
			json.Unmarshal([]byte(body), &st)
			if st.Status == want {
				return st
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("message %s: status %+v, want %s\n%s", id, st, want, s.logs())
	return st
}

// queryRow runs one query on the stack's database and scans its row.
func (s *stack) queryRow(sql string, args []any, dest ...any) {
	s.t.Helper()
	conn, err := pgx.Connect(context.Background(), s.db.URL())
	if err != nil {
		s.t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(context.Background(), sql, args...).Scan(dest...); err != nil {
		s.t.Fatalf("%s: %v", sql, err)
	}
}

func (s *stack) countRows() (n int) {
	s.queryRow("SELECT count(*) FROM emails", nil, &n)
	return n
}

func (s *stack) messageID(id string) (mid string) {
	s.queryRow("SELECT message_id FROM emails WHERE id = $1", []any{id}, &mid)
	return mid
}

// mailpitMessage is what Mailpit's API says of one message.
type mailpitMessage struct {
	ID        string
	MessageID string
	Subject   string
	Text      string
	From      struct{ Address string }
	To        []struct{ Address string }
}

// mailByMessageID finds the mail with the given Message-ID in Mailpit.
func (s *stack) mailByMessageID(mid string) (mailpitMessage, int) {
	s.t.Helper()
	res, err := client.Get(s.Mailpit + "/api/v1/messages?limit=1000")
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	var list struct{ Messages []mailpitMessage }
	if err := json.NewDecoder(res.Body).Decode(&list); err != nil {
		s.t.Fatal(err)
	}
	var found []mailpitMessage
	for _, m := range list.Messages {
		if m.MessageID == mid {
			found = append(found, m)
		}
	}
	if len(found) == 0 {
		return mailpitMessage{}, 0
	}
	res, err = client.Get(s.Mailpit + "/api/v1/message/" + found[0].ID)
	if err != nil {
		s.t.Fatal(err)
	}
	defer res.Body.Close()
	var full mailpitMessage
	if err := json.NewDecoder(res.Body).Decode(&full); err != nil {
		s.t.Fatal(err)
	}
	return full, len(found)
}
