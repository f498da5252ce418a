package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoadAPIDefaults(t *testing.T) {
	c, err := LoadAPI(env(nil))
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if c.HTTPAddr != "127.0.0.1:8081" || c.InternalAddr != "127.0.0.1:9101" {
		t.Errorf("addrs: got %s %s, want loopback defaults", c.HTTPAddr, c.InternalAddr)
	}
	if c.Postgres.Name != "carteiro" || c.Postgres.QueryTimeout != 1500*time.Millisecond {
		t.Errorf("postgres: got %+v", c.Postgres)
	}
	if c.Redis.Stream != "carteiro:emails" {
		t.Errorf("stream: got %q, want carteiro:emails", c.Redis.Stream)
	}
	if c.Postgres.MaxConns != 16 {
		t.Errorf("DB_MAX_CONNS: got %d, want 16", c.Postgres.MaxConns)
	}
	if want := (GroupCommit{Flushers: 2, MaxBatch: 128}); c.GroupCommit != want {
		t.Errorf("group commit: got %+v, want %+v", c.GroupCommit, want)
	}
}

// The pool's size is explicit and checked: a number, in range, and for
// the api more than the group commit's transactions.
func TestMaxConns(t *testing.T) {
	tests := []struct {
		env     map[string]string
		want    int
		wantErr bool
	}{
		{map[string]string{"DB_MAX_CONNS": "32"}, 32, false},
		{map[string]string{"DB_MAX_CONNS": "1"}, 0, true},
		{map[string]string{"DB_MAX_CONNS": "many"}, 0, true},
		{map[string]string{"DB_MAX_CONNS": "4", "GROUP_COMMIT_FLUSHERS": "4"}, 0, true},
		{map[string]string{"DB_MAX_CONNS": "5", "GROUP_COMMIT_FLUSHERS": "4"}, 5, false},
		// The default GROUP_COMMIT_FLUSHERS, 2, needs a third connection.
		{map[string]string{"DB_MAX_CONNS": "2"}, 0, true},
		{map[string]string{"DB_MAX_CONNS": "3"}, 3, false},
	}
	for _, tt := range tests {
		c, err := LoadAPI(env(tt.env))
		if (err != nil) != tt.wantErr || err != nil && !strings.Contains(err.Error(), "DB_MAX_CONNS:") {
			t.Errorf("%v: got %v, want error %v naming DB_MAX_CONNS", tt.env, err, tt.wantErr)
			continue
		}
		if err == nil && c.Postgres.MaxConns != tt.want {
			t.Errorf("%v: got %d, want %d", tt.env, c.Postgres.MaxConns, tt.want)
		}
	}
	if c, err := LoadWorker(env(map[string]string{"DB_MAX_CONNS": "3"})); err != nil || c.Postgres.MaxConns != 3 {
		t.Errorf("worker: got %d %v, want 3", c.Postgres.MaxConns, err)
	}
}

func TestIncomingTraceContext(t *testing.T) {
	for _, c := range []struct{ value, want, wantErr string }{
		{"", TraceContextLink, ""},
		{"link", TraceContextLink, ""},
		{"join", TraceContextJoin, ""},
		{"follow", "", "INCOMING_TRACE_CONTEXT:"},
	} {
		got, err := LoadAPI(env(map[string]string{"INCOMING_TRACE_CONTEXT": c.value}))
		switch {
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("%q: got %v, want an error naming INCOMING_TRACE_CONTEXT", c.value, err)
		case c.wantErr == "" && (err != nil || got.IncomingTraceContext != c.want):
			t.Errorf("%q: got %q, %v, want %q", c.value, got.IncomingTraceContext, err, c.want)
		}
	}
}

func TestOutboxWakeDelay(t *testing.T) {
	for _, c := range []struct {
		vars    map[string]string
		want    time.Duration
		wantErr bool
	}{
		{map[string]string{}, 5 * time.Millisecond, false},
		{map[string]string{"OUTBOX_WAKE_DELAY": "0"}, 0, false},
		{map[string]string{"OUTBOX_WAKE_DELAY": "50ms", "OUTBOX_SWEEP_INTERVAL": "100ms"}, 50 * time.Millisecond, false},
		{map[string]string{"OUTBOX_WAKE_DELAY": "1s"}, 0, true},
		{map[string]string{"OUTBOX_WAKE_DELAY": "200ms", "OUTBOX_SWEEP_INTERVAL": "100ms"}, 0, true},
		{map[string]string{"OUTBOX_WAKE_DELAY": "-1ms"}, 0, true},
	} {
		got, err := LoadAPI(env(c.vars))
		switch {
		case c.wantErr && (err == nil || !strings.Contains(err.Error(), "OUTBOX_WAKE_DELAY:")):
			t.Errorf("%v: got %v, want an error naming OUTBOX_WAKE_DELAY", c.vars, err)
		case !c.wantErr && (err != nil || got.Outbox.WakeDelay != c.want):
			t.Errorf("%v: got %v, %v, want %v", c.vars, got.Outbox.WakeDelay, err, c.want)
		}
	}
}

