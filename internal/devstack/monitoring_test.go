package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

func TestLoadMonitoring(t *testing.T) {
	c := load(t)
	for _, g := range []struct{ name, got, want string }{
		{"ALERTMANAGER_LISTEN", c.Alertmanager.Listen, "127.0.0.1:9093"},
		{"ALERTMANAGER_SMTP_ADDR", c.Alertmanager.SMTPAddr, "127.0.0.1:1025"},
		{"ALERTS_TO", c.Alertmanager.To, "alertas@carteiro.localhost"},
		{"POSTGRES_EXPORTER_LISTEN", c.PostgresExporter.Listen, "127.0.0.1:9187"},
		{"POSTGRES_EXPORTER_USER", c.PostgresExporter.User, "carteiro_monitor"},
		{"POSTGRES_EXPORTER_PASSWORD", c.PostgresExporter.Password, DevOnlyExporterPassword},
		{"POSTGRES_EXPORTER_SSLMODE", c.PostgresExporter.SSLMode, "disable"},
		{"REDIS_EXPORTER_LISTEN", c.RedisExporter.Listen, "127.0.0.1:9121"},
		{"REDIS_EXPORTER_USER", c.RedisExporter.User, "carteiro-exporter"},
		{"REDIS_STREAM", c.RedisExporter.Stream, "carteiro:emails"},
		{"PROMETHEUS_RULES_WINDOW_SCALE", strconv.Itoa(c.Prometheus.RulesWindowScale), "1"},
		{"RULES_DIR", c.RulesDir(), filepath.Join(c.Root, "observability", "prometheus", "rules")},
	} {
		if g.got != g.want {
			t.Errorf("%s: got %q, want %q", g.name, g.got, g.want)
		}
	}

	c = load(t, "MAILPIT_SMTP_ADDR=127.0.0.1:2025", "DB_SSLMODE=prefer", "REDIS_DB=3", "REDIS_STREAM=x:y",
		"PROMETHEUS_RULES_WINDOW_SCALE=60")
	if c.Alertmanager.SMTPAddr != "127.0.0.1:2025" || c.PostgresExporter.SSLMode != "disable" ||
		c.RedisExporter.DB != 3 || c.Prometheus.RulesWindowScale != 60 || c.RulesDir() != filepath.Join(c.Dir, "prometheus-rules") {
		t.Errorf("knobs: got %+v %+v %+v, rules %s", c.Alertmanager, c.PostgresExporter, c.RedisExporter, c.RulesDir())
	}
	var redisExporter Component
	for _, x := range load(t, "OBS=1", "REDIS_DB=3", "REDIS_STREAM=x:y", "DB_SSLMODE=verify-full").Components() {
		switch x.Name {
		case "redis-exporter":
			redisExporter = x
		case "postgres-exporter":
			if !slices.Contains(x.Env, "DATA_SOURCE_URI=127.0.0.1:5432/carteiro?sslmode=verify-full") || !slices.Contains(x.Env, "DATA_SOURCE_NAME=") {
				t.Errorf("postgres-exporter env: got %v, want the stack's database with DB_SSLMODE", x.Env)
			}
		}
	}
	if !slices.Contains(redisExporter.Args, "--check-single-streams=db3=x:y") {
		t.Errorf("redis-exporter args: got %v, want the stream of REDIS_DB", redisExporter.Args)
	}

	for _, kv := range []string{"ALERTMANAGER_LISTEN=nowhere", "POSTGRES_EXPORTER_LISTEN=127.0.0.1:0",
		"REDIS_EXPORTER_LISTEN=x:y", "ALERTMANAGER_SMTP_ADDR=mail", "REDIS_DB=one", "SKIP_ALERTMANAGER=perhaps",
		"PROMETHEUS_RULES_WINDOW_SCALE=0", "PROMETHEUS_RULES_WINDOW_SCALE=1.5"} {
		name, _, _ := strings.Cut(kv, "=")
		if _, err := Load(repoRoot(t), []string{kv}); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v, want an error naming %s", kv, err, name)
		}
	}
}

