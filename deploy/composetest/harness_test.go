//go:build composetest

package composetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// composeFiles are `make up`'s files plus the test's override, relative to
// the repository root.
var composeFiles = []string{
	"docker-compose.yml",
	"docker-compose.observability.yml",
	"deploy/composetest/compose.test-override.yml",
}

// harness is one run of the stack under the engine.
type harness struct {
	root    string
	engine  *Engine
	project *Project
	topo    Topology
	events  *Events
	probe   string            // the probe image
	env     map[string]string // what compose interpolates, besides .env
	// Host ports (on 127.0.0.1; the edge on every interface).
	httpPort, mailPort, jaegerPort, promPort, alertmanagerPort string
	// message sent in the delivery step, looked for again after down/up.
	firstID string
}

func (h *harness) url(port, path string) string { return "http://127.0.0.1:" + port + path }

// need fails the test with CI=true and skips it otherwise.
func need(t *testing.T, err error, what string) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: %v (CI=true: the compose test needs it)", what, err)
	}
	t.Skipf("%s: %v (with CI=true this fails)", what, err)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repo root %s has no go.mod: %v", root, err)
	}
	return root
}

// newHarness checks the engine and the plugins, builds (or reuses) every
// image and chooses the project's name, ports and subnet.
func newHarness(t *testing.T) *harness {
	root := repoRoot(t)
	ctx := context.Background()
	_, err := exec.LookPath("docker")
	need(t, err, "docker CLI")
	binDir := os.Getenv("BIN_DIR")
	if binDir == "" {
		binDir = filepath.Join(root, "bin")
	}
	// The project's own plugins, never the user's (~/.docker).
	dockerConfig := PluginConfigDir(binDir)
	env, err := EngineEnv(ctx, os.Getenv, dockerConfig, nil)
	need(t, err, "docker CLI and configuration")
	e := &Engine{Dir: root, Env: env}
	version, err := e.ServerVersion(ctx)
	need(t, err, "Docker Engine (start dockerd; scripts/ci-deps.sh does)")
	for _, plugin := range [][]string{{"compose", "version", "--short"}, {"buildx", "version"}} {
		out, err := e.Run(ctx, plugin...)
		need(t, err, "docker "+plugin[0]+" plugin in "+dockerConfig+"/cli-plugins (make docker-tools)")
		t.Logf("docker %s: %s", plugin[0], strings.TrimSpace(out))
	}
	t.Logf("Docker Engine %s", version)
	for _, s := range []string{"db_password", "redis_password", "grafana_admin_password"} {
		_, err := os.Stat(filepath.Join(root, ".secrets", s))
		need(t, err, ".secrets/"+s+" (make secrets)")
	}

	// The stand-ins are built once, by cmd standinenv run as `make up
	// STANDINS=1` runs it, and the test runs exactly the images it prints.
	start := time.Now()
	vars := standinenvImages(t, e, root, binDir)
	opts, err := HostBuildOptions(ctx, os.Getenv, root, binDir, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	probe, err := ProbeImage(ctx, e, opts)
	need(t, err, "probe image")
	t.Logf("images: %v (built or reused)", time.Since(start).Round(time.Second))

	h := &harness{root: root, engine: e, probe: probe, env: vars}
	ports := freePorts(t, 4)
	h.httpPort, h.mailPort, h.jaegerPort, h.promPort = ports[0], ports[1], ports[2], ports[3]
	h.env["CARTEIRO_HTTP_PORT"] = h.httpPort
	h.env["CARTEIRO_MAILPIT_UI_PORT"] = h.mailPort
	h.env["CARTEIRO_JAEGER_UI_PORT"] = h.jaegerPort
	h.env["CARTEIRO_PROMETHEUS_PORT"] = h.promPort
	h.alertmanagerPort = freePorts(t, 1)[0]
	h.env["CARTEIRO_ALERTMANAGER_PORT"] = h.alertmanagerPort
	// Grafana does not start; its port only has to be a valid number.
	h.env["CARTEIRO_GRAFANA_PORT"] = freePorts(t, 1)[0]
	h.env["TELEMETRIA_BORDA_SUBNET"] = freeSubnet(t, e)

	name := "carteiro-composetest-" + randomHex(4)
	env, err = EngineEnv(ctx, os.Getenv, dockerConfig, h.env)
	need(t, err, "docker CLI and configuration")
	h.engine = &Engine{Dir: root, Env: env}
	h.project = &Project{Engine: h.engine, Dir: root, Files: composeFiles, Name: name}
	h.topo, err = LoadTopology(ctx, root, composeFiles, h.env)
	if err != nil {
		t.Fatalf("load the compose files: %v", err)
	}
	t.Logf("project %s: frontend on :%s, Mailpit 127.0.0.1:%s, Jaeger 127.0.0.1:%s, Prometheus 127.0.0.1:%s, telemetria_borda %s",
		name, h.httpPort, h.mailPort, h.jaegerPort, h.promPort, h.env["TELEMETRIA_BORDA_SUBNET"])
	for _, k := range sortedKeys(vars) {
		t.Logf("  %s=%s", k, vars[k])
	}

	watchCtx, stopWatch := context.WithCancel(context.Background())
	h.events, err = h.project.Watch(watchCtx)
	if err != nil {
		t.Fatalf("docker events: %v", err)
	}
	t.Cleanup(func() {
		stopWatch()
		h.cleanup(t)
	})
	return h
}

// cleanup removes whatever of the project is left (after a failure) and
// the images compose built for it; CARTEIRO_COMPOSE_KEEP=1 keeps a failed
// stack for a look.
func (h *harness) cleanup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if t.Failed() && os.Getenv("CARTEIRO_COMPOSE_KEEP") == "1" {
		t.Logf("CARTEIRO_COMPOSE_KEEP=1: project %s kept; remove it with: docker compose -p %s down -v", h.project.Name, h.project.Name)
		return
	}
	if t.Failed() {
		if out, err := h.project.Compose(ctx, "ps", "-a"); err == nil {
			t.Logf("compose ps:\n%s", out)
		}
		if out, err := h.project.Compose(ctx, "logs", "--no-color", "--tail", "40"); err == nil {
			t.Logf("compose logs (last 40 lines each):\n%s", out)
		}
	}
	if _, err := h.project.Compose(ctx, "down", "-v", "--remove-orphans", "--timeout", "10"); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	// The app and worker images compose built for this project (named
	// <project>-<service>); the stand-ins stay for the next run.
	out, err := h.engine.Run(ctx, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "reference="+h.project.Name+"-*")
	if err == nil && strings.TrimSpace(out) != "" {
		if _, err := h.engine.Run(ctx, append([]string{"image", "rm"}, strings.Fields(out)...)...); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
}

// standinenvImages runs cmd standinenv as `make up STANDINS=1` does (from
// the repository root, BIN_DIR set), which builds whichever stand-in is
// missing, and returns the image variables it prints: the images the test
// runs, so the stack make up STANDINS=1 starts is the one tested here but
// for the project name, the ports and the subnet. It checks that standinenv
// prints COMPOSE_PROJECT_NAME=carteiro-standins first, then one variable of
// every Standins entry and nothing else, each an image the engine has, and
// that `standinenv -base` then has nothing to build.
func standinenvImages(t *testing.T, e *Engine, root, binDir string) map[string]string {
	t.Helper()
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "standinenv")
	if err := goBuild(ctx, root, "./deploy/composetest/standinenv", bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "BIN_DIR="+binDir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if progress := strings.TrimSpace(stderr.String()); progress != "" {
		t.Log(progress)
	}
	need(t, err, "stand-in images (cmd standinenv, as make up STANDINS=1 runs it)")
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if want := "COMPOSE_PROJECT_NAME=carteiro-standins"; lines[0] != want {
		t.Fatalf("standinenv: got %q first, want %q", lines[0], want)
	}
	vars := map[string]string{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, "=")
		if !ok || v == "" {
			t.Fatalf("standinenv: got %q, want NAME=image", l)
		}
		vars[k] = v
	}
	var want []string
	for _, s := range Standins {
		want = append(want, s.Var)
	}
	slices.Sort(want)
	if got := sortedKeys(vars); len(lines) != len(want)+1 || !slices.Equal(got, want) {
		t.Fatalf("standinenv: got %q, want the project name and one image each for %q", lines, want)
	}
	for _, k := range want {
		id, err := e.ImageID(ctx, vars[k])
		if err != nil || id == "" {
			t.Fatalf("standinenv: %s=%s: got image ID %q, %v, want an image the engine has", k, vars[k], id, err)
		}
	}
	t.Logf("standinenv (make up STANDINS=1) printed the project name and the %d images the test runs", len(vars))

	// The README's root step, `sudo bin/standinenv -base`, now finds the
	// base the stand-ins were built on and builds nothing; not as root, it
	// refuses before looking.
	base := HostBase().Ref()
	cmd = exec.CommandContext(ctx, bin, "-base")
	cmd.Env = os.Environ()
	out, err = cmd.CombinedOutput()
	if os.Geteuid() == 0 {
		if want := "standinenv: image " + base + ": there already\n"; err != nil || string(out) != want {
			t.Errorf("standinenv -base as root: got %v: %q, want %q", err, out, want)
		}
	} else if err == nil || !strings.Contains(string(out), "needs root (") {
		t.Errorf("standinenv -base as uid %d: got %v: %q, want its refusal", os.Geteuid(), err, out)
	}
	return vars
}