func TestLoadNamesEveryBadVariable(t *testing.T) {
	_, err := LoadWorker(env(map[string]string{
		"DB_PORT":               "abc",
		"WORKER_CONCURRENCY":    "0",
		"WORKER_LEASE":          "soon",
		"SMTP_TLS":              "maybe",
		"MAIL_TO":               "not an address",
		"LOG_LEVEL":             "loud",
		"WORKER_MAX_DELIVERIES": "0",
	}))
	if err == nil {
		t.Fatal("got nil, want an error")
	}
	for _, name := range []string{"DB_PORT", "WORKER_CONCURRENCY", "WORKER_LEASE", "SMTP_TLS", "MAIL_TO", "LOG_LEVEL", "WORKER_MAX_DELIVERIES"} {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// The lease is renewed while a send runs, so a send may outlast it: the
// two are independent.
func TestSMTPTimeoutsAndLease(t *testing.T) {
	c, err := LoadWorker(env(map[string]string{"SMTP_TIMEOUT": "90s", "WORKER_LEASE": "5s"}))
	if err != nil {
		t.Fatalf("SMTP_TIMEOUT longer than WORKER_LEASE: got %v, want nil", err)
	}
	if c.SMTP.Timeout != 90*time.Second || c.SMTP.DataTimeout != 10*time.Minute || c.Lease != 5*time.Second {
		t.Errorf("got timeout %s, data timeout %s, lease %s; want 90s, 10m, 5s", c.SMTP.Timeout, c.SMTP.DataTimeout, c.Lease)
	}
	_, err = LoadWorker(env(map[string]string{"SMTP_TIMEOUT": "2m", "SMTP_DATA_TIMEOUT": "1m"}))
	if err == nil || !strings.Contains(err.Error(), "SMTP_DATA_TIMEOUT:") {
		t.Errorf("SMTP_DATA_TIMEOUT shorter than SMTP_TIMEOUT: got %v, want an error naming SMTP_DATA_TIMEOUT", err)
	}
}

func TestLoadWorkerDefaults(t *testing.T) {
	c, err := LoadWorker(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.SMTP.Timeout != time.Minute || c.SMTP.DataTimeout != 10*time.Minute {
		t.Errorf("SMTP timeouts: got %s and %s, want 1m per reply and 10m for the final dot", c.SMTP.Timeout, c.SMTP.DataTimeout)
	}
	if c.Lease != 30*time.Second || c.MaxDeliveries != 5 || c.MaxAttempts != 5 {
		t.Errorf("got lease %s, max deliveries %d, max attempts %d; want 30s, 5, 5", c.Lease, c.MaxDeliveries, c.MaxAttempts)
	}
}

func TestSecretFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadAPI(env(map[string]string{"DB_PASSWORD": "ignored", "DB_PASSWORD_FILE": path, "REDIS_PASSWORD": "r"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Postgres.Password != "s3cret" || c.Redis.Password != "r" {
		t.Errorf("got %q %q, want s3cret r", c.Postgres.Password, c.Redis.Password)
	}
	if strings.Contains(c.Postgres.String(), "s3cret") {
		t.Errorf("String() leaks the password: %s", c.Postgres)
	}
	if !strings.Contains(c.Postgres.URL(), "s3cret") {
		t.Errorf("URL() lacks the password")
	}
	_, err = LoadAPI(env(map[string]string{"DB_PASSWORD_FILE": filepath.Join(t.TempDir(), "missing")}))
	if err == nil || !strings.Contains(err.Error(), "DB_PASSWORD_FILE") {
		t.Errorf("got %v, want an error naming DB_PASSWORD_FILE", err)
	}
}

// A *_FILE naming a file that holds no password (empty, or only the line
// ends the read drops) fails the configuration, naming the variable and
// the file, in every service that reads one; a password with a line end
// is read.
func TestSecretFileEmpty(t *testing.T) {
	loaders := map[string]func(func(string) string) error{
		"api":    func(g func(string) string) error { _, err := LoadAPI(g); return err },
		"worker": func(g func(string) string) error { _, err := LoadWorker(g); return err },
	}
	for _, c := range []struct{ service, variable string }{
		{"api", "REDIS_PASSWORD_FILE"},
		{"api", "DB_PASSWORD_FILE"},
		{"worker", "REDIS_PASSWORD_FILE"},
		{"worker", "DB_PASSWORD_FILE"},
		{"worker", "SMTP_PASSWORD_FILE"},
	} {
		for _, content := range []string{"", "\n", "\r\n", "\n\n"} {
			t.Run(fmt.Sprintf("%s %s %q", c.service, c.variable, content), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "pw")
				if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
				err := loaders[c.service](env(map[string]string{c.variable: path, strings.TrimSuffix(c.variable, "_FILE"): "ignored"}))
				if err == nil || !strings.Contains(err.Error(), c.variable+": "+path+" is empty") {
					t.Errorf("got %v, want an error naming %s and %s as empty", err, c.variable, path)
				}
				if err := os.WriteFile(path, []byte("pw"+content), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := loaders[c.service](env(map[string]string{c.variable: path})); err != nil {
					t.Errorf("the password %q: got %v, want nil", "pw"+content, err)
				}
			})
		}
	}
}

func TestWorkerOutcomeDelay(t *testing.T) {
	for _, c := range []struct {
		vars    map[string]string
		want    time.Duration
		wantErr bool
	}{
		{map[string]string{}, 5 * time.Millisecond, false},
		{map[string]string{"WORKER_OUTCOME_DELAY": "0"}, 0, false},
		{map[string]string{"WORKER_OUTCOME_DELAY": "100ms"}, 100 * time.Millisecond, false},
		{map[string]string{"WORKER_OUTCOME_DELAY": "101ms"}, 0, true},
		{map[string]string{"WORKER_OUTCOME_DELAY": "-1ms"}, 0, true},
		{map[string]string{"WORKER_OUTCOME_DELAY": "soon"}, 0, true},
	} {
		got, err := LoadWorker(env(c.vars))
		switch {
		case c.wantErr && (err == nil || !strings.Contains(err.Error(), "WORKER_OUTCOME_DELAY:")):
			t.Errorf("%v: got %v, want an error naming WORKER_OUTCOME_DELAY", c.vars, err)
		case !c.wantErr && (err != nil || got.OutcomeDelay != c.want):
			t.Errorf("%v: got %v, %v, want %v", c.vars, got.OutcomeDelay, err, c.want)
		}
	}
}

// Addresses, hosts and the Jaeger URL are checked when read, so a bad one
// stops the process naming its variable instead of failing later as a
// listen or dial error that names none.
func TestAddressesAndHosts(t *testing.T) {
	api := func(vars map[string]string) error { _, err := LoadAPI(env(vars)); return err }
	worker := func(vars map[string]string) error { _, err := LoadWorker(env(vars)); return err }
	for _, c := range []struct {
		load    func(map[string]string) error
		name    string
		value   string
		wantErr bool
	}{
		{api, "HTTP_ADDR", ":8080", false},
		{api, "HTTP_ADDR", "127.0.0.1:0", false},
		{api, "HTTP_ADDR", "[::1]:8081", false},
		{api, "HTTP_ADDR", "0.0.0.0:65535", false},
		{api, "HTTP_ADDR", "8080", true},
		{api, "HTTP_ADDR", "127.0.0.1:http", true},
		{api, "HTTP_ADDR", "127.0.0.1:65536", true},
		{api, "HTTP_ADDR", "127.0.0.1:-1", true},
		{api, "HTTP_ADDR", "http://127.0.0.1:8081", true},
		{api, "HTTP_ADDR", "::1:8081", true},
		{api, "INTERNAL_ADDR", ":9101", false},
		{api, "INTERNAL_ADDR", "localhost 9101", true},
		{worker, "INTERNAL_ADDR", ":9102", false},
		{worker, "INTERNAL_ADDR", "127.0.0.1:99999", true},
		{api, "REDIS_ADDR", "queue:6379", false},
		{api, "REDIS_ADDR", "redis.carteiro.internal:6379", false},
		{api, "REDIS_ADDR", "queue", true},
		{api, "REDIS_ADDR", "queue:0", true},
		{api, "REDIS_ADDR", "redis://queue:6379", true},
		{worker, "REDIS_ADDR", "que ue:6379", true},
		{api, "DB_HOST", "db", false},
		{api, "DB_HOST", "postgres.carteiro.internal", false},
		{api, "DB_HOST", "carteiro_db_1", false},
		{api, "DB_HOST", "::1", false},
		{api, "DB_HOST", "192.0.2.7", false},
		{api, "DB_HOST", "pg-a,pg-b", false},
		{worker, "DB_HOST", "pg-a.carteiro.internal,192.0.2.8,pg_c", false},
		{api, "DB_HOST", "pg-a,", true},
		{api, "DB_HOST", ",pg-b", true},
		{api, "DB_HOST", "pg-a,,pg-b", true},
		{api, "DB_HOST", "pg-a, pg-b", true},
		{api, "DB_HOST", "pg-a,::1", true},
		{api, "DB_HOST", "pg-a:5432,pg-b:5432", true},
		{api, "DB_HOST", "db:5432", true},
		{api, "DB_HOST", "/var/run/postgresql", true},
		{api, "DB_HOST", "db host", true},
		{worker, "DB_HOST", "postgres://db", true},
		{worker, "SMTP_HOST", "mail", false},
		{worker, "SMTP_HOST", "smtp.carteiro.internal", false},
		{worker, "SMTP_HOST", "mail:1025", true},
		{worker, "SMTP_HOST", "smtp://mail", true},
		{worker, "SMTP_HOST", "mail relay", true},
		{api, "JAEGER_UI_URL", "http://127.0.0.1:16686", false},
		{api, "JAEGER_UI_URL", "https://jaeger.carteiro.internal/ui/", false},
		{api, "JAEGER_UI_URL", "/jaeger", false},
		{api, "JAEGER_UI_URL", "/jaeger/", false},
		{api, "JAEGER_UI_URL", "//jaeger.carteiro.internal", true},
		{api, "JAEGER_UI_URL", "jaeger/ui", true},
		{api, "JAEGER_UI_URL", "/jae ger", true},
		{api, "JAEGER_UI_URL", "127.0.0.1:16686", true},
		{api, "JAEGER_UI_URL", "jaeger", true},
		{api, "JAEGER_UI_URL", "ftp://jaeger", true},
		{api, "JAEGER_UI_URL", "http://", true},
		{api, "JAEGER_UI_URL", "http://jae ger", true},
	} {
		err := c.load(map[string]string{c.name: c.value})
		switch {
		case c.wantErr && (err == nil || !strings.Contains(err.Error(), c.name+":")):
			t.Errorf("%s=%q: got %v, want an error naming %s", c.name, c.value, err, c.name)
		case !c.wantErr && err != nil:
			t.Errorf("%s=%q: got %v, want nil", c.name, c.value, err)
		}
	}
}

func TestAddressesAndHostsKeepTheirValues(t *testing.T) {
	a, err := LoadAPI(env(map[string]string{"HTTP_ADDR": ":8080", "INTERNAL_ADDR": "[::]:9101",
		"REDIS_ADDR": "queue:6379", "DB_HOST": "db", "JAEGER_UI_URL": "http://127.0.0.1:16686"}))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{a.HTTPAddr, a.InternalAddr, a.Redis.Addr, a.Postgres.Host, a.JaegerURL}
	want := []string{":8080", "[::]:9101", "queue:6379", "db", "http://127.0.0.1:16686"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %v, want %v", got, want)
	}
	w, err := LoadWorker(env(map[string]string{"SMTP_HOST": "mail"}))
	if err != nil || w.SMTP.Host != "mail" {
		t.Errorf("got %q %v, want mail", w.SMTP.Host, err)
	}
}

// A request whose COMMIT is in doubt may take 8 × DB_QUERY_TIMEOUT, which
// must fit the api's WriteTimeout less the second kept to reach the store
// and write the answer, (15 s − 1 s) / 8 = 1.75 s: the api refuses longer
// ones, the worker (no request waits on it) does not.
func TestQueryTimeoutFitsTheWriteTimeout(t *testing.T) {
	for _, c := range []struct {
		value   string
		want    time.Duration
		wantErr bool
	}{
		{"", 1500 * time.Millisecond, false},
		{"1750ms", 1750 * time.Millisecond, false},
		{"1751ms", 0, true},
		{"1875ms", 0, true},
		{"2s", 0, true},
		{"1m", 0, true},
	} {
		got, err := LoadAPI(env(map[string]string{"DB_QUERY_TIMEOUT": c.value}))
		switch {
		case c.wantErr && (err == nil || !strings.Contains(err.Error(), "DB_QUERY_TIMEOUT:") || !strings.Contains(err.Error(), "1.75s")):
			t.Errorf("%q: got %v, want an error naming DB_QUERY_TIMEOUT and 1.75s", c.value, err)
		case !c.wantErr && (err != nil || got.Postgres.QueryTimeout != c.want):
			t.Errorf("%q: got %v, %v, want %v", c.value, got.Postgres.QueryTimeout, err, c.want)
		}
	}
	if w, err := LoadWorker(env(map[string]string{"DB_QUERY_TIMEOUT": "5s"})); err != nil || w.Postgres.QueryTimeout != 5*time.Second {
		t.Errorf("worker: got %v, %v, want 5s", w.Postgres.QueryTimeout, err)
	}
}