func TestMonitoringComponents(t *testing.T) {
	byName := map[string]Component{}
	for _, x := range load(t, "OBS=1").Components() {
		byName[x.Name] = x
	}
	if g := byName["prometheus"].DependsOn; !slices.Equal(g, []string{"alertmanager"}) {
		t.Errorf("prometheus depends on %v, want alertmanager (it stops first)", g)
	}
	if g := byName["alertmanager"].DependsOn; !slices.Equal(g, []string{"mailpit"}) {
		t.Errorf("alertmanager depends on %v, want mailpit (it mails through it)", g)
	}
	for _, name := range []string{"alertmanager", "postgres-exporter", "redis-exporter"} {
		if x := byName[name]; x.ReadyURL == "" || len(x.Listen) != 1 {
			t.Errorf("%s: got ready %q listen %v, want both", name, x.ReadyURL, x.Listen)
		}
	}
	// Each is skipped when told to, or when its program is missing.
	for what, change := range map[string]func(*Config){
		"SKIP_ALERTMANAGER":      func(c *Config) { c.Alertmanager.Skip = true },
		"SKIP_POSTGRES_EXPORTER": func(c *Config) { c.PostgresExporter.Skip = true },
		"SKIP_REDIS_EXPORTER":    func(c *Config) { c.RedisExporter.Skip = true },
		"no alertmanager":        func(c *Config) { c.Alertmanager.Bin = "" },
		"no postgres_exporter":   func(c *Config) { c.PostgresExporter.Bin = "" },
		"no redis_exporter":      func(c *Config) { c.RedisExporter.Bin = "" },
	} {
		c := load(t, "OBS=1", "NGINX_EXPORTER_BIN=/bin/true")
		c.Alertmanager.Bin, c.PostgresExporter.Bin, c.RedisExporter.Bin = "/bin/true", "/bin/true", "/bin/true"
		change(&c)
		var skipped []string
		for _, x := range c.Components() {
			if x.Skip != "" {
				skipped = append(skipped, x.Name)
			}
		}
		if len(skipped) != 1 {
			t.Errorf("%s: got %v skipped, want one component", what, skipped)
		}
	}
}

func TestRenderAlertmanager(t *testing.T) {
	c := load(t, "ALERTMANAGER_SMTP_ADDR=127.0.0.1:2525", "ALERTS_TO=ops@example.test")
	out := filepath.Join(t.TempDir(), "alertmanager.yml")
	if err := c.RenderAlertmanager(out); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	for _, want := range []string{"smtp_smarthost: 127.0.0.1:2525", "to: ops@example.test",
		filepath.Join(c.Root, "observability", "alertmanager", "templates") + "/*.tmpl"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("alertmanager.yml: got no %q", want)
		}
	}
	amtool, err := exec.LookPath("amtool")
	if err != nil {
		missing(t, "amtool (Debian package prometheus-alertmanager): %v", err)
	}
	if out, err := exec.Command(amtool, "check-config", out).CombinedOutput(); err != nil {
		t.Errorf("amtool check-config: %v\n%s", err, out)
	}
	tmpl := filepath.Join(t.TempDir(), "t.yml")
	os.WriteFile(tmpl, []byte("x: ${NOT_GIVEN}\n"), 0o644)
	c.Alertmanager.Template = tmpl
	if err := c.RenderAlertmanager(out); err == nil || !strings.Contains(err.Error(), "NOT_GIVEN") {
		t.Errorf("unknown placeholder: got %v, want an error naming it", err)
	}
}

func TestScaleRuleWindows(t *testing.T) {
	for _, c := range []struct {
		in, want string
		scale    int
	}{
		{`rate(x[5m])`, `rate(x[5s])`, 60},
		{`sum(rate(x{a="[5m]"}[1h])) / sum(rate(x[1h]))`, `sum(rate(x{a="[5m]"}[1m])) / sum(rate(x[1m]))`, 60},
		{`deriv(sum(a)[10m:]) * (sum(a) > bool 100)`, `deriv(sum(a)[10s:]) * (sum(a) > bool 100)`, 60},
		{`max_over_time(a[1h30m:1m] offset 3d)`, `max_over_time(a[1m30s:1s] offset 1h12m)`, 60},
		{`rate(x[28d])`, `rate(x[11h12m])`, 60},
		{`rate(x[5m]) offset -2h`, `rate(x[2m30s]) offset -1h`, 2},
		{`a[1s]`, `a[1ms]`, 5000},
		{`label_replace(setoff_total, "d", "offset 5m", "", "")`, `label_replace(setoff_total, "d", "offset 5m", "", "")`, 60},
	} {
		if got := scaleExprDurations(c.in, c.scale); got != c.want {
			t.Errorf("scale %d of %q: got %q, want %q", c.scale, c.in, got, c.want)
		}
	}
	in := "# head\ngroups:\n  - name: g\n    rules:\n      - alert: A\n        # why\n        expr: rate(x[1h]) > 1\n        for: 15m\n        keep_firing_for: 1h\n        annotations:\n          description: over the last [1h]\n"
	out, err := ScaleRuleWindows([]byte(in), 60)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"expr: rate(x[1m]) > 1", "for: 15s", "keep_firing_for: 1m", "description: over the last [1h]", "# why"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("scaled file: got\n%s\nwant %q in it", out, want)
		}
	}
	if _, err := ScaleRuleWindows([]byte("groups:\n  - rules:\n      - alert: A\n        for: soon\n"), 2); err == nil {
		t.Error("for: soon: got no error")
	}
}