// freePorts returns n distinct TCP ports that are free on every interface
// right now (the stack binds them moments later).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", ":0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		_, port, _ := net.SplitHostPort(l.Addr().String())
		ports = append(ports, port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// freeSubnet picks a /24 in 10.213.0.0/16 that overlaps no network of the
// engine and no network of this machine's interfaces. Docker's default address pools are
// 172.17-31.0.0/16 and 192.168.0.0/16, so the project's other networks never
// land in it either.
func freeSubnet(t *testing.T, e *Engine) string {
	t.Helper()
	ctx := context.Background()
	var used []netip.Prefix
	out, err := e.Run(ctx, "network", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	if ids := strings.Fields(out); len(ids) > 0 {
		out, err := e.Run(ctx, append([]string{"network", "inspect", "--format", "{{range .IPAM.Config}}{{.Subnet}} {{end}}"}, ids...)...)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(s); err == nil {
				used = append(used, p)
			}
		}
	}
	// The machine's own networks (docker0 and the bridges included).
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil {
			used = append(used, p.Masked())
		}
	}
	for range 256 {
		n, _ := rand.Int(rand.Reader, big.NewInt(256))
		candidate := netip.MustParsePrefix(fmt.Sprintf("10.213.%d.0/24", n.Int64()))
		free := true
		for _, u := range used {
			free = free && !u.Overlaps(candidate)
		}
		if free {
			return candidate.String()
		}
	}
	t.Fatal("no free /24 in 10.213.0.0/16")
	return ""
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

var client = &http.Client{Timeout: 15 * time.Second}

// getJSON GETs url and decodes a 200 answer into v; it returns the status.
func getJSON(url string, v any) (int, error) {
	res, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		io.Copy(io.Discard, res.Body)
		return res.StatusCode, nil
	}
	return res.StatusCode, json.NewDecoder(res.Body).Decode(v)
}

// waitUntil polls cond every half second until it holds or ctx ends (a
// guard against a hang, not a limit the test asserts).
func waitUntil(ctx context.Context, what string, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: gave up (%v); last error: %v", what, ctx.Err(), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}
