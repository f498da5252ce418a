package devstack

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DevOnlyDBPassword is the password the stack gives the local Postgres role
// unless DB_PASSWORD or DB_PASSWORD_FILE says otherwise. DEVELOPMENT ONLY:
// it is in the repository, so it protects nothing. Compose deployments use
// generated secrets (make secrets).
const DevOnlyDBPassword = "carteiro-dev-only-NOT-A-SECRET"

// Config is one native stack's settings, read once from an environment by
// Load. The README's "Configuration" section lists every knob with its
// default.
type Config struct {
	Root string // the repository: nginx/, web/, observability/
	// Dir is DEV_DIR (default Root/.dev): logs, pid files, exit statuses,
	// URLs and rendered configurations.
	Dir string
	// BinDir is BIN_DIR (default Root/bin): api, worker, mailpit, jaeger.
	BinDir string
	// Supervisor is the devstack binary that each component runs under
	// (`devstack supervise`, see Supervise); default BinDir/devstack.
	// cmd/devstack sets it to itself.
	Supervisor string
	// Environ is the environment every process starts with ("NAME=value"):
	// the one given to Load, less a stray HTTP_ADDR and INTERNAL_ADDR (and,
	// with Observability, OTEL_EXPORTER_OTLP_TRACES_*), plus the shared
	// settings with their native defaults (LOG_LEVEL, DB_*, REDIS_ADDR).
	Environ []string

	ReadyTimeout time.Duration // READY_TIMEOUT (20 s): each start, until ready
	StopTimeout  time.Duration // STOP_TIMEOUT (25 s): each stop, SIGTERM to SIGKILL

	// Observability is OBS: also Jaeger, the OpenTelemetry Collector,
	// Prometheus, Alertmanager and the nginx, Postgres and Redis exporters.
	Observability bool

	NginxListen     string // NGINX_LISTEN 127.0.0.1:8080: the public entry point
	NginxStatusAddr string // NGINX_STATUS_ADDR 127.0.0.1:8082: stub_status listener
	// APIHTTPAddrs, APIInternalAddrs and WorkerInternalAddrs hold each
	// instance's address (API_HTTP_ADDR, API_INTERNAL_ADDR,
	// WORKER_INTERNAL_ADDR, API_INSTANCES, WORKER_INSTANCES,
	// INSTANCE_PORT_STEP); their lengths are the instance counts.
	APIHTTPAddrs        []string
	APIInternalAddrs    []string
	WorkerInternalAddrs []string
	// ListenVars maps each address read from an address variable to that
	// variable's name (the first one, when two give one address), so that
	// a busy port's error names the knob that moves it.
	ListenVars map[string]string
	// SettingVars maps a component's setting to the variable the user
	// sets it with, when that has another name: nginx's API_RATE_LIMIT
	// comes from RATE_LIMIT unless API_RATE_LIMIT itself is given.
	SettingVars map[string]string

	MailpitSMTPAddr string   // MAILPIT_SMTP_ADDR 127.0.0.1:1025
	MailpitUIAddr   string   // MAILPIT_UI_ADDR 127.0.0.1:8025
	MailpitArgs     []string // MAILPIT_ARGS, split on spaces
	SkipMailpit     bool     // SKIP_MAILPIT: bring your own SMTP server
	// SMTPHost and SMTPPort are the workers' relay: SMTP_HOST/SMTP_PORT,
	// else MAILPIT_SMTP_ADDR.
	SMTPHost, SMTPPort string
	// WorkerName is WORKER_NAME; instances after the first get -2, -3, ...
	WorkerName string
	// ServiceMemLimit is SERVICES_GOMEMLIMIT (40MiB; "off": none), the
	// GOMEMLIMIT of every api and worker: see memLimitEnv.
	ServiceMemLimit string

	SkipDBSetup bool // SKIP_DB_SETUP: do not create the role and database
	DB          DBSetup

	RedisAddr     string // REDIS_ADDR 127.0.0.1:6379
	RedisPassword string // REDIS_PASSWORD, for the start-up PING

	Nginx            NginxSettings
	Jaeger           JaegerSettings
	Otelcol          OtelcolSettings
	Prometheus       PrometheusSettings
	NginxExporter    ExporterSettings
	Alertmanager     AlertmanagerSettings
	PostgresExporter PostgresExporterSettings
	RedisExporter    RedisExporterSettings
	// SkipExporterSetup is SKIP_EXPORTER_SETUP: do not create the
	// exporters' Postgres role and Redis ACL user (SetupMonitorRole,
	// SetupRedisExporterUser).
	SkipExporterSetup bool
}