// TestRenderRules scales the repository's rules as a test stack does and
// promtool accepts them.
func TestRenderRules(t *testing.T) {
	c := load(t, "PROMETHEUS_RULES_WINDOW_SCALE=60")
	if err := c.RenderRules(); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(c.RulesDir(), "*.yml"))
	repo, _ := filepath.Glob(filepath.Join(c.repoRulesDir(), "*.yml"))
	if len(files) == 0 || len(files) != len(repo) {
		t.Fatalf("scaled rule files: got %v, want one per file of %v", files, repo)
	}
	b, _ := os.ReadFile(filepath.Join(c.RulesDir(), "slo.yml"))
	for _, want := range []string{"slo:burn_rate:1h{slo=\"delivery-success\"} > 14.4", "carteiro_messages_total{outcome=\"dead\"}[1m]", "for: 2s"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("scaled slo.yml: got no %q", want)
		}
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		missing(t, "promtool (Debian package prometheus): %v", err)
	}
	if out, err := exec.Command(promtool, append([]string{"check", "rules"}, files...)...).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

// logOf is a component's log.
func logOf(s *Stack, name string) string {
	b, _ := os.ReadFile(s.file(name, extLog))
	return string(b)
}

// scrape reads a /metrics page.
func scrape(t *testing.T, url string) string {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return string(b)
}

// waitFor polls cond for up to 30 s; after that it fails the test with
// what, and what each of show says.
func waitFor(t *testing.T, what string, cond func() bool, show ...func() string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, f := range show {
				b.WriteString(f())
			}
			t.Fatalf("gave up waiting for %s\n%s", what, b.String())
		}
	}
}

func program(t *testing.T, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		missing(t, "%s (Debian package %s): %v", name, pkg, err)
	}
}

