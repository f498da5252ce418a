package deploy

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/carteiro/carteiro/internal/devstack"
	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// renderNginx renders nginx/ as make dev does (package devstack) with the
// stack's knobs vars, in DEV_DIR dev (a new folder when ""), and returns
// the native nginx it rendered.
func renderNginx(t *testing.T, dev string, vars ...string) devstack.NginxConfig {
	t.Helper()
	if dev == "" {
		dev = t.TempDir()
	}
	c, err := devstack.Load(repoRoot(t), append(vars, "DEV_DIR="+dev))
	if err != nil {
		t.Fatal(err)
	}
	n, err := c.NginxConfig()
	if err != nil {
		t.Fatalf("nginx %v: %v", vars, err)
	}
	if err := n.Render(); err != nil {
		t.Fatalf("render nginx %v: %v", vars, err)
	}
	return n
}

// renderedConfs maps each rendered *.conf (relative path) to its content.
func renderedConfs(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".conf") {
			return err
		}
		b, err := os.ReadFile(path)
		rel, _ := filepath.Rel(dir, path)
		files[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestNginxTracingFlavours: NGINX_TRACING=native and =otel render the same
// tree, and the rendered configurations differ in exactly one line: the
// include of snippets/tracing-<flavour>.conf.
func TestNginxTracingFlavours(t *testing.T) {
	// Same DEV_DIR (run dir and logs) for both, so only the flavour differs.
	dev := t.TempDir()
	native := renderedConfs(t, renderNginx(t, dev, "NGINX_TRACING=native").Dir)
	otel := renderedConfs(t, renderNginx(t, dev, "NGINX_TRACING=otel").Dir)
	if g, w := sortedKeys(otel), sortedKeys(native); !slices.Equal(g, w) {
		t.Fatalf("rendered files: got %v with otel, want %v as with native", g, w)
	}
	for _, name := range sortedKeys(native) {
		if name == "nginx.conf" || bytes.Equal(native[name], otel[name]) {
			continue
		}
		t.Errorf("%s: got different content for native and otel, want the same", name)
	}
	a := strings.Split(string(native["nginx.conf"]), "\n")
	b := strings.Split(string(otel["nginx.conf"]), "\n")
	if len(a) != len(b) {
		t.Fatalf("nginx.conf: got %d lines with native, %d with otel, want the same", len(a), len(b))
	}
	var diff []string
	for i := range a {
		if a[i] != b[i] {
			diff = append(diff, strings.TrimSpace(a[i])+" | "+strings.TrimSpace(b[i]))
		}
	}
	want := []string{"include snippets/tracing-native.conf; | include snippets/tracing-otel.conf;"}
	if !slices.Equal(diff, want) {
		t.Errorf("nginx.conf native vs otel: got differing lines %q, want %q", diff, want)
	}
	// The otel flavour starts every trace (a caller's traceparent is
	// replaced: the api joins nginx's) and logs trace ids; the native one
	// only passes the caller's traceparent on (the api links it).
	for _, want := range []string{"otel_exporter", "otel_trace_context inject;", "$otel_trace_id", "otel_service_name carteiro-frontend;"} {
		if !bytes.Contains(otel["snippets/tracing-otel.conf"], []byte(want)) {
			t.Errorf("snippets/tracing-otel.conf: got no %q, want it", want)
		}
	}
	if bytes.Contains(native["snippets/tracing-native.conf"], []byte("otel_")) {
		t.Errorf("snippets/tracing-native.conf: got otel_ directives, want none (Debian's nginx has no otel module)")
	}
}

func nginxBin(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	if _, err := os.Stat("/usr/sbin/nginx"); err == nil {
		return "/usr/sbin/nginx"
	}
	testenv.Missing(t, "nginx (Debian package nginx)")
	return ""
}

// startNginx renders the config with vars and runs nginx in the foreground
// until the test ends; it returns when the status listener accepts.
func startNginx(t *testing.T, status string, vars ...string) {
	t.Helper()
	runNginx(t, renderNginx(t, "", vars...), status)
}

// runNginx runs the rendered n in the foreground until the test ends; it
// returns when addr accepts.
func runNginx(t *testing.T, n devstack.NginxConfig, addr string) {
	t.Helper()
	bin := nginxBin(t)
	dir := n.Dir
	cmd := exec.Command(bin, n.Args()...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGQUIT)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			t.Fatalf("nginx exited: %s\n%s", stderr.String(), log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx listener %s: not accepting after 5s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second}
	res, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestNginxStatusListener: stub_status answers on its own listener to the
// allowed address only, and not on the public listener.
func TestNginxStatusListener(t *testing.T) {
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }
	for _, c := range []struct {
		allow string
		want  int
	}{
		{"127.0.0.1", http.StatusOK},
		{"127.0.0.2", http.StatusForbidden}, // we connect from 127.0.0.1
	} {
		t.Run("allow "+c.allow, func(t *testing.T) {
			public, status := addr(), addr()
			startNginx(t, status, "NGINX_LISTEN="+public, "NGINX_STATUS_ADDR="+status,
				"NGINX_STATUS_ALLOW="+c.allow, "API_HTTP_ADDR="+addr())
			code, body := get(t, "http://"+status+"/nginx-status")
			if code != c.want {
				t.Errorf("GET %s/nginx-status allowing %s: got %d, want %d", status, c.allow, code, c.want)
			}
			if c.want == http.StatusOK && !strings.Contains(body, "Active connections:") {
				t.Errorf("GET %s/nginx-status: got %q, want stub_status output", status, body)
			}
			if code, _ := get(t, "http://"+status+"/"); code != http.StatusNotFound {
				t.Errorf("GET %s/: got %d, want 404 (the status listener serves nothing else)", status, code)
			}
			if code, _ := get(t, "http://"+public+"/nginx-status"); code != http.StatusNotFound {
				t.Errorf("GET %s/nginx-status on the public listener: got %d, want 404", public, code)
			}
		})
	}
}

// TestTraceContextTrust: the api joins an incoming trace context
// (INCOMING_TRACE_CONTEXT=join) only where nginx starts every trace itself
// (NGINX_TRACING=otel, whose snippet injects nginx's own context); where
// nginx passes a client's traceparent on, the api links it (the default).
func TestTraceContextTrust(t *testing.T) {
	for label, files := range map[string][]string{
		"base":                     {baseFile},
		"base+observability":       {baseFile, observabilityFile},
		"compose test (stand-ins)": {baseFile, observabilityFile, "deploy/composetest/compose.test-override.yml"},
	} {
		p := loadProject(t, files...)
		tracing, _ := envValue(p.Services["frontend"], "NGINX_TRACING")
		incoming, _ := envValue(p.Services["app"], "INCOMING_TRACE_CONTEXT")
		if join := incoming == "join"; join != (tracing == "otel") {
			t.Errorf("%s: app INCOMING_TRACE_CONTEXT=%q with frontend NGINX_TRACING=%q: want join exactly when nginx starts the traces (otel)", label, incoming, tracing)
		}
	}
}

// TestNginxOwnErrors: the error answers nginx gives by itself that no
// stack test can provoke (this configuration never answers 500 or 503 on
// its own) follow the contract too: a test-only server includes
// snippets/errors.conf beside the rendered configuration and returns them.
func TestNginxOwnErrors(t *testing.T) {
	addr := func() string { return "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)) }
	public, status, extra := addr(), addr(), addr()
	n := renderNginx(t, "", "NGINX_LISTEN="+public, "NGINX_STATUS_ADDR="+status, "API_HTTP_ADDR="+addr())
	server := fmt.Sprintf(`server {
    listen %s;
    root %s;
    include snippets/errors.conf;
    location = /500 { return 500; }
    location = /503 { return 503; }
}
`, extra, n.Vars["WEB_ROOT"])
	if err := os.WriteFile(filepath.Join(n.Dir, "conf.d", "zz-test-errors.conf"), []byte(server), 0o644); err != nil {
		t.Fatal(err)
	}
	runNginx(t, n, extra)
	for _, c := range []struct {
		path, accept, wantType, wantBody, retryAfter string
		code                                         int
	}{
		{"/503", "application/json", "application/json", `"error":"the service is unavailable`, "5", 503},
		{"/503", "text/html", "text/html; charset=utf-8", `<html lang="pt-BR">`, "5", 503},
		{"/500", "", "application/json", `{"error":"internal error"}`, "", 500},
		{"/500", "text/html", "text/html; charset=utf-8", "Serviço temporariamente indisponível", "", 500},
	} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+extra+c.path, nil)
		if c.accept != "" {
			req.Header.Set("Accept", c.accept)
		}
		res, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != c.code || res.Header.Get("Content-Type") != c.wantType || !strings.Contains(string(b), c.wantBody) {
			t.Errorf("GET %s (Accept %q): got %d %q %.200q, want %d %q containing %q", c.path, c.accept,
				res.StatusCode, res.Header.Get("Content-Type"), b, c.code, c.wantType, c.wantBody)
		}
		if got := res.Header.Get("Retry-After"); got != c.retryAfter {
			t.Errorf("GET %s (Accept %q): Retry-After %q, want %q", c.path, c.accept, got, c.retryAfter)
		}
		if res.Header.Get("Cache-Control") != "no-store" || res.Header.Get("X-Request-Id") == "" || res.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s (Accept %q): headers %v, want no-store, X-Request-Id and the security headers", c.path, c.accept, res.Header)
		}
	}
}

// nginx waits for the api's answer as long as the api has to give it
// (config.WriteTimeout, which bounds DB_QUERY_TIMEOUT): a shorter
// proxy_read_timeout would answer 504 while a request whose COMMIT is in
// doubt still learns its outcome.
func TestNginxWaitsForTheAPIsWriteTimeout(t *testing.T) {
	for _, directive := range []string{"proxy_read_timeout", "proxy_send_timeout"} {
		if got := nginxDuration(t, directive); got != config.WriteTimeout {
			t.Errorf("%s: got %s, want %s (the api's WriteTimeout)", directive, got, config.WriteTimeout)
		}
	}
}

// nginxDuration is the time directive is set to in the proxy to the api
// (nginx/snippets/proxy-api.conf.template, a line of its own; nginx's
// units s and ms, as Go writes them); a directive not set or not a
// duration fails t.
func nginxDuration(t *testing.T, directive string) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "nginx", "snippets", "proxy-api.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(directive) + `\s+(\S+);`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: not set in proxy-api.conf.template", directive)
	}
	d, err := time.ParseDuration(string(m[1]))
	if err != nil {
		t.Fatalf("%s %s: %v", directive, m[1], err)
	}
	return d
}
