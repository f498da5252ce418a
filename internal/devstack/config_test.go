package devstack

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := FindRoot(".")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func load(t *testing.T, env ...string) Config {
	t.Helper()
	c, err := Load(repoRoot(t), append(env, "DEV_DIR="+t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Each listen address maps to the variable that gives it, derived
// instances' included, for the busy-port error.
func TestListenVarsNameEachAddress(t *testing.T) {
	c := load(t, "API_INSTANCES=2", "OBS=1")
	for addr, want := range map[string]string{
		"127.0.0.1:8080": "NGINX_LISTEN", "127.0.0.1:8082": "NGINX_STATUS_ADDR",
		"127.0.0.1:8081": "API_HTTP_ADDR", "127.0.0.1:8181": "API_HTTP_ADDR", "127.0.0.1:9201": "API_INTERNAL_ADDR",
		"127.0.0.1:9102": "WORKER_INTERNAL_ADDR", "127.0.0.1:1025": "MAILPIT_SMTP_ADDR",
		"127.0.0.1:4318": "OTELCOL_OTLP_HTTP_ADDR", "127.0.0.1:16686": "JAEGER_QUERY_ADDR",
		"127.0.0.1:9090": "PROMETHEUS_LISTEN",
	} {
		if got := c.ListenVars[addr]; got != want {
			t.Errorf("%s: got %q, want %q", addr, got, want)
		}
	}
}

func TestLoadDefaults(t *testing.T) {
	c := load(t)
	root := repoRoot(t)
	for _, g := range []struct{ name, got, want string }{
		{"NGINX_LISTEN", c.NginxListen, "127.0.0.1:8080"},
		{"API_HTTP_ADDR", strings.Join(c.APIHTTPAddrs, ","), "127.0.0.1:8081"},
		{"API_INTERNAL_ADDR", strings.Join(c.APIInternalAddrs, ","), "127.0.0.1:9101"},
		{"WORKER_INTERNAL_ADDR", strings.Join(c.WorkerInternalAddrs, ","), "127.0.0.1:9102"},
		{"MAILPIT_SMTP_ADDR", c.MailpitSMTPAddr, "127.0.0.1:1025"},
		{"MAILPIT_UI_ADDR", c.MailpitUIAddr, "127.0.0.1:8025"},
		{"NGINX_STATUS_ADDR", c.NginxStatusAddr, "127.0.0.1:8082"},
		{"SMTP_HOST:SMTP_PORT", c.SMTPHost + ":" + c.SMTPPort, "127.0.0.1:1025"},
		{"API_RATE_LIMIT", c.Nginx.RateLimit, "on"},
		{"BIN_DIR", c.BinDir, filepath.Join(root, "bin")},
		{"supervisor", c.Supervisor, filepath.Join(root, "bin", "devstack")},
		{"JAEGER_QUERY_ADDR", c.Jaeger.QueryAddr, "127.0.0.1:16686"},
		{"JAEGER_UI_URL", c.Jaeger.UIURL, "http://127.0.0.1:16686"},
		{"PROMETHEUS_LISTEN", c.Prometheus.Listen, "127.0.0.1:9090"},
		{"NGINX_EXPORTER_LISTEN", c.NginxExporter.Listen, "127.0.0.1:9113"},
		{"DB_PASSWORD", getenv(c.Environ, "DB_PASSWORD"), DevOnlyDBPassword},
		{"LOG_LEVEL", getenv(c.Environ, "LOG_LEVEL"), "info"},
	} {
		if g.got != g.want {
			t.Errorf("%s: got %q, want %q", g.name, g.got, g.want)
		}
	}
	if c.ReadyTimeout != 20*time.Second || c.StopTimeout != 25*time.Second || c.Observability || c.SkipMailpit {
		t.Errorf("defaults: got %+v", c)
	}
}

func TestLoadInstancesAndKnobs(t *testing.T) {
	c := load(t, "API_INSTANCES=3", "API_HTTP_ADDR=127.0.0.1:7001,127.0.0.1:7050", "WORKER_INTERNAL_ADDR=9200",
		"WORKER_INSTANCES=2", "INSTANCE_PORT_STEP=10", "RATE_LIMIT=0", "HTTP_ADDR=1.2.3.4:1", "INTERNAL_ADDR=stray",
		"OBS=yes", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=http://elsewhere", "READY_TIMEOUT=7", "STOP_TIMEOUT=1500ms",
		"DB_PASSWORD_FILE=/run/pw", "MAILPIT_ARGS=--max 0  --quiet", "SKIP_MAILPIT=1", "SMTP_PORT=2525")
	if g, w := c.APIHTTPAddrs, []string{"127.0.0.1:7001", "127.0.0.1:7050", "127.0.0.1:7021"}; !slices.Equal(g, w) {
		t.Errorf("api addresses: got %v, want %v", g, w)
	}
	if g, w := c.APIInternalAddrs, []string{"127.0.0.1:9101", "127.0.0.1:9111", "127.0.0.1:9121"}; !slices.Equal(g, w) {
		t.Errorf("api internal addresses: got %v, want %v", g, w)
	}
	if g, w := c.WorkerInternalAddrs, []string{"9200", "9210"}; !slices.Equal(g, w) {
		t.Errorf("worker addresses: got %v, want %v", g, w)
	}
	if c.Nginx.RateLimit != "off" || !c.Observability || !c.SkipMailpit || c.SMTPPort != "2525" ||
		c.ReadyTimeout != 7*time.Second || c.StopTimeout != 1500*time.Millisecond ||
		!slices.Equal(c.MailpitArgs, []string{"--max", "0", "--quiet"}) {
		t.Errorf("knobs: got %+v", c)
	}
	for _, gone := range []string{"HTTP_ADDR", "INTERNAL_ADDR", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "DB_PASSWORD"} {
		if v := getenv(c.Environ, gone); v != "" {
			t.Errorf("environment: got %s=%s, want it unset", gone, v)
		}
	}
	// API_RATE_LIMIT wins over RATE_LIMIT; HTTP_ADDR is API_HTTP_ADDR's fallback.
	c = load(t, "RATE_LIMIT=0", "API_RATE_LIMIT=on", "HTTP_ADDR=127.0.0.1:6000")
	if c.Nginx.RateLimit != "on" || c.APIHTTPAddrs[0] != "127.0.0.1:6000" {
		t.Errorf("API_RATE_LIMIT/HTTP_ADDR: got %q, %v", c.Nginx.RateLimit, c.APIHTTPAddrs)
	}
}

func TestLoadErrorsNameTheVariable(t *testing.T) {
	for _, kv := range []string{"OBS=maybe", "API_INSTANCES=0", "WORKER_INSTANCES=x", "READY_TIMEOUT=soon",
		"NGINX_LISTEN=127.0.0.1:0", "MAILPIT_SMTP_ADDR=nowhere", "DB_PORT=postgres", "API_RATE_LIMIT=maybe",
		"NGINX_TRACING=zipkin", "INSTANCE_PORT_STEP=-1", "API_HTTP_ADDR=host:x", "SERVICES_GOMEMLIMIT=lots",
		"SERVICES_GOMEMLIMIT=40MB", "SERVICES_GOMEMLIMIT=0MiB", "OTELCOL_NUM_TRACES=0", "OTELCOL_NUM_TRACES=lots",
		"OTELCOL_TELEMETRY_ADDR=127.0.0.1:0"} {
		name, _, _ := strings.Cut(kv, "=")
		_, err := Load(repoRoot(t), []string{kv})
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v, want an error naming %s", kv, err, name)
		}
	}
	if _, err := Load(repoRoot(t), []string{"JAEGER_QUERY_GRPC_ADDR=127.0.0.1:0"}); err != nil {
		t.Errorf("JAEGER_QUERY_GRPC_ADDR=127.0.0.1:0: %v, want it accepted (nothing connects to it)", err)
	}
}

// Every api and worker gets GOMEMLIMIT: 40MiB by default,
// SERVICES_GOMEMLIMIT's value, or none with off; the collector its own
// (OtelcolGOMEMLIMIT, whatever SERVICES_GOMEMLIMIT says); nothing else one.
func TestServiceMemLimit(t *testing.T) {
	for _, c := range []struct{ env, want string }{
		{"", "GOMEMLIMIT=40MiB"},
		{"SERVICES_GOMEMLIMIT=96MiB", "GOMEMLIMIT=96MiB"},
		{"SERVICES_GOMEMLIMIT=off", ""},
	} {
		for _, x := range load(t, "OBS=1", "API_INSTANCES=2", c.env).Components() {
			var got []string
			for _, kv := range x.Env {
				if strings.HasPrefix(kv, "GOMEMLIMIT=") {
					got = append(got, kv)
				}
			}
			var want []string
			if c.want != "" && (kindOf(x.Name) == "api" || kindOf(x.Name) == "worker") {
				want = []string{c.want}
			}
			if x.Name == "otelcol" {
				want = []string{"GOMEMLIMIT=" + OtelcolGOMEMLIMIT}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%q: %s: got %v, want %v", c.env, x.Name, got, want)
			}
		}
	}
}

// TestStandardComponents: carteiro's native stack, as data.
func TestStandardComponents(t *testing.T) {
	names := func(cs []Component) string {
		var n []string
		for _, c := range cs {
			n = append(n, c.Name)
		}
		return strings.Join(n, " ")
	}
	c := load(t, "API_INSTANCES=2", "WORKER_INSTANCES=2", "WORKER_NAME=w")
	cs := c.Components()
	if g, w := names(cs), "mailpit api api-2 worker worker-2 nginx"; g != w {
		t.Errorf("components: got %s, want %s", g, w)
	}
	byName := map[string]Component{}
	for _, x := range cs {
		byName[x.Name] = x
	}
	if w := []string{"INTERNAL_ADDR=127.0.0.1:9202", "SMTP_HOST=127.0.0.1", "SMTP_PORT=1025", "GOMEMLIMIT=40MiB", "GOMAXPROCS=1", "WORKER_NAME=w-2"}; !slices.Equal(byName["worker-2"].Env, w) {
		t.Errorf("worker-2 env: got %v, want %v", byName["worker-2"].Env, w)
	}
	if g := byName["nginx"]; g.ReadyURL != "http://127.0.0.1:8080/nginx-health" || !slices.Equal(g.DependsOn, []string{"api", "api-2"}) {
		t.Errorf("nginx: got ready %s, depends on %v; want its own /nginx-health, after every api", g.ReadyURL, g.DependsOn)
	}
	for _, x := range cs {
		if x.ReadyURL == "" || len(x.Listen) == 0 {
			t.Errorf("%s: no readiness URL or listen address", x.Name)
		}
	}

	c = load(t, "OBS=1", "SKIP_MAILPIT=1", "SKIP_NGINX_EXPORTER=1")
	cs = c.Components()
	if g, w := names(cs), "jaeger otelcol prometheus alertmanager api worker nginx nginx-exporter postgres-exporter redis-exporter"; g != w {
		t.Errorf("OBS=1 SKIP_MAILPIT=1: got %s, want %s", g, w)
	}
	for _, x := range cs {
		if x.Name == "nginx-exporter" && x.Skip == "" {
			t.Error("nginx-exporter with SKIP_NGINX_EXPORTER=1: not skipped")
		}
	}
	for _, x := range cs {
		if (x.Name == "api" || x.Name == "worker") && !slices.Contains(x.Env, "OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318") {
			t.Errorf("%s with OBS=1: env %v, want the OTLP endpoint of the stack's collector", x.Name, x.Env)
		}
		if (x.Name == "api" || x.Name == "worker") && !slices.Equal(x.DependsOn[:1], []string{"otelcol"}) {
			t.Errorf("%s with OBS=1: depends on %v, want otelcol first", x.Name, x.DependsOn)
		}
		if x.Name == "otelcol" && (!slices.Contains(x.Env, "OTELCOL_JAEGER_ENDPOINT=127.0.0.1:14317") ||
			!slices.Contains(x.Env, "OTELCOL_SAMPLE_PERCENT=100") || !slices.Equal(x.DependsOn, []string{"jaeger"})) {
			t.Errorf("otelcol: env %v, depends on %v; want Jaeger's OTLP/gRPC receiver, 100 %% kept, after jaeger", x.Env, x.DependsOn)
		}
		if x.Name == "otelcol" {
			for _, want := range []string{"OTELCOL_NUM_TRACES=100000", "OTELCOL_TELEMETRY_HOST=127.0.0.1", "OTELCOL_TELEMETRY_PORT=8888",
				"GOGC=200", "GOMEMLIMIT=600MiB"} {
				if !slices.Contains(x.Env, want) {
					t.Errorf("otelcol: env %v, want %s", x.Env, want)
				}
			}
			if !slices.Contains(x.Listen, "127.0.0.1:8888") {
				t.Errorf("otelcol: listens on %v, want its own metrics' 127.0.0.1:8888 among them", x.Listen)
			}
		}
	}
	// The capacity and the own-metrics listener are knobs; a bare port is
	// 127.0.0.1's, and Prometheus scrapes it there.
	c = load(t, "OBS=1", "OTELCOL_NUM_TRACES=250000", "OTELCOL_TELEMETRY_ADDR=9888")
	for _, x := range c.Components() {
		if x.Name != "otelcol" {
			continue
		}
		for _, want := range []string{"OTELCOL_NUM_TRACES=250000", "OTELCOL_TELEMETRY_HOST=127.0.0.1", "OTELCOL_TELEMETRY_PORT=9888"} {
			if !slices.Contains(x.Env, want) {
				t.Errorf("otelcol with OTELCOL_NUM_TRACES and OTELCOL_TELEMETRY_ADDR: env %v, want %s", x.Env, want)
			}
		}
	}
	if g, w := c.PrometheusVars()["OTELCOL_TELEMETRY_TARGET"], "127.0.0.1:9888"; g != w {
		t.Errorf("OTELCOL_TELEMETRY_TARGET: got %q, want %q", g, w)
	}
	// Down and Status know OBS=1's and Mailpit's components without OBS=1.
	if g, w := names(load(t, "SKIP_MAILPIT=1").components(true)), "jaeger otelcol prometheus alertmanager mailpit api worker nginx nginx-exporter postgres-exporter redis-exporter"; g != w {
		t.Errorf("all components: got %s, want %s", g, w)
	}
}

// TestNginxRendersNatively renders the repository's templates with native
// values and three api instances, and nginx -t accepts the result.
func TestNginxRendersNatively(t *testing.T) {
	c := load(t, "API_INSTANCES=3", "NGINX_LISTEN=127.0.0.1:18080", "NGINX_STATUS_ADDR=127.0.0.1:18082")
	n, err := c.NginxConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Render(); err != nil {
		t.Fatal(err)
	}
	conf, err := os.ReadFile(filepath.Join(n.Dir, "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server 127.0.0.1:8081; server 127.0.0.1:8181; server 127.0.0.1:8281;",
		"pid " + n.Dir + "/nginx.pid;", `map "on" $api_limit_key`, "include snippets/tracing-native.conf;"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("nginx.conf: got no %q", want)
		}
	}
	for _, f := range []string{"conf.d/default.conf", "conf.d/status.conf", "snippets/proxy-api.conf", "snippets/security-headers.conf"} {
		if _, err := os.Stat(filepath.Join(n.Dir, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	// A stale rendered file is gone after the next rendering.
	stale := filepath.Join(n.Dir, "conf.d", "old.conf")
	os.WriteFile(stale, []byte("server { listen 1; }"), 0o644)
	if err := n.Render(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); err == nil {
		t.Error("conf.d/old.conf: still there after a new rendering")
	}
	if n.Bin == "" {
		missing(t, "nginx")
	}
	if err := n.Test(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestNginxRefusesBadValues(t *testing.T) {
	for _, kv := range []string{"NGINX_STATUS_ALLOW=everyone", "NGINX_ACCESS_LOG=/tmp/a;b", "WEB_ROOT=/nonexistent",
		`NGINX_LISTEN=8080"`, "NGINX_USER=a;b"} {
		c, err := Load(repoRoot(t), []string{kv, "DEV_DIR=" + t.TempDir()})
		if err == nil {
			_, err = c.NginxConfig()
		}
		name, _, _ := strings.Cut(kv, "=")
		if kv == "NGINX_USER=a;b" && os.Geteuid() != 0 {
			continue // only used when nginx runs as root
		}
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: got %v, want an error naming %s", kv, err, name)
		}
	}
}

func TestRenderPrometheus(t *testing.T) {
	c := load(t, "API_INTERNAL_ADDR=127.0.0.1:7101", "PROMETHEUS_SCRAPE_INTERVAL=1s")
	out := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := c.RenderPrometheus(out); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out)
	for _, want := range []string{`targets: ["127.0.0.1:7101"]`, "scrape_interval: 1s", filepath.Join(c.Root, "observability/prometheus/rules") + "/*.yml"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("prometheus.yml: got no %q", want)
		}
	}
	// A placeholder the stack does not give is an error.
	tmpl := filepath.Join(t.TempDir(), "t.yml")
	os.WriteFile(tmpl, []byte("x: ${NOT_GIVEN}\n"), 0o644)
	c.Prometheus.Template = tmpl
	if err := c.RenderPrometheus(out); err == nil || !strings.Contains(err.Error(), "NOT_GIVEN") {
		t.Errorf("unknown placeholder: got %v, want an error naming it", err)
	}
}

// TestSetupDatabase creates a role and a database on the machine's
// Postgres, twice (the second time finds them), and drops them.
func TestSetupDatabase(t *testing.T) {
	name := "devstack_test_" + strconv.Itoa(os.Getpid())
	c := load(t, "DB_USER="+name, "DB_NAME="+name, "DB_PASSWORD=it's \"quoted\"")
	admin, err := pgx.Connect(context.Background(), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	if err != nil {
		missing(t, "postgres on 127.0.0.1:5432: %v", err)
	}
	defer admin.Close(context.Background())
	t.Cleanup(func() {
		admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+name)
	})
	for range 2 {
		if err := c.SetupDatabase(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	var login bool
	var owner string
	if err := admin.QueryRow(context.Background(), `SELECT r.rolcanlogin, o.rolname FROM pg_roles r, pg_database d
		JOIN pg_roles o ON o.oid = d.datdba WHERE r.rolname = $1 AND d.datname = $1`, name).Scan(&login, &owner); err != nil {
		t.Fatal(err)
	}
	if !login || owner != name {
		t.Errorf("role %s: login %v, database owner %s; want a login role owning its database", name, login, owner)
	}
	c.DB.AdminUser = "no_such_admin_" + name
	err = c.SetupDatabase(context.Background())
	for _, want := range []string{"DB_ADMIN_USER", "~/.pgpass", "DB_ADMIN_HOST", "SKIP_DB_SETUP=1"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("unknown admin: got %v, want an error naming %s", err, want)
		}
	}
}

// missing skips the test, or fails it in CI (CI=true).
func missing(t *testing.T, format string, args ...any) {
	t.Helper()
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatalf("missing test dependency (CI must provide it): "+format, args...)
	}
	t.Skipf("missing test dependency: "+format, args...)
}

// The banner names the collector's OTLP endpoint, the one services export
// to, not Jaeger's, which takes the collector's export only.
func TestBannerNamesTheCollectorsOTLPEndpoint(t *testing.T) {
	for _, tt := range []struct {
		env       []string
		want, not []string
	}{
		{nil, []string{"stack is up: http://127.0.0.1:8080/", "Mailpit UI: http://127.0.0.1:8025/"}, []string{"observability"}},
		{[]string{"OBS=1"}, []string{"Jaeger http://127.0.0.1:16686/", "/api/traces/", "Prometheus http://127.0.0.1:9090/",
			"OpenTelemetry Collector OTLP http://127.0.0.1:4318", "gRPC 127.0.0.1:4317"}, []string{"14318", "14317"}},
		{[]string{"OBS=1", "OTELCOL_OTLP_HTTP_ADDR=:24318", "SKIP_MAILPIT=1"}, []string{"OTLP http://127.0.0.1:24318", "Mailpit: skipped"}, nil},
	} {
		got := load(t, tt.env...).Banner()
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%v: got %q, want %q in it", tt.env, got, w)
			}
		}
		for _, n := range tt.not {
			if strings.Contains(got, n) {
				t.Errorf("%v: got %q, want no %q in it", tt.env, got, n)
			}
		}
	}
}

// nginx's API_RATE_LIMIT is named by the variable the user gives it with.
func TestSettingVarsNameTheGivenVariable(t *testing.T) {
	for _, tt := range []struct {
		env  []string
		want string
	}{
		{nil, "RATE_LIMIT"},
		{[]string{"RATE_LIMIT=0"}, "RATE_LIMIT"},
		{[]string{"API_RATE_LIMIT=off"}, ""},
	} {
		if got := load(t, tt.env...).SettingVars["API_RATE_LIMIT"]; got != tt.want {
			t.Errorf("%v: got %q, want %q", tt.env, got, tt.want)
		}
	}
}