// TestPostgresExporter creates the monitoring role on the machine's
// Postgres (twice: the second finds it), checks it is a pg_monitor member
// with no other role and no table privilege, and runs Debian's
// postgres_exporter as the stack does against a fresh database with an
// emails table: it answers with carteiro's queries.
func TestPostgresExporter(t *testing.T) {
	program(t, "prometheus-postgres-exporter", "prometheus-postgres-exporter")
	admin, err := pgx.Connect(context.Background(), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	if err != nil {
		missing(t, "postgres on 127.0.0.1:5432: %v", err)
	}
	defer admin.Close(context.Background())
	name := "devstack_monitor_test_" + strconv.Itoa(os.Getpid())
	if _, err := admin.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+name)
	})
	listen := reserve(t)
	s := testStack(t, "OBS=1", "DB_NAME="+name, "DB_SSLMODE=disable", "POSTGRES_EXPORTER_USER="+name,
		"POSTGRES_EXPORTER_LISTEN="+listen)
	for range 2 {
		if err := s.Config.SetupMonitorRole(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var roles []string
	var canSelect bool
	if err := admin.QueryRow(context.Background(), `SELECT array(SELECT b.rolname FROM pg_auth_members m
		JOIN pg_roles b ON b.oid = m.roleid JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1),
		has_table_privilege($1, 'pg_catalog.pg_authid', 'SELECT')`, name).Scan(&roles, &canSelect); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(roles, []string{"pg_monitor"}) || canSelect {
		t.Errorf("role %s: member of %v, may read pg_authid: %v; want pg_monitor only", name, roles, canSelect)
	}
	db, err := pgx.Connect(context.Background(), "postgres://postgres@127.0.0.1:5432/"+name+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	if _, err := db.Exec(context.Background(), "CREATE TABLE emails (id int); INSERT INTO emails SELECT generate_series(1, 100); DELETE FROM emails WHERE id <= 40"); err != nil {
		t.Fatal(err)
	}
	var pg Component
	for _, x := range s.Config.Components() {
		if x.Name == "postgres-exporter" {
			pg = x
		}
	}
	s.Components = []Component{pg}
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	var m string
	waitFor(t, "postgres_exporter's carteiro queries", func() bool {
		m = scrape(t, "http://"+listen+"/metrics")
		return strings.Contains(m, "\npg_up 1") && strings.Contains(m, `pg_carteiro_emails_total_bytes{datname="`+name+`"`) &&
			strings.Contains(m, "pg_carteiro_wal_size_bytes") && strings.Contains(m, `pg_stat_database_xact_commit{datid=`)
	}, func() string { return m + "\n" + logOf(s, "postgres-exporter") })
}

// startRedis runs a private redis-server with a password on a free port,
// as compose's queue (requirepass, noeviction).
func startRedis(t *testing.T, password string) string {
	t.Helper()
	program(t, "redis-server", "redis-server")
	addr := reserve(t)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port, "--save", "", "--appendonly", "no",
		"--dir", t.TempDir(), "--requirepass", password, "--maxmemory", "64mb", "--maxmemory-policy", "noeviction")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	r := redis.NewClient(&redis.Options{Addr: addr, Password: password})
	defer r.Close()
	waitFor(t, "redis-server", func() bool { return r.Ping(context.Background()).Err() == nil })
	return addr
}

// TestRedisExporter creates the exporter's ACL user on a private Redis and
// runs Debian's redis_exporter as the stack does: it exports the stream
// and its group, and Redis's ACL log shows no command refused (the rules
// allow everything it runs); the same user may not write, read another
// key or read the configuration (requirepass).
func TestRedisExporter(t *testing.T) {
	program(t, "prometheus-redis-exporter", "prometheus-redis-exporter")
	addr := startRedis(t, "admin-secret")
	listen := reserve(t)
	s := testStack(t, "OBS=1", "REDIS_ADDR="+addr, "REDIS_PASSWORD=admin-secret", "REDIS_EXPORTER_LISTEN="+listen,
		"REDIS_EXPORTER_PASSWORD=exporter-secret")
	admin := redis.NewClient(&redis.Options{Addr: addr, Password: "admin-secret"})
	defer admin.Close()
	ctx := context.Background()
	if err := admin.XGroupCreateMkStream(ctx, "carteiro:emails", "carteiro-workers", "0").Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		admin.XAdd(ctx, &redis.XAddArgs{Stream: "carteiro:emails", Values: []string{"id", strconv.Itoa(i)}})
	}
	admin.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "carteiro-workers", Consumer: "w", Streams: []string{"carteiro:emails", ">"}, Count: 1})
	admin.Set(ctx, "other", "x", 0)
	var rx Component
	for _, x := range s.Config.Components() {
		if x.Name == "redis-exporter" {
			rx = x
		}
	}
	s.Components = []Component{rx}
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	var m string
	waitFor(t, "redis_exporter's stream metrics", func() bool {
		m = scrape(t, "http://"+listen+"/metrics")
		return strings.Contains(m, "\nredis_up 1") && strings.Contains(m, "redis_memory_max_bytes 6.7108864e+07") &&
			strings.Contains(m, `redis_stream_length{db="db0",stream="carteiro:emails"} 3`) &&
			strings.Contains(m, `redis_stream_group_messages_pending{db="db0",group="carteiro-workers",stream="carteiro:emails"} 1`) &&
			strings.Contains(m, `maxmemory_policy="noeviction"`)
	}, func() string { return m + "\n" + logOf(s, "redis-exporter") })
	scrape(t, "http://"+listen+"/metrics") // once more, every command again
	if log, err := admin.Do(ctx, "ACL", "LOG").Slice(); err != nil || len(log) != 0 {
		t.Errorf("ACL LOG: got %v (%v), want no refused command", log, err)
	}

	as := redis.NewClient(&redis.Options{Addr: addr, Username: "carteiro-exporter", Password: "exporter-secret"})
	defer as.Close()
	if err := as.XInfoStream(ctx, "carteiro:emails").Err(); err != nil {
		t.Errorf("XINFO STREAM as the exporter: %v", err)
	}
	for what, err := range map[string]error{
		"XADD":                        as.XAdd(ctx, &redis.XAddArgs{Stream: "carteiro:emails", Values: []string{"id", "x"}}).Err(),
		"GET other":                   as.Get(ctx, "other").Err(),
		"CONFIG GET":                  as.ConfigGet(ctx, "requirepass").Err(),
		"XINFO STREAM of another key": as.XInfoStream(ctx, "other").Err(),
		"FLUSHALL":                    as.FlushAll(ctx).Err(),
	} {
		if err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("%s as the exporter: got %v, want NOPERM", what, err)
		}
	}
}