// DBSetup is the role and database the stack creates, and how.
type DBSetup struct {
	Host, Port, Name, User string // DB_HOST, DB_PORT, DB_NAME, DB_USER
	// Password is DB_PASSWORD (default DevOnlyDBPassword); PasswordFile,
	// DB_PASSWORD_FILE, wins when set.
	Password, PasswordFile string
	AdminUser              string // DB_ADMIN_USER (postgres): a superuser
	AdminHost              string // DB_ADMIN_HOST (DB_HOST)
}

// NginxSettings are the native values of nginx/*.template's placeholders
// that are not addresses (nginx/README.md).
type NginxSettings struct {
	Bin         string // NGINX_BIN (nginx on PATH, /usr/sbin/nginx)
	WebRoot     string // WEB_ROOT (Root/web)
	AccessLog   string // NGINX_ACCESS_LOG (Dir/nginx/access.log)
	ErrorLog    string // NGINX_ERROR_LOG (Dir/nginx/error.log)
	StatusAllow string // NGINX_STATUS_ALLOW (127.0.0.1)
	Tracing     string // NGINX_TRACING: native (default) or otel
	RateLimit   string // API_RATE_LIMIT on|off, else from RATE_LIMIT (0/false/off/no: off)
	// User is NGINX_USER, the workers' user when nginx runs as root
	// (default nobody, or root when nobody could not read the files).
	User string
}

// JaegerSettings are Jaeger's listeners and files (OBS=1).
type JaegerSettings struct {
	OTLPGRPCAddr  string // JAEGER_OTLP_GRPC_ADDR 127.0.0.1:14317: the collector exports here
	OTLPHTTPAddr  string // JAEGER_OTLP_HTTP_ADDR 127.0.0.1:14318
	QueryAddr     string // JAEGER_QUERY_ADDR 127.0.0.1:16686: UI and query API
	QueryGRPCAddr string // JAEGER_QUERY_GRPC_ADDR 127.0.0.1:16685 (port 0: any)
	MetricsAddr   string // JAEGER_METRICS_ADDR, empty: no metrics listener
	MetricsLevel  string // JAEGER_METRICS_LEVEL (normal) when MetricsAddr is set
	Config        string // JAEGER_CONFIG (Root/observability/jaeger/config.yaml)
	UIURL         string // JAEGER_UI_URL, the api's link (http://QueryAddr)
}

// PrometheusSettings are Prometheus's (OBS=1).
type PrometheusSettings struct {
	Bin            string   // PROMETHEUS_BIN (prometheus on PATH, /usr/bin)
	Listen         string   // PROMETHEUS_LISTEN 127.0.0.1:9090
	Template       string   // PROMETHEUS_TEMPLATE (observability/prometheus/prometheus.native.yml.template)
	ScrapeInterval string   // PROMETHEUS_SCRAPE_INTERVAL 5s
	Retention      string   // PROMETHEUS_RETENTION 2d
	Args           []string // PROMETHEUS_ARGS, split on spaces
	// RulesWindowScale is PROMETHEUS_RULES_WINDOW_SCALE (1), for tests:
	// above 1, Prometheus loads a copy of the rules whose every window and
	// `for` is divided by it (RenderRules), so that an hour-long burn-rate
	// window lasts a minute at 60.
	RulesWindowScale int
}

// ExporterSettings are the nginx exporter's (OBS=1).
type ExporterSettings struct {
	// Bin is NGINX_EXPORTER_BIN (prometheus-nginx-exporter, Debian's name,
	// or nginx-prometheus-exporter); empty when none is found, and then
	// the exporter is skipped with a warning.
	Bin    string
	Listen string // NGINX_EXPORTER_LISTEN 127.0.0.1:9113
	Skip   bool   // SKIP_NGINX_EXPORTER
}

// env reads variables from an environment list, noting the first error.
type env struct {
	vars map[string]string
	err  []error
	// listen records which variable gave each address (Config.ListenVars).
	listen map[string]string
}

// listenVar records that variable name gave address a, unless another
// did first.
func (e *env) listenVar(a, name string) {
	if _, ok := e.listen[a]; !ok {
		e.listen[a] = name
	}
}

func (e *env) get(name, def string) string {
	if v, ok := e.vars[name]; ok && v != "" {
		return v
	}
	return def
}

func (e *env) fail(name, format string, a ...any) {
	e.err = append(e.err, fmt.Errorf("%s: "+format, append([]any{name}, a...)...))
}

func (e *env) bool(name string) bool {
	switch v := strings.ToLower(e.get(name, "0")); v {
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	default:
		e.fail(name, "got %q, want 1 or 0 (true/false, yes/no, on/off)", v)
		return false
	}
}

// seconds reads whole seconds or a Go duration.
func (e *env) seconds(name string, def time.Duration) time.Duration {
	v := e.get(name, "")
	if v == "" {
		return def
	}
	if n, err := strconv.Atoi(v); err == nil && n > 0 {
		return time.Duration(n) * time.Second
	}
	if d, err := time.ParseDuration(v); err == nil && d > 0 {
		return d
	}
	e.fail(name, "got %q, want a number of seconds or a duration such as 20s", v)
	return def
}

// addr reads a listen address with a port (a bare port is taken as
// 127.0.0.1's); port 0 only where zeroOK.
func (e *env) addr(name, def string, zeroOK bool) string {
	v := e.get(name, def)
	if err := checkListen(v, zeroOK); err != nil {
		e.fail(name, "%v", err)
	}
	e.listenVar(v, name)
	return v
}

func checkListen(v string, zeroOK bool) error {
	_, port, err := net.SplitHostPort(DialAddr(v))
	n, perr := strconv.Atoi(port)
	switch {
	case err != nil || perr != nil || n < 0 || n > 65535:
		return fmt.Errorf("got %q, want host:port or a port", v)
	case n == 0 && !zeroOK:
		return fmt.Errorf("got %q: port 0 cannot be checked or waited for; give a free port", v)
	}
	return nil
}