// smtpSink is an SMTP server that keeps every message, for Alertmanager.
type smtpSink struct {
	mu   sync.Mutex
	msgs []string
}

func (s *smtpSink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s}, nil }

type sinkSession struct{ s *smtpSink }

func (*sinkSession) Reset()                               {}
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	ss.s.mu.Lock()
	defer ss.s.mu.Unlock()
	ss.s.msgs = append(ss.s.msgs, string(b))
	return err
}

func (s *smtpSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.msgs)
}

// TestAlertmanager runs Debian's Alertmanager as the stack does, posts a
// critical and a warning alert to it and finds both mails, the first a
// page and the second a ticket, each with its summary and runbook.
func TestAlertmanager(t *testing.T) {
	program(t, "prometheus-alertmanager", "prometheus-alertmanager")
	sink := &smtpSink{}
	srv := smtp.NewServer(sink)
	srv.Domain, srv.AllowInsecureAuth = "localhost", true
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	listen := reserve(t)
	s := testStack(t, "OBS=1", "ALERTMANAGER_LISTEN="+listen, "ALERTMANAGER_SMTP_ADDR="+ln.Addr().String())
	var am Component
	for _, x := range s.Config.Components() {
		if x.Name == "alertmanager" {
			am = x
		}
	}
	s.Components = []Component{am}
	if err := s.Up(context.Background()); err != nil {
		t.Fatal(err)
	}
	post := func(name, severity string) {
		body, _ := json.Marshal([]map[string]any{{
			"labels":      map[string]string{"alertname": name, "severity": severity},
			"annotations": map[string]string{"summary": name + " summary", "description": "d", "runbook_url": "https://runbooks.test/" + name + ".md"},
		}})
		res, err := http.Post("http://"+listen+"/api/v2/alerts", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("post alert: %s", res.Status)
		}
	}
	post("TestPage", "critical")
	post("TestTicket", "warning")
	find := func(name string) (string, error) {
		for _, m := range sink.messages() {
			if strings.Contains(m, "Subject: ") && strings.Contains(m, name+" summary") {
				return m, nil
			}
		}
		return "", errors.New("not yet")
	}
	// group_wait: 10 s for pages, 30 s for tickets.
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		_, e1 := find("TestPage")
		_, e2 := find("TestTicket")
		if e1 == nil && e2 == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert mails: got %d messages, want a page and a ticket:\n%s", len(sink.messages()), strings.Join(sink.messages(), "\n----\n"))
		}
	}
	for name, prefix := range map[string]string{"TestPage": "[PAGE] TestPage firing (1): TestPage summary", "TestTicket": "[TICKET] TestTicket firing (1): TestTicket summary"} {
		m, _ := find(name)
		for _, want := range []string{"Subject: " + prefix, "To: alertas@carteiro.localhost", "Runbook: https://runbooks.test/" + name + ".md"} {
			if !strings.Contains(m, want) {
				t.Errorf("%s mail: got\n%s\nwant %q in it", name, m, want)
			}
		}
	}
}

// readSecret reads the password file through secretfile.Read (whose test
// holds the trimming and the empty cases) and names the variable and the
// file when it holds no password.
func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		content, want string
		wantErr       bool
	}{
		{"pw\r\n", "pw", false},
		{"\r\n\r\n", "", true},
	} {
		path := filepath.Join(dir, strconv.Quote(c.content))
		if err := os.WriteFile(path, []byte(c.content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := readSecret("ignored", path, "REDIS_EXPORTER_PASSWORD_FILE")
		if got != c.want || (err != nil) != c.wantErr ||
			(c.wantErr && !strings.Contains(err.Error(), "REDIS_EXPORTER_PASSWORD_FILE: "+path+" is empty")) {
			t.Errorf("file %q: got %q, %v; want %q, error %v (naming the variable and the file)", c.content, got, err, c.want, c.wantErr)
		}
	}
	if got, err := readSecret("value", "", "X_FILE"); got != "value" || err != nil {
		t.Errorf("no file: got %q, %v; want the value", got, err)
	}
}