// Load reads a stack's configuration from environ ("NAME=value", as
// os.Environ gives it) for the repository at root, with the defaults of
// the README's "Configuration" section.
// Relative DEV_DIR, BIN_DIR and WEB_ROOT are taken from the current
// directory. Every bad value is reported, each naming its variable.
func Load(root string, environ []string) (Config, error) {
	e := &env{vars: map[string]string{}, listen: map[string]string{}}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			if _, seen := e.vars[k]; !seen {
				e.vars[k] = v
			}
		}
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			return p
		}
		return a
	}
	c := Config{Root: abs(root)}
	c.Dir = abs(e.get("DEV_DIR", filepath.Join(c.Root, ".dev")))
	c.BinDir = abs(e.get("BIN_DIR", filepath.Join(c.Root, "bin")))
	c.Supervisor = filepath.Join(c.BinDir, "devstack")
	c.ReadyTimeout = e.seconds("READY_TIMEOUT", 20*time.Second)
	c.StopTimeout = e.seconds("STOP_TIMEOUT", 25*time.Second)
	c.Observability = e.bool("OBS")

	c.NginxListen = e.addr("NGINX_LISTEN", "127.0.0.1:8080", false)
	c.NginxStatusAddr = e.addr("NGINX_STATUS_ADDR", "127.0.0.1:8082", false)
	step, err := strconv.Atoi(e.get("INSTANCE_PORT_STEP", "100"))
	if err != nil || step < 0 {
		e.fail("INSTANCE_PORT_STEP", "got %q, want a number", e.get("INSTANCE_PORT_STEP", ""))
	}
	apiHTTP := e.get("API_HTTP_ADDR", e.get("HTTP_ADDR", "127.0.0.1:8081"))
	apis := instanceCount(e, "API_INSTANCES", apiHTTP)
	workers := instanceCount(e, "WORKER_INSTANCES", e.get("WORKER_INTERNAL_ADDR", "127.0.0.1:9102"))
	c.APIHTTPAddrs = instanceAddrs(e, "API_HTTP_ADDR", apiHTTP, apis, step)
	c.APIInternalAddrs = instanceAddrs(e, "API_INTERNAL_ADDR", e.get("API_INTERNAL_ADDR", "127.0.0.1:9101"), apis, step)
	c.WorkerInternalAddrs = instanceAddrs(e, "WORKER_INTERNAL_ADDR", e.get("WORKER_INTERNAL_ADDR", "127.0.0.1:9102"), workers, step)

	c.MailpitSMTPAddr = e.addr("MAILPIT_SMTP_ADDR", "127.0.0.1:1025", false)
	c.MailpitUIAddr = e.addr("MAILPIT_UI_ADDR", "127.0.0.1:8025", false)
	c.MailpitArgs = strings.Fields(e.get("MAILPIT_ARGS", ""))
	c.SkipMailpit = e.bool("SKIP_MAILPIT")
	smtpHost, smtpPort, _ := net.SplitHostPort(DialAddr(c.MailpitSMTPAddr))
	c.SMTPHost, c.SMTPPort = e.get("SMTP_HOST", smtpHost), e.get("SMTP_PORT", smtpPort)
	c.WorkerName = e.get("WORKER_NAME", "")
	c.ServiceMemLimit = e.get("SERVICES_GOMEMLIMIT", "40MiB")
	if c.ServiceMemLimit != "off" && !validMemLimit(c.ServiceMemLimit) {
		e.fail("SERVICES_GOMEMLIMIT", "got %q, want off or a size such as 40MiB (the runtime's GOMEMLIMIT syntax)", c.ServiceMemLimit)
	}

	c.SkipDBSetup = e.bool("SKIP_DB_SETUP")
	c.DB = DBSetup{
		Host: e.get("DB_HOST", "127.0.0.1"), Port: e.get("DB_PORT", "5432"),
		Name: e.get("DB_NAME", "carteiro"), User: e.get("DB_USER", "carteiro"),
		Password: e.get("DB_PASSWORD", DevOnlyDBPassword), PasswordFile: e.get("DB_PASSWORD_FILE", ""),
		AdminUser: e.get("DB_ADMIN_USER", "postgres"),
	}
	c.DB.AdminHost = e.get("DB_ADMIN_HOST", c.DB.Host)
	if n, err := strconv.Atoi(c.DB.Port); err != nil || n <= 0 || n > 65535 {
		e.fail("DB_PORT", "got %q, want a port number", c.DB.Port)
	}
	c.RedisAddr = e.get("REDIS_ADDR", "127.0.0.1:6379")
	c.RedisPassword = e.get("REDIS_PASSWORD", "")

	path := e.get("PATH", os.Getenv("PATH"))
	c.Nginx = NginxSettings{
		Bin:         e.get("NGINX_BIN", findProgram(path, "nginx")),
		WebRoot:     abs(e.get("WEB_ROOT", filepath.Join(c.Root, "web"))),
		AccessLog:   e.get("NGINX_ACCESS_LOG", filepath.Join(c.Dir, "nginx", "access.log")),
		ErrorLog:    e.get("NGINX_ERROR_LOG", filepath.Join(c.Dir, "nginx", "error.log")),
		StatusAllow: e.get("NGINX_STATUS_ALLOW", "127.0.0.1"),
		Tracing:     e.get("NGINX_TRACING", "native"),
		RateLimit:   e.get("API_RATE_LIMIT", rateLimit(e.get("RATE_LIMIT", "1"))),
		User:        e.get("NGINX_USER", ""),
	}
	if r := c.Nginx.RateLimit; r != "on" && r != "off" {
		e.fail("API_RATE_LIMIT", "got %q, want on or off", r)
	}
	c.SettingVars = map[string]string{}
	if e.get("API_RATE_LIMIT", "") == "" {
		c.SettingVars["API_RATE_LIMIT"] = "RATE_LIMIT"
	}
	if t := c.Nginx.Tracing; t != "native" && t != "otel" {
		e.fail("NGINX_TRACING", "got %q, want native or otel", t)
	}

	c.Jaeger = JaegerSettings{
		OTLPGRPCAddr:  e.addr("JAEGER_OTLP_GRPC_ADDR", "127.0.0.1:14317", false),
		OTLPHTTPAddr:  e.addr("JAEGER_OTLP_HTTP_ADDR", "127.0.0.1:14318", false),
		QueryAddr:     e.addr("JAEGER_QUERY_ADDR", "127.0.0.1:16686", false),
		QueryGRPCAddr: e.addr("JAEGER_QUERY_GRPC_ADDR", "127.0.0.1:16685", true),
		MetricsAddr:   e.get("JAEGER_METRICS_ADDR", ""),
		MetricsLevel:  e.get("JAEGER_METRICS_LEVEL", "normal"),
		Config:        abs(e.get("JAEGER_CONFIG", filepath.Join(c.Root, "observability", "jaeger", "config.yaml"))),
	}
	if c.Jaeger.MetricsAddr != "" {
		e.addr("JAEGER_METRICS_ADDR", "", false)
	}
	c.Jaeger.UIURL = e.get("JAEGER_UI_URL", "http://"+DialAddr(c.Jaeger.QueryAddr))
	loadOtelcol(e, &c)
	c.Otelcol.Config = abs(c.Otelcol.Config)
	c.Prometheus = PrometheusSettings{
		Bin:            e.get("PROMETHEUS_BIN", findProgram(path, "prometheus")),
		Listen:         e.addr("PROMETHEUS_LISTEN", "127.0.0.1:9090", false),
		Template:       abs(e.get("PROMETHEUS_TEMPLATE", filepath.Join(c.Root, "observability", "prometheus", "prometheus.native.yml.template"))),
		ScrapeInterval: e.get("PROMETHEUS_SCRAPE_INTERVAL", "5s"),
		Retention:      e.get("PROMETHEUS_RETENTION", "2d"),
		Args:           strings.Fields(e.get("PROMETHEUS_ARGS", "")),
	}
	scale := e.get("PROMETHEUS_RULES_WINDOW_SCALE", "1")
	c.Prometheus.RulesWindowScale, err = strconv.Atoi(scale)
	if err != nil || c.Prometheus.RulesWindowScale < 1 {
		e.fail("PROMETHEUS_RULES_WINDOW_SCALE", "got %q, want a whole number, 1 or more", scale)
		c.Prometheus.RulesWindowScale = 1
	}
	c.NginxExporter = ExporterSettings{
		Bin:    e.get("NGINX_EXPORTER_BIN", findProgram(path, "prometheus-nginx-exporter", "nginx-prometheus-exporter")),
		Listen: e.addr("NGINX_EXPORTER_LISTEN", "127.0.0.1:9113", false),
		Skip:   e.bool("SKIP_NGINX_EXPORTER"),
	}
	loadMonitoring(e, &c, path)

	// The processes' environment: the given one, less addresses meant for
	// one process, plus the shared settings.
	drop := map[string]bool{"HTTP_ADDR": true, "INTERNAL_ADDR": true}
	if c.Observability {
		// A traces-only endpoint inherited from the shell would win over
		// the stack's collector.
		drop["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = true
		drop["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = true
	}
	for _, kv := range environ {
		if k, _, _ := strings.Cut(kv, "="); !drop[k] {
			c.Environ = append(c.Environ, kv)
		}
	}
	shared := []string{"LOG_LEVEL=" + e.get("LOG_LEVEL", "info"),
		"DB_HOST=" + c.DB.Host, "DB_PORT=" + c.DB.Port, "DB_NAME=" + c.DB.Name, "DB_USER=" + c.DB.User,
		"REDIS_ADDR=" + c.RedisAddr}
	if c.DB.PasswordFile == "" {
		shared = append(shared, "DB_PASSWORD="+c.DB.Password)
	}
	c.Environ = setEnv(c.Environ, shared...)
	c.ListenVars = e.listen
	return c, errors.Join(e.err...)
}

// rateLimit maps RATE_LIMIT to API_RATE_LIMIT.
func rateLimit(v string) string {
	switch strings.ToLower(v) {
	case "0", "false", "off", "no":
		return "off"
	}
	return "on"
}

// instanceCount is the value of variable name (1..999) when set, else how
// many addresses list has.
func instanceCount(e *env, name, list string) int {
	v := e.get(name, "")
	if v == "" {
		return max(len(strings.Split(list, ",")), 1)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 999 {
		e.fail(name, "got %q, want 1..999", v)
		return 1
	}
	return n
}

// instanceAddrs gives n instances their addresses: the entries of list (a
// comma-separated variable), then, for instances it does not cover, the
// first entry's port + step × (instance − 1): 8081, 8181, 8281...
func instanceAddrs(e *env, name, list string, n, step int) []string {
	entries := strings.Split(list, ",")
	out := make([]string, n)
	for i := range out {
		if i < len(entries) && strings.TrimSpace(entries[i]) != "" {
			out[i] = strings.TrimSpace(entries[i])
		} else {
			first := strings.TrimSpace(entries[0])
			host, port, err := net.SplitHostPort(first)
			if err != nil {
				host, port = "", first
			}
			p, err := strconv.Atoi(port)
			if err != nil {
				e.fail(name, "cannot derive the address of instance %d from %q", i+1, first)
				return out
			}
			out[i] = strconv.Itoa(p + step*i)
			if host != "" {
				out[i] = net.JoinHostPort(host, out[i])
			}
		}
		if err := checkListen(out[i], false); err != nil {
			e.fail(name, "instance %d: %v", i+1, err)
		}
		e.listenVar(out[i], name)
	}
	return out
}

// setEnv returns environ with each "NAME=value" of kv set, replacing an
// existing entry of that name.
func setEnv(environ []string, kv ...string) []string {
	out := make([]string, 0, len(environ)+len(kv))
	set := map[string]bool{}
	for _, s := range kv {
		k, _, _ := strings.Cut(s, "=")
		set[k] = true
	}
	for _, s := range environ {
		if k, _, _ := strings.Cut(s, "="); !set[k] {
			out = append(out, s)
		}
	}
	return append(out, kv...)
}

// findProgram finds the first of names in path's folders or in /usr/bin
// and /usr/sbin; "" when none is there.
func findProgram(path string, names ...string) string {
	dirs := append(filepath.SplitList(path), "/usr/bin", "/usr/sbin")
	for _, n := range names {
		for _, d := range dirs {
			p := filepath.Join(d, n)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p
			}
		}
	}
	return ""
}

// FindRoot returns the repository that holds dir: the first of dir and
// its parents with go.mod and nginx/nginx.conf.template.
func FindRoot(dir string) (string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		_, e1 := os.Stat(filepath.Join(d, "go.mod"))
		_, e2 := os.Stat(filepath.Join(d, "nginx", "nginx.conf.template"))
		if e1 == nil && e2 == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("%s is not inside the carteiro repository (no go.mod and nginx/ above it)", dir)
		}
	}
}

// Banner is what `make dev` prints once the stack is up: the form's and
// Mailpit's addresses and, with OBS=1, Jaeger's (its API: the Jaeger built
// from Go has no UI files), Prometheus's and the collector's OTLP endpoint,
// the one to export spans to (Jaeger's own OTLP port takes the collector's
// export only).
func (c Config) Banner() string {
	var b strings.Builder
	fmt.Fprintf(&b, "devstack: stack is up: http://%s/", DialAddr(c.NginxListen))
	if c.SkipMailpit {
		b.WriteString(" (Mailpit: skipped)\n")
	} else {
		fmt.Fprintf(&b, " (Mailpit UI: http://%s/)\n", DialAddr(c.MailpitUIAddr))
	}
	if c.Observability {
		fmt.Fprintf(&b, "devstack: observability: Jaeger http://%s/ (API: /api/traces/<trace id>), Prometheus http://%s/, OpenTelemetry Collector OTLP http://%s (gRPC %s)\n",
			DialAddr(c.Jaeger.QueryAddr), DialAddr(c.Prometheus.Listen), DialAddr(c.Otelcol.OTLPHTTPAddr), DialAddr(c.Otelcol.OTLPGRPCAddr))
	}
	return b.String()
}
