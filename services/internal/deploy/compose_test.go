package deploy

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/carteiro/carteiro/internal/devstack"
)

const (
	baseFile          = "docker-compose.yml"
	observabilityFile = "docker-compose.observability.yml"
	dockerfilePath    = "services/Dockerfile"
)

// Documented deviations from the hardening rules. Each entry names the service
// and why the rule cannot hold for it. Today every service keeps every rule;
// add an entry here (never a silent skip) when one cannot.
var (
	// service -> reason it needs a writable root filesystem.
	readOnlyExceptions = map[string]string{}
	// service -> reason it must run as root (image cannot run unprivileged).
	rootUserExceptions = map[string]string{}
	// service -> capabilities it may add back after `cap_drop: [ALL]`, and why.
	capAddExceptions = map[string]struct {
		caps   []string
		reason string
	}{}
	// service -> why it has no healthcheck. Nothing may wait for such a
	// service with `condition: service_healthy`; what needs it waits for
	// `service_started` (TestDependsOnHealthy).
	healthcheckExceptions = map[string]string{
		"nginx-exporter": "the image is scratch plus one static binary: no shell, no HTTP client " +
			"and no self-check flag to run a healthcheck with; Prometheus watches it " +
			"(up{job=\"nginx\"}, nginx_up)",
		"k6": "a one-shot load test (profile load, `docker compose run`): it serves nothing " +
			"to probe, exits with the test's verdict, and nothing waits for it",
		"db-monitor-role": "a one-shot job (psql creates postgres_exporter's role and exits): " +
			"postgres-exporter waits for it to complete successfully",
		"otelcol": "the official contrib image is scratch plus the collector: no shell, no HTTP " +
			"client to ask its health_check extension, no self-check flag; Prometheus watches it " +
			"(up{job=\"otelcol\"}); frontend waits for it to start (its name to resolve)",
	}
	// oneShotJobs are the services that run to completion at `up`; what
	// needs them waits for service_completed_successfully.
	oneShotJobs = map[string]bool{"db-monitor-role": true}
)

// observabilityServices are the services the observability overlay adds.
// k6 is in the `load` profile; the tests load every profile.
var observabilityServices = []string{"alertmanager", "db-monitor-role", "grafana", "jaeger", "k6",
	"nginx-exporter", "otelcol", "postgres-exporter", "prometheus", "redis-exporter"}

// repoRoot is the repository root, found from this file's location so the
// test does not depend on the directory `go test` runs in.
func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("runtime.Caller failed")
	}
	root := filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repo root %s has no go.mod: %v", root, err)
	}
	return root
}

// loadProject loads the given compose files the way `docker compose` does:
// the repository root is the project directory and its .env feeds
// interpolation. The process environment is deliberately not used, so a
// variable exported in the shell cannot make the test pass or fail.
// Secret files (./.secrets/*) need not exist: the loader only records paths.
// Every profile is active ("*"): a service that `up` leaves out (k6, profile
// load) keeps the same rules.
func loadProject(t *testing.T, files ...string) *types.Project {
	t.Helper()
	root := repoRoot(t)
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join(root, f)
	}
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(root),
		cli.WithEnvFiles(filepath.Join(root, ".env")),
		cli.WithDotEnv,
		cli.WithProfiles([]string{"*"}),
	)
	if err != nil {
		t.Fatalf("NewProjectOptions(%v): %v", files, err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("LoadProject(%v): %v", files, err)
	}
	return project
}

var (
	projectsMu   sync.Mutex
	projectsMemo map[string]*types.Project
)

// projects returns the base deployment and the base plus the observability
// overlay, keyed by a label used in subtest names. The generic rules must
// hold for both.
func projects(t *testing.T) map[string]*types.Project {
	t.Helper()
	projectsMu.Lock()
	defer projectsMu.Unlock()
	if projectsMemo == nil {
		projectsMemo = map[string]*types.Project{
			"base":               loadProject(t, baseFile),
			"base+observability": loadProject(t, baseFile, observabilityFile),
		}
	}
	return projectsMemo
}

func sortedServiceNames(p *types.Project) []string {
	names := make([]string, 0, len(p.Services))
	for name := range p.Services {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func envValue(svc types.ServiceConfig, key string) (string, bool) {
	v, ok := svc.Environment[key]
	if !ok || v == nil {
		return "", ok
	}
	return *v, true
}

func TestServiceSet(t *testing.T) {
	core := []string{"app", "db", "frontend", "mail", "queue", "worker"}
	for label, p := range projects(t) {
		t.Run(label, func(t *testing.T) {
			want := core
			if label == "base+observability" {
				want = append(slices.Clone(core), observabilityServices...)
				sort.Strings(want)
			}
			if got := sortedServiceNames(p); !slices.Equal(got, want) {
				t.Errorf("services: got %v, want %v", got, want)
			}
			if p.Name != "carteiro" {
				t.Errorf("project name: got %v, want %v", p.Name, "carteiro")
			}
		})
	}
}

type publishedPort struct {
	hostIP    string
	published string
	target    uint32
}

func TestPublishedPorts(t *testing.T) {
	// Every service not listed here must publish nothing.
	want := map[string][]publishedPort{
		// The edge: all interfaces, on purpose.
		"frontend": {{hostIP: "", published: "8080", target: 8080}},
		// Development UI: loopback only.
		"mail": {{hostIP: "127.0.0.1", published: "8025", target: 8025}},
	}
	// The overlay's development UIs: loopback only, like Mailpit's.
	wantObservability := map[string][]publishedPort{
		"jaeger":       {{hostIP: "127.0.0.1", published: "16686", target: 16686}},
		"prometheus":   {{hostIP: "127.0.0.1", published: "9090", target: 9090}},
		"grafana":      {{hostIP: "127.0.0.1", published: "3000", target: 3000}},
		"alertmanager": {{hostIP: "127.0.0.1", published: "9093", target: 9093}},
	}
	for label, p := range projects(t) {
		for _, name := range sortedServiceNames(p) {
			svc := p.Services[name]
			t.Run(label+"/"+name, func(t *testing.T) {
				want := want
				if label == "base+observability" {
					want = maps.Clone(want)
					maps.Copy(want, wantObservability)
				}
				var got []publishedPort
				for _, port := range svc.Ports {
					hostIP := port.HostIP
					if hostIP == "0.0.0.0" {
						hostIP = "" // same meaning: every interface
					}
					got = append(got, publishedPort{hostIP: hostIP, published: port.Published, target: port.Target})
				}
				if !slices.Equal(got, want[name]) {
					t.Errorf("published ports: got %v, want %v", got, want[name])
				}
				if len(svc.Expose) > 0 && (name == "db" || name == "queue") {
					// expose only documents ports, but keep the backing services bare.
					t.Errorf("expose: got %v, want %v", svc.Expose, []string{})
				}
			})
		}
	}
}

func TestNetworks(t *testing.T) {
	p := loadProject(t, baseFile)

	wantInternal := map[string]bool{
		"banco":   true,
		"fila":    true,
		"smtp":    true,
		"web":     false, // the edge
		"mail_ui": false, // only carries Mailpit's 127.0.0.1-published UI
	}
	if got, want := sortedKeys(p.Networks), sortedKeys(wantInternal); !slices.Equal(got, want) {
		t.Errorf("networks: got %v, want %v", got, want)
	}
	for name, internal := range wantInternal {
		t.Run("network/"+name, func(t *testing.T) {
			n, ok := p.Networks[name]
			if !ok {
				t.Fatalf("network %s: got missing, want defined", name)
			}
			if n.Internal != internal {
				t.Errorf("network %s internal: got %v, want %v", name, n.Internal, internal)
			}
		})
	}

	wantAttached := map[string][]string{
		"db":       {"banco"},
		"queue":    {"fila"},
		"app":      {"banco", "fila", "web"},
		"worker":   {"banco", "fila", "smtp"}, // banco: it writes message status
		"frontend": {"web"},
		"mail":     {"mail_ui", "smtp"},
	}
	for _, name := range sortedServiceNames(p) {
		svc := p.Services[name]
		t.Run("service/"+name, func(t *testing.T) {
			if got := sortedKeys(svc.Networks); !slices.Equal(got, wantAttached[name]) {
				t.Errorf("networks of %s: got %v, want %v", name, got, wantAttached[name])
			}
			if svc.NetworkMode != "" {
				t.Errorf("network_mode of %s: got %v, want %v", name, svc.NetworkMode, "")
			}
		})
	}

	// The backing services must be unreachable from outside, whatever the
	// table above says: every network they join is internal.
	for _, name := range []string{"db", "queue"} {
		for net := range p.Services[name].Networks {
			if !p.Networks[net].Internal {
				t.Errorf("%s on network %s: got internal=%v, want internal=%v", name, net, false, true)
			}
		}
	}
}

var (
	digestRe  = regexp.MustCompile(`@sha256:[0-9a-f]{64}$`)
	versionRe = regexp.MustCompile(`[0-9]+\.[0-9]+`)
)

// pinned reports whether an image reference names one exact image: either a
// digest, or a tag that is not `latest` and carries a version number with at
// least a minor part (`postgres:17` or `redis:7-alpine` follow every release
// of a major line, so they do not count).
func pinned(ref string) bool {
	if ref == "" || strings.Contains(ref, "$") {
		return false
	}
	if digestRe.MatchString(ref) {
		return true
	}
	name := ref[strings.LastIndex(ref, "/")+1:]
	i := strings.LastIndex(name, ":")
	if i < 0 {
		return false // no tag means latest
	}
	tag := name[i+1:]
	return !strings.Contains(tag, "latest") && versionRe.MatchString(tag)
}

func TestPinnedHelper(t *testing.T) {
	cases := []struct {
		ref  string
		want bool
	}{
		{"postgres:17.11-alpine", true},
		{"axllent/mailpit:v1.29.7", true},
		{"gcr.io/distroless/static-debian12:nonroot@sha256:" + strings.Repeat("ab", 32), true},
		{"localhost:5000/img:1.2", true},
		{"postgres", false},
		{"postgres:latest", false},
		{"postgres:alpine", false},
		{"postgres:17-alpine", false},
		{"redis:7", false},
		{"gcr.io/distroless/static-debian12:nonroot", false},
		{"localhost:5000/img", false},
		{"${POSTGRES_IMAGE}", false},
		{"", false},
	}
	for _, c := range cases {
		if got := pinned(c.ref); got != c.want {
			t.Errorf("pinned(%q): got %v, want %v", c.ref, got, c.want)
		}
	}
}

// builtServices maps each compose service built from services/Dockerfile to
// the Go service (SERVICE build arg, build target, binary) it runs.
var builtServices = map[string]string{"app": "api", "worker": "worker"}

func TestImagesPinned(t *testing.T) {
	for label, p := range projects(t) {
		for _, name := range sortedServiceNames(p) {
			svc := p.Services[name]
			t.Run(label+"/"+name, func(t *testing.T) {
				if svc.Build == nil {
					if !pinned(svc.Image) {
						t.Errorf("image of %s: got %q, want a pinned tag or digest", name, svc.Image)
					}
					return
				}
				for _, arg := range []string{"GO_IMAGE", "RUNTIME_IMAGE"} {
					v := svc.Build.Args[arg]
					got := "<unset>"
					if v != nil {
						got = *v
					}
					if v == nil || !pinned(*v) {
						t.Errorf("build arg %s of %s: got %q, want a pinned tag or digest", arg, name, got)
					}
				}
				if svc.Build.Dockerfile != dockerfilePath {
					t.Errorf("dockerfile of %s: got %v, want %v", name, svc.Build.Dockerfile, dockerfilePath)
				}
				if svc.Build.Context != repoRoot(t) {
					t.Errorf("build context of %s: got %v, want %v", name, svc.Build.Context, repoRoot(t))
				}
				got := "<unset>"
				if v := svc.Build.Args["SERVICE"]; v != nil {
					got = *v
				}
				if want := builtServices[name]; got != want || svc.Build.Target != want {
					t.Errorf("build arg SERVICE / target of %s: got %v / %v, want %v / %v", name, got, svc.Build.Target, want, want)
				}
			})
		}
	}
}

// dockerfile is services/Dockerfile with continuation lines joined.
type dockerfile struct {
	lines []string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), dockerfilePath))
	if err != nil {
		t.Fatalf("open %s: %v", dockerfilePath, err)
	}
	defer f.Close()
	var (
		d       dockerfile
		pending strings.Builder
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending.WriteString(strings.TrimSuffix(line, `\`) + " ")
			continue
		}
		pending.WriteString(line)
		d.lines = append(d.lines, pending.String())
		pending.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", dockerfilePath, err)
	}
	return d
}

// stage returns the instructions of the stage named name (`FROM ... AS name`).
func (d dockerfile) stage(name string) []string {
	var (
		out []string
		in  bool
	)
	for _, l := range d.lines {
		fields := strings.Fields(l)
		if strings.EqualFold(fields[0], "FROM") {
			in = len(fields) >= 4 && strings.EqualFold(fields[2], "AS") && fields[3] == name
			continue
		}
		if in {
			out = append(out, l)
		}
	}
	return out
}

func (d dockerfile) globalArgs() map[string]string {
	args := map[string]string{}
	for _, l := range d.lines {
		fields := strings.Fields(l)
		if strings.EqualFold(fields[0], "FROM") {
			break
		}
		if strings.EqualFold(fields[0], "ARG") && len(fields) == 2 {
			k, v, _ := strings.Cut(fields[1], "=")
			args[k] = v
		}
	}
	return args
}

func readDotEnv(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), ".env"))
	if err != nil {
		t.Fatalf("read .env: %v", err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		env[k] = v
	}
	return env
}

func TestDotEnv(t *testing.T) {
	env := readDotEnv(t)
	if got := env["COMPOSE_PROJECT_NAME"]; got != "carteiro" {
		t.Errorf("COMPOSE_PROJECT_NAME: got %v, want %v", got, "carteiro")
	}
	for _, k := range sortedKeys(env) {
		if strings.HasSuffix(k, "_IMAGE") && !pinned(env[k]) {
			t.Errorf(".env %s: got %q, want a pinned tag or digest", k, env[k])
		}
		if regexp.MustCompile(`(?i)PASSWORD|SECRET|TOKEN`).MatchString(k) {
			t.Errorf(".env key %s: got a secret, want secrets only under ./.secrets/", k)
		}
	}
}

func TestDockerfile(t *testing.T) {
	d := readDockerfile(t)
	env := readDotEnv(t)

	// The bare `docker build` defaults must be the same pinned images as .env.
	args := d.globalArgs()
	for _, k := range []string{"GO_IMAGE", "RUNTIME_IMAGE"} {
		if args[k] != env[k] {
			t.Errorf("Dockerfile ARG %s default: got %q, want %q (as in .env)", k, args[k], env[k])
		}
		if !pinned(args[k]) {
			t.Errorf("Dockerfile ARG %s default: got %q, want a pinned tag or digest", k, args[k])
		}
	}

	build := strings.Join(d.stage("build"), "\n")
	for _, want := range []string{
		"ARG SERVICE",
		"CGO_ENABLED=0",
		"-trimpath",
		"-ldflags='-s -w'",
		"--mount=type=cache,target=/go/pkg/mod",
		`./services/${SERVICE}`,
	} {
		if !strings.Contains(build, want) {
			t.Errorf("build stage: got no %q, want it present", want)
		}
	}

	p := loadProject(t, baseFile)
	for _, name := range sortedServiceNames(p) {
		svc := p.Services[name]
		if svc.Build == nil {
			continue
		}
		t.Run(name, func(t *testing.T) {
			target := svc.Build.Target
			stage := d.stage(target)
			if len(stage) == 0 {
				t.Fatalf("Dockerfile stage %q: got none, want one", target)
			}
			text := strings.Join(stage, "\n")
			if !strings.Contains(text, "USER nonroot:nonroot") {
				t.Errorf("stage %s USER: got %v, want %v", target, stage, "USER nonroot:nonroot")
			}
			entry := `ENTRYPOINT ["/` + target + `"]`
			if !strings.Contains(text, entry) {
				t.Errorf("stage %s: got %v, want %v", target, stage, entry)
			}
			// The healthcheck runs the binary the image actually contains.
			if svc.HealthCheck == nil {
				t.Fatalf("healthcheck of %s: got nil, want [CMD /%s healthcheck]", name, target)
			}
			want := types.HealthCheckTest{"CMD", "/" + target, "healthcheck"}
			if !slices.Equal(svc.HealthCheck.Test, want) {
				t.Errorf("healthcheck of %s: got %v, want %v", name, svc.HealthCheck.Test, want)
			}
		})
	}
}

func TestHardening(t *testing.T) {
	for label, p := range projects(t) {
		for _, name := range sortedServiceNames(p) {
			svc := p.Services[name]
			t.Run(label+"/"+name, func(t *testing.T) {
				if !slices.Contains(svc.CapDrop, "ALL") {
					t.Errorf("cap_drop: got %v, want %v", svc.CapDrop, []string{"ALL"})
				}
				wantCapAdd := capAddExceptions[name].caps
				if !slices.Equal(svc.CapAdd, wantCapAdd) {
					t.Errorf("cap_add: got %v, want %v", svc.CapAdd, wantCapAdd)
				}
				if svc.Privileged {
					t.Errorf("privileged: got %v, want %v", svc.Privileged, false)
				}
				if !slices.Contains(svc.SecurityOpt, "no-new-privileges:true") {
					t.Errorf("security_opt: got %v, want it to contain %v", svc.SecurityOpt, "no-new-privileges:true")
				}
				if _, excused := readOnlyExceptions[name]; !excused && !svc.ReadOnly {
					t.Errorf("read_only: got %v, want %v", svc.ReadOnly, true)
				}
				if _, excused := rootUserExceptions[name]; !excused {
					user, _, _ := strings.Cut(svc.User, ":")
					if user == "" || user == "root" || user == "0" {
						t.Errorf("user: got %q, want a non-root user", svc.User)
					}
				}
				hc := svc.HealthCheck
				_, noHealthcheck := healthcheckExceptions[name]
				switch {
				case noHealthcheck:
					if hc != nil && !hc.Disable {
						t.Errorf("healthcheck: got %v, want none (listed in healthcheckExceptions: remove the entry)", hc.Test)
					}
				case hc == nil:
					t.Errorf("healthcheck: got %v, want one", nil)
				case hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE":
					t.Errorf("healthcheck: got %v (disable=%v), want an active test", hc.Test, hc.Disable)
				}
				for _, mode := range []string{svc.Pid, svc.Ipc, svc.NetworkMode, svc.UserNSMode} {
					if mode == "host" {
						t.Errorf("host namespace: got %v, want none", mode)
					}
				}
				for _, v := range svc.Volumes {
					if strings.HasSuffix(v.Source, "docker.sock") {
						t.Errorf("volume: got %v, want no Docker socket", v.Source)
					}
					// Code and config from the repository are mounted read-only.
					if v.Type == types.VolumeTypeBind && !v.ReadOnly {
						t.Errorf("bind mount %s: got read_only=%v, want read_only=%v", v.Source, v.ReadOnly, true)
					}
				}
			})
		}
	}
}

func TestNoTrustAuth(t *testing.T) {
	trust := regexp.MustCompile(`(?i)\btrust\b`)
	for label, p := range projects(t) {
		for _, name := range sortedServiceNames(p) {
			svc := p.Services[name]
			t.Run(label+"/"+name, func(t *testing.T) {
				if _, ok := svc.Environment["POSTGRES_HOST_AUTH_METHOD"]; ok {
					got, _ := envValue(svc, "POSTGRES_HOST_AUTH_METHOD")
					t.Errorf("POSTGRES_HOST_AUTH_METHOD: got %q, want unset", got)
				}
				for _, k := range sortedKeys(svc.Environment) {
					if v, _ := envValue(svc, k); trust.MatchString(v) {
						t.Errorf("env %s: got %q, want no trust authentication", k, v)
					}
				}
				for _, arg := range svc.Command {
					if trust.MatchString(arg) {
						t.Errorf("command: got %q, want no trust authentication", arg)
					}
				}
			})
		}
	}
	db := loadProject(t, baseFile).Services["db"]
	args, _ := envValue(db, "POSTGRES_INITDB_ARGS")
	for _, want := range []string{"--auth-host=scram-sha-256", "--auth-local=scram-sha-256"} {
		if !strings.Contains(args, want) {
			t.Errorf("db POSTGRES_INITDB_ARGS: got %q, want it to contain %q", args, want)
		}
	}
}

func TestSecretsAreFiles(t *testing.T) {
	sensitive := regexp.MustCompile(`(?i)PASS|SECRET|TOKEN|CREDENTIAL|_KEY$|_AUTH$`)
	for label, p := range projects(t) {
		t.Run(label, func(t *testing.T) {
			wantSecrets := []string{"db_password", "redis_password"}
			if label == "base+observability" {
				// Grafana's admin password and the exporters' logins
				// (`make secrets` writes them too).
				wantSecrets = []string{"db_password", "grafana_admin_password", "pg_exporter_password",
					"redis_exporter_password", "redis_password"}
			}
			if got := sortedKeys(p.Secrets); !slices.Equal(got, wantSecrets) {
				t.Errorf("secrets: got %v, want %v", got, wantSecrets)
			}
			for name, s := range p.Secrets {
				wantFile := filepath.Join(repoRoot(t), ".secrets", name)
				if s.File != wantFile || s.Environment != "" || s.Content != "" || bool(s.External) {
					t.Errorf("secret %s: got file=%q env=%q content-set=%v external=%v, want file=%q",
						name, s.File, s.Environment, s.Content != "", s.External, wantFile)
				}
			}
		})
		for _, name := range sortedServiceNames(p) {
			svc := p.Services[name]
			t.Run(label+"/"+name, func(t *testing.T) {
				mounted := map[string]bool{}
				for _, s := range svc.Secrets {
					mounted[s.Source] = true
				}
				for _, k := range sortedKeys(svc.Environment) {
					if !sensitive.MatchString(k) {
						continue
					}
					v, _ := envValue(svc, k)
					if !strings.HasSuffix(k, "_FILE") {
						t.Errorf("env %s: got %q inline, want %s_FILE pointing at a compose secret", k, v, k)
						continue
					}
					secret, ok := strings.CutPrefix(v, "/run/secrets/")
					if !ok {
						t.Errorf("env %s: got %q, want a path under /run/secrets/", k, v)
						continue
					}
					if !mounted[secret] {
						t.Errorf("env %s -> secret %s: got mounted=%v, want mounted=%v", k, secret, false, true)
					}
				}
			})
		}
	}
}

// The queue's command (sh -c) in both compose files: each password is
// read from its secret into a shell variable, every byte written as \xHH
// (od, tr and sed, busybox's too), which Redis' config syntax decodes inside
// double quotes (sdssplitargs), so no quote, backslash, newline or CR in a
// secret can end the line; trailing CRs and newlines are dropped, as the
// services drop them (config's secret). The result goes to redis-server as
// configuration on its standard input (`redis-server -`, a here-document),
// never as an argument. A password that is empty after that stops the
// command with an error naming its secret (requirepass "" would turn
// authentication off). The overlay adds the exporter's three lines.
const (
	queuePasswordLine      = `password=$(od -An -v -tx1 /run/secrets/redis_password | tr -d ' \n' | sed -e 's/../\\x&/g' -e 's/\(\\x0[ad]\)*$//') &&`
	queuePasswordCheckLine = `[ -n "$password" ] || { echo 'queue: /run/secrets/redis_password is empty: it must hold the password' >&2; exit 1; }`
	queueExporterLine      = `exporter=$(od -An -v -tx1 /run/secrets/redis_exporter_password | tr -d ' \n' | sed -e 's/../\\x&/g' -e 's/\(\\x0[ad]\)*$//') &&`
	queueExporterCheckLine = `[ -n "$exporter" ] || { echo 'queue: /run/secrets/redis_exporter_password is empty: it must hold the password' >&2; exit 1; }`
	queueRequirepassLine   = `requirepass "$password"`
	// queueHealthLine follows queuePasswordLine in the healthcheck: AUTH
	// with the same \xHH encoding, which redis-cli decodes inside double
	// quotes as Redis' configuration does, on redis-cli's standard input.
	queueHealthLine = `printf 'AUTH "%s"\nPING\n' "$password" | redis-cli -h 127.0.0.1 | grep -qx PONG`
	queueUserPrefix = `user carteiro-exporter on ">$exporter" `
)

// queueScript is the queue's sh -c script in p.
func queueScript(t *testing.T, p *types.Project) string {
	t.Helper()
	cmd := p.Services["queue"].Command
	if len(cmd) != 3 || cmd[0] != "sh" || cmd[1] != "-c" {
		t.Fatalf("queue command: got %q, want sh -c <script>", []string(cmd))
	}
	return cmd[2]
}

// TestQueueConfig: Redis requires a password read from the secret, with
// both files, given on its standard input, and its clients authenticate
// with the same secret. The overlay's exporter user is TestQueueOverlay's;
// that the script runs as intended is TestQueueCommand's.
func TestQueueConfig(t *testing.T) {
	for label, p := range projects(t) {
		t.Run(label, func(t *testing.T) {
			q := p.Services["queue"]
			lines := strings.Split(queueScript(t, p), "\n")
			var exec, config []string
			for i, l := range lines {
				if strings.HasPrefix(l, "exec redis-server ") {
					exec = strings.Fields(l)
					config = lines[i+1:]
					break
				}
			}
			// The arguments: settings only, stdin read as configuration.
			if len(exec) < 3 || exec[2] != "-" || exec[len(exec)-1] != "<<EOF" {
				t.Fatalf("queue command: got exec line %q, want `exec redis-server - <settings> <<EOF`", exec)
			}
			args := strings.Join(exec[3:len(exec)-1], " ")
			for _, want := range []string{"--appendonly yes", "--maxmemory-policy noeviction"} {
				if !strings.Contains(args, want) {
					t.Errorf("redis-server arguments: got %q, want them to contain %q", args, want)
				}
			}
			if regexp.MustCompile(`(?i)pass|--user|secret|\$`).MatchString(args) {
				t.Errorf("redis-server arguments: got %q, want no password, user or variable in them", args)
			}
			// The password is the secret's content, set once, and nothing
			// turns authentication off again.
			if len(lines) < 2 || lines[0] != queuePasswordLine || lines[1] != queuePasswordCheckLine {
				t.Errorf("queue command: got first lines %q, want %q then %q", lines[:min(2, len(lines))], queuePasswordLine, queuePasswordCheckLine)
			}
			if len(config) == 0 || config[0] != queueRequirepassLine || config[len(config)-1] != "EOF" {
				t.Errorf("redis-server configuration: got %q, want %q first and EOF last", config, queueRequirepassLine)
			}
			script := strings.Join(lines, "\n")
			if strings.Count(script, "requirepass") != 1 ||
				regexp.MustCompile(`(?i)nopass|protected-mode\s+no|enable-debug-command`).MatchString(script) {
				t.Errorf("queue command: got %q, want one requirepass, no passwordless user, debug command or protected-mode off", script)
			}
			// The healthcheck reads the password as the command does and
			// gives redis-cli AUTH on its standard input, never `-a` on its
			// command line.
			var test []string
			if q.HealthCheck != nil {
				test = q.HealthCheck.Test
			}
			if want := []string{"CMD-SHELL", queuePasswordLine + "\n" + queueHealthLine}; !slices.Equal(test, want) {
				t.Errorf("queue healthcheck: got %q, want %q", test, want)
			}
			var mounted []string
			for _, s := range q.Secrets {
				mounted = append(mounted, s.Source)
			}
			want := []string{"redis_password"}
			if label == "base+observability" {
				want = append(want, "redis_exporter_password")
			}
			if !slices.Equal(mounted, want) {
				t.Errorf("queue secrets: got %v, want %v", mounted, want)
			}
			for _, name := range redisClients {
				redisAuth(t, p.Services[name])
			}
		})
	}
}

// TestQueueOverlay: the overlay's queue runs the core command unchanged,
// plus one ACL user for redis_exporter whose password is its own secret and
// whose rules are the native stack's (devstack.RedisExporterACL).
func TestQueueOverlay(t *testing.T) {
	base := queueScript(t, loadProject(t, baseFile))
	var core []string
	user := ""
	for _, l := range strings.Split(queueScript(t, loadProject(t, baseFile, observabilityFile)), "\n") {
		switch {
		case l == queueExporterLine, l == queueExporterCheckLine:
		case strings.HasPrefix(l, queueUserPrefix) && user == "":
			user = strings.TrimPrefix(l, queueUserPrefix)
		default:
			core = append(core, l)
		}
	}
	if got := strings.Join(core, "\n"); got != base || user == "" {
		t.Fatalf("queue command with overlay: got %q without the exporter's lines (user rules %q), want the core command %q with %q, %q and %q<rules>",
			got, user, base, queueExporterLine, queueExporterCheckLine, queueUserPrefix)
	}
	var rules []string
	for _, r := range strings.Fields(user) {
		rules = append(rules, strings.Trim(r, `"`))
	}
	if want := devstack.RedisExporterACL("carteiro:emails"); !slices.Equal(rules, want) {
		t.Errorf("carteiro-exporter ACL rules: got %v, want %v (devstack.RedisExporterACL)", rules, want)
	}
	for _, r := range rules {
		if r == "nopass" || strings.HasPrefix(r, "~") || strings.HasPrefix(r, "+@") || r == "allkeys" || r == "allcommands" ||
			strings.HasPrefix(r, "+config") || strings.HasPrefix(r, "+acl") {
			t.Errorf("carteiro-exporter ACL rule %q: want no passwordless login, no write or all-key access, no CONFIG or ACL", r)
		}
	}
}

func TestDependsOnHealthy(t *testing.T) {
	base := map[string][]string{
		"app":      {"db", "queue"},
		"worker":   {"app", "db", "mail", "queue"}, // app applies the migrations
		"frontend": {"app"},
	}
	overlay := map[string][]string{
		"app":               {"db", "queue"},
		"worker":            {"app", "db", "mail", "queue"},
		"frontend":          {"app", "otelcol"}, // ngx_otel_module resolves otelcol at start
		"grafana":           {"jaeger", "prometheus"},
		"otelcol":           {"jaeger"}, // where it sends the traces it keeps
		"nginx-exporter":    {"frontend"},
		"k6":                {"frontend", "prometheus", "worker"}, // what it measures, where it reports
		"alertmanager":      {"mail"},                             // it mails through Mailpit
		"db-monitor-role":   {"db"},
		"postgres-exporter": {"db-monitor-role"}, // its role exists first
		"redis-exporter":    {"queue"},           // its ACL user is defined at the queue's start
	}
	for label, p := range projects(t) {
		want := base
		if label == "base+observability" {
			want = overlay
		}
		for _, name := range sortedServiceNames(p) {
			svc := p.Services[name]
			t.Run(label+"/"+name, func(t *testing.T) {
				if got := sortedKeys(svc.DependsOn); !slices.Equal(got, want[name]) {
					t.Errorf("depends_on: got %v, want %v", got, want[name])
				}
				for dep, d := range svc.DependsOn {
					_, noHealthcheck := healthcheckExceptions[dep]
					want := types.ServiceConditionHealthy
					switch {
					case oneShotJobs[dep]:
						want = types.ServiceConditionCompletedSuccessfully
					case noHealthcheck:
						want = types.ServiceConditionStarted
					}
					if d.Condition != want {
						t.Errorf("depends_on %s condition: got %v, want %v", dep, d.Condition, want)
					}
				}
			})
		}
	}
}

func TestServiceEnvironment(t *testing.T) {
	p := loadProject(t, baseFile)
	common := map[string]string{
		"DB_HOST":             "db",
		"DB_PORT":             "5432",
		"DB_NAME":             "carteiro",
		"DB_USER":             "carteiro",
		"DB_PASSWORD_FILE":    "/run/secrets/db_password",
		"DB_SSLMODE":          "disable",
		"REDIS_ADDR":          "queue:6379",
		"REDIS_PASSWORD_FILE": "/run/secrets/redis_password",
	}
	want := map[string]map[string]string{
		"app": {
			"HTTP_ADDR":     ":8080",
			"INTERNAL_ADDR": ":9101",
		},
		"worker": {
			"INTERNAL_ADDR":      ":9102",
			"SMTP_HOST":          "mail",
			"SMTP_PORT":          "1025",
			"WORKER_CONCURRENCY": "8",
			"MAIL_FROM":          "carteiro@carteiro.localhost",
			"MAIL_TO":            "contato@carteiro.localhost",
		},
		"frontend": {
			"API_UPSTREAM":              "app:8080",
			"NGINX_LISTEN":              "8080",
			"NGINX_ENVSUBST_OUTPUT_DIR": "/tmp",
			"NGINX_RUN_DIR":             "/tmp",
			"WEB_ROOT":                  "/usr/share/nginx/html",
			"NGINX_STATUS_LISTEN":       "8081",
			"NGINX_STATUS_ALLOW":        "127.0.0.1",
			"NGINX_TRACING":             "native",
		},
		"db": {
			"POSTGRES_USER":          "carteiro",
			"POSTGRES_DB":            "carteiro",
			"POSTGRES_PASSWORD_FILE": "/run/secrets/db_password",
		},
	}
	for k, v := range common {
		want["app"][k] = v
		want["worker"][k] = v
	}
	for _, name := range sortedKeys(want) {
		svc := p.Services[name]
		for _, k := range sortedKeys(want[name]) {
			got, ok := envValue(svc, k)
			if !ok || got != want[name][k] {
				t.Errorf("%s env %s: got %q (set=%v), want %q", name, k, got, ok, want[name][k])
			}
		}
	}
	var dbVolumes []string
	for _, v := range p.Services["db"].Volumes {
		dbVolumes = append(dbVolumes, v.Type+":"+v.Source+":"+v.Target)
	}
	if want := []string{"volume:dados:/var/lib/postgresql/data"}; !slices.Equal(dbVolumes, want) {
		t.Errorf("db volumes: got %v, want %v", dbVolumes, want)
	}
}

// TestFrontendWiring checks the frontend against nginx/README.md: templates
// and page mounted from the repository, rendered into the /tmp tmpfs and run
// from there.
func TestFrontendWiring(t *testing.T) {
	root := repoRoot(t)
	fe := loadProject(t, baseFile).Services["frontend"]

	var mounts []string
	for _, v := range fe.Volumes {
		mounts = append(mounts, v.Source+":"+v.Target)
	}
	want := []string{
		filepath.Join(root, "web") + ":/usr/share/nginx/html",
		filepath.Join(root, "nginx") + ":/etc/nginx/templates",
	}
	if !slices.Equal(mounts, want) {
		t.Errorf("frontend mounts: got %v, want %v", mounts, want)
	}
	for _, f := range []string{"web/index.html", "nginx/nginx.conf.template"} {
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("mounted file %s: got %v, want it present", f, err)
		}
	}
	if want := []string{"nginx", "-c", "/tmp/nginx.conf", "-g", "daemon off;"}; !slices.Equal([]string(fe.Command), want) {
		t.Errorf("frontend command: got %v, want %v", fe.Command, want)
	}
	if !slices.ContainsFunc(fe.Tmpfs, func(m string) bool { return m == "/tmp" || strings.HasPrefix(m, "/tmp:") }) {
		t.Errorf("frontend tmpfs: got %v, want /tmp", fe.Tmpfs)
	}
}

func TestObservabilityOverlay(t *testing.T) {
	base := loadProject(t, baseFile)
	merged := loadProject(t, baseFile, observabilityFile)
	env := readDotEnv(t)

	// observabilidade and telemetria_borda carry telemetry only and have no
	// route out; observabilidade_ui exists only so the three UIs can be
	// published (on 127.0.0.1, TestPublishedPorts), as mail_ui does for
	// Mailpit.
	wantInternal := map[string]bool{"observabilidade": true, "observabilidade_ui": false, "telemetria_borda": true}
	for _, name := range sortedKeys(wantInternal) {
		n, ok := merged.Networks[name]
		if !ok {
			t.Errorf("overlay networks: got %v, want %s among them", sortedKeys(merged.Networks), name)
			continue
		}
		if n.Internal != wantInternal[name] {
			t.Errorf("network %s internal: got %v, want %v", name, n.Internal, wantInternal[name])
		}
		if _, ok := base.Networks[name]; ok {
			t.Errorf("base networks: got %v, want no %s (overlay only)", sortedKeys(base.Networks), name)
		}
	}

	// The subnet is fixed (.env) because nginx admits exactly it to
	// /nginx-status: the network and the frontend's allow rule must agree.
	subnet := env["TELEMETRIA_BORDA_SUBNET"]
	if _, cidr, err := net.ParseCIDR(subnet); err != nil || !cidr.IP.IsPrivate() || cidr.String() != subnet {
		t.Errorf(".env TELEMETRIA_BORDA_SUBNET: got %q, want a private network in CIDR form (e.g. 172.28.53.0/24)", subnet)
	}
	var subnets []string
	if n, ok := merged.Networks["telemetria_borda"]; ok {
		for _, c := range n.Ipam.Config {
			subnets = append(subnets, c.Subnet)
		}
	}
	if want := []string{subnet}; !slices.Equal(subnets, want) {
		t.Errorf("telemetria_borda ipam subnets: got %v, want %v (TELEMETRIA_BORDA_SUBNET)", subnets, want)
	}
	if got, _ := envValue(merged.Services["frontend"], "NGINX_STATUS_ALLOW"); got != subnet {
		t.Errorf("frontend NGINX_STATUS_ALLOW with overlay: got %q, want %q (the telemetria_borda subnet)", got, subnet)
	}

	// app and worker join observabilidade. frontend, the edge, joins only
	// telemetria_borda: with otelcol, nginx-exporter and k6, never beside
	// the worker, Jaeger, Prometheus or Grafana.
	joins := map[string]string{"app": "observabilidade", "worker": "observabilidade", "frontend": "telemetria_borda"}
	own := map[string][]string{
		"jaeger": {"observabilidade", "observabilidade_ui"},
		// app and worker on observabilidade, frontend on telemetria_borda.
		"otelcol":        {"observabilidade", "telemetria_borda"},
		"prometheus":     {"observabilidade", "observabilidade_ui"},
		"grafana":        {"observabilidade", "observabilidade_ui"},
		"nginx-exporter": {"observabilidade", "telemetria_borda"},
		// frontend on telemetria_borda, Prometheus on observabilidade.
		"k6": {"observabilidade", "telemetria_borda"},
		// Each exporter joins what it watches and observabilidade, nothing
		// else; Alertmanager mails through Mailpit on smtp.
		"alertmanager":      {"observabilidade", "observabilidade_ui", "smtp"},
		"db-monitor-role":   {"banco"},
		"postgres-exporter": {"banco", "observabilidade"},
		"redis-exporter":    {"fila", "observabilidade"},
	}
	for _, name := range sortedServiceNames(merged) {
		t.Run(name, func(t *testing.T) {
			svc := merged.Services[name]
			var want []string
			if networks, ok := own[name]; ok {
				want = networks
			} else {
				want = sortedKeys(base.Services[name].Networks)
				if n, ok := joins[name]; ok {
					want = append(want, n)
					sort.Strings(want)
				}
			}
			if got := sortedKeys(svc.Networks); !slices.Equal(got, want) {
				t.Errorf("networks of %s with overlay: got %v, want %v", name, got, want)
			}
			// A service on the non-internal UI network is there to publish
			// its UI, on loopback only.
			if _, onUI := svc.Networks["observabilidade_ui"]; onUI {
				if len(svc.Ports) == 0 {
					t.Errorf("%s on observabilidade_ui: got no published port, want its UI on 127.0.0.1", name)
				}
				for _, port := range svc.Ports {
					if port.HostIP != "127.0.0.1" {
						t.Errorf("%s port %s: got host_ip %q, want 127.0.0.1", name, port.Published, port.HostIP)
					}
				}
			}
		})
	}
}

// TestObservabilityTelemetryEnv: app and worker export traces to jaeger with
// the standard OpenTelemetry variables (contract names), the api links to
// the Jaeger UI that the overlay publishes, and the base deployment sets
// none of it.
func TestObservabilityTelemetryEnv(t *testing.T) {
	base := loadProject(t, baseFile)
	merged := loadProject(t, baseFile, observabilityFile)
	want := map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otelcol:4318",
		"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
		"OTEL_TRACES_SAMPLER":         "parentbased_always_on",
	}
	for _, name := range []string{"app", "worker"} {
		svc := merged.Services[name]
		for _, k := range sortedKeys(want) {
			if got, ok := envValue(svc, k); !ok || got != want[k] {
				t.Errorf("%s env %s with overlay: got %q (set=%v), want %q", name, k, got, ok, want[k])
			}
		}
		for _, k := range sortedKeys(base.Services[name].Environment) {
			if strings.HasPrefix(k, "OTEL_") || k == "JAEGER_UI_URL" {
				t.Errorf("%s env %s in the base file: got set, want it only in the overlay", name, k)
			}
		}
		// The core settings survive the merge.
		if got, _ := envValue(svc, "DB_HOST"); got != "db" {
			t.Errorf("%s env DB_HOST with overlay: got %q, want %q", name, got, "db")
		}
	}
	jaegerPort := ""
	for _, p := range merged.Services["jaeger"].Ports {
		if p.Target == 16686 {
			jaegerPort = p.HostIP + ":" + p.Published
		}
	}
	if got, _ := envValue(merged.Services["app"], "JAEGER_UI_URL"); got != "http://"+jaegerPort {
		t.Errorf("app JAEGER_UI_URL: got %q, want %q (the published Jaeger UI)", got, "http://"+jaegerPort)
	}
	if _, ok := envValue(merged.Services["worker"], "JAEGER_UI_URL"); ok {
		t.Errorf("worker JAEGER_UI_URL: got set, want unset (only the api renders links)")
	}

	// Jaeger listens for OTLP on both protocols and serves the UI on every
	// interface of its container; compose publishes the UI on loopback only.
	jaeger := merged.Services["jaeger"]
	for k, v := range map[string]string{
		"JAEGER_OTLP_GRPC_ADDR": "0.0.0.0:4317",
		"JAEGER_OTLP_HTTP_ADDR": "0.0.0.0:4318",
		"JAEGER_QUERY_ADDR":     "0.0.0.0:16686",
	} {
		if got, _ := envValue(jaeger, k); got != v {
			t.Errorf("jaeger env %s: got %q, want %q", k, got, v)
		}
	}
	if want := []string{"--config", "/etc/jaeger/config.yaml"}; !slices.Equal([]string(jaeger.Command), want) {
		t.Errorf("jaeger command: got %v, want %v", jaeger.Command, want)
	}
	wantMount(t, jaeger, "observability/jaeger/config.yaml", "/etc/jaeger/config.yaml")
}

// TestObservabilityFrontend: the overlay's frontend is the core frontend
// with the otel image, the otel module loaded on the command line and
// NGINX_TRACING=otel; the templates and their mount are the same.
func TestObservabilityFrontend(t *testing.T) {
	env := readDotEnv(t)
	base := loadProject(t, baseFile).Services["frontend"]
	fe := loadProject(t, baseFile, observabilityFile).Services["frontend"]

	// The same nginx release as the core image, plus the module.
	if want := env["NGINX_IMAGE"] + "-otel"; env["NGINX_OTEL_IMAGE"] != want || fe.Image != want {
		t.Errorf("frontend image with overlay: got %q (.env NGINX_OTEL_IMAGE %q), want %q (NGINX_IMAGE + -otel)",
			fe.Image, env["NGINX_OTEL_IMAGE"], want)
	}
	wantCmd := []string{"nginx", "-c", "/tmp/nginx.conf", "-g", "load_module modules/ngx_otel_module.so; daemon off;"}
	if !slices.Equal([]string(fe.Command), wantCmd) {
		t.Errorf("frontend command with overlay: got %v, want %v", fe.Command, wantCmd)
	}
	if got, _ := envValue(fe, "NGINX_TRACING"); got != "otel" {
		t.Errorf("frontend NGINX_TRACING with overlay: got %q, want %q", got, "otel")
	}
	// Everything else the templates need is unchanged from the core file.
	for _, k := range sortedKeys(base.Environment) {
		if k == "NGINX_TRACING" || k == "NGINX_STATUS_ALLOW" {
			continue
		}
		b, _ := envValue(base, k)
		if got, _ := envValue(fe, k); got != b {
			t.Errorf("frontend env %s with overlay: got %q, want %q (as in the core file)", k, got, b)
		}
	}
	var baseMounts, mounts []string
	for _, v := range base.Volumes {
		baseMounts = append(baseMounts, v.Source+":"+v.Target)
	}
	for _, v := range fe.Volumes {
		mounts = append(mounts, v.Source+":"+v.Target)
	}
	if !slices.Equal(mounts, baseMounts) {
		t.Errorf("frontend mounts with overlay: got %v, want %v", mounts, baseMounts)
	}

	// nginx-exporter scrapes the frontend's status listener, which the
	// overlay does not publish.
	listen, _ := envValue(fe, "NGINX_STATUS_LISTEN")
	exporter := loadProject(t, baseFile, observabilityFile).Services["nginx-exporter"]
	wantArg := "--nginx.scrape-uri=http://frontend:" + listen + "/nginx-status"
	if !slices.Contains([]string(exporter.Command), wantArg) {
		t.Errorf("nginx-exporter command: got %v, want it to contain %q", exporter.Command, wantArg)
	}
	for _, p := range fe.Ports {
		if strconv.Itoa(int(p.Target)) == listen {
			t.Errorf("frontend ports: got the status listener %s published, want it internal", listen)
		}
	}
}

// TestFrontendTemplates: every ${PLACEHOLDER} in nginx/**/*.template is set
// in the frontend's environment and let through NGINX_ENVSUBST_FILTER (the
// image's envsubst renders only those), in the base and the overlay; the
// tracing flavour each selects exists.
func TestFrontendTemplates(t *testing.T) {
	root := repoRoot(t)
	placeholder := regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)\}`)
	used := map[string]bool{}
	err := filepath.WalkDir(filepath.Join(root, "nginx"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".template") {
			return err
		}
		b, err := os.ReadFile(path)
		for _, m := range placeholder.FindAllStringSubmatch(string(b), -1) {
			used[m[1]] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for label, p := range projects(t) {
		fe := p.Services["frontend"]
		filter, _ := envValue(fe, "NGINX_ENVSUBST_FILTER")
		re, err := regexp.Compile(filter)
		if err != nil {
			t.Errorf("%s: NGINX_ENVSUBST_FILTER %q: %v", label, filter, err)
			continue
		}
		for _, k := range sortedKeys(used) {
			if v, ok := envValue(fe, k); !ok || v == "" {
				t.Errorf("%s: frontend env %s: got unset, want a value (used by nginx/ templates)", label, k)
			}
			if !re.MatchString(k) {
				t.Errorf("%s: NGINX_ENVSUBST_FILTER %q: got %s filtered out, want it rendered", label, filter, k)
			}
		}
		tracing, _ := envValue(fe, "NGINX_TRACING")
		if _, err := os.Stat(filepath.Join(root, "nginx", "snippets", "tracing-"+tracing+".conf.template")); err != nil {
			t.Errorf("%s: NGINX_TRACING=%q: got %v, want nginx/snippets/tracing-%s.conf.template", label, tracing, err, tracing)
		}
	}
}

// TestPrometheusService: the flags the dashboards rely on (exemplars) and
// the remote-write receiver; config from the repository, read-only.
func TestPrometheusService(t *testing.T) {
	prom := loadProject(t, baseFile, observabilityFile).Services["prometheus"]
	for _, want := range []string{
		"--config.file=/etc/prometheus/prometheus.yml",
		"--storage.tsdb.path=/prometheus",
		"--storage.tsdb.retention.time=30d", // the SLOs' 28 days
		"--enable-feature=exemplar-storage",
		"--web.enable-remote-write-receiver",
	} {
		if !slices.Contains([]string(prom.Command), want) {
			t.Errorf("prometheus command: got %v, want it to contain %q", prom.Command, want)
		}
	}
	for _, arg := range prom.Command {
		if strings.HasPrefix(arg, "--web.enable-lifecycle") || strings.HasPrefix(arg, "--web.enable-admin-api") {
			t.Errorf("prometheus command: got %q, want no mutating API (the UI port is published)", arg)
		}
	}
	wantMount(t, prom, "observability/prometheus", "/etc/prometheus")
	var data []string
	for _, v := range prom.Volumes {
		if v.Type == types.VolumeTypeVolume {
			data = append(data, v.Source+":"+v.Target)
		}
	}
	if want := []string{"prometheus_dados:/prometheus"}; !slices.Equal(data, want) {
		t.Errorf("prometheus volumes: got %v, want %v", data, want)
	}
}

// TestGrafanaService: provisioning mounted read-only where the provider
// file says, no password anywhere but the secret, anonymous users read-only,
// nothing fetched from the internet at start.
func TestGrafanaService(t *testing.T) {
	g := loadProject(t, baseFile, observabilityFile).Services["grafana"]
	wantMount(t, g, "observability/grafana/provisioning/datasources", "/etc/grafana/provisioning/datasources")
	wantMount(t, g, "observability/grafana/provisioning/dashboards", "/etc/grafana/provisioning/dashboards")
	wantMount(t, g, "observability/grafana/dashboards", grafanaDashboardsDir)
	want := map[string]string{
		"GF_SECURITY_ADMIN_PASSWORD__FILE":      "/run/secrets/grafana_admin_password",
		"GF_AUTH_ANONYMOUS_ENABLED":             "true",
		"GF_AUTH_ANONYMOUS_ORG_ROLE":            "Viewer",
		"GF_USERS_ALLOW_SIGN_UP":                "false",
		"GF_ANALYTICS_REPORTING_ENABLED":        "false",
		"GF_ANALYTICS_CHECK_FOR_UPDATES":        "false",
		"GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES": "false",
		"GF_PLUGINS_PREINSTALL_DISABLED":        "true",
	}
	for _, k := range sortedKeys(want) {
		if got, ok := envValue(g, k); !ok || got != want[k] {
			t.Errorf("grafana env %s: got %q (set=%v), want %q", k, got, ok, want[k])
		}
	}
	if _, ok := g.Environment["GF_SECURITY_ADMIN_PASSWORD"]; ok {
		t.Errorf("grafana env GF_SECURITY_ADMIN_PASSWORD: got set, want only the __FILE form")
	}
	home, _ := envValue(g, "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
	if rel, ok := strings.CutPrefix(home, grafanaDashboardsDir+"/"); !ok {
		t.Errorf("grafana home dashboard: got %q, want a file under %s", home, grafanaDashboardsDir)
	} else if _, err := os.Stat(filepath.Join(repoRoot(t), "observability", "grafana", "dashboards", rel)); err != nil {
		t.Errorf("grafana home dashboard %q: %v", home, err)
	}
}

// wantMount fails t unless svc bind-mounts the repository path src on
// target (read-only is TestHardening's business) and src exists.
func wantMount(t *testing.T, svc types.ServiceConfig, src, target string) {
	t.Helper()
	abs := filepath.Join(repoRoot(t), src)
	var got []string
	for _, v := range svc.Volumes {
		if v.Type == types.VolumeTypeBind && v.Target == target {
			got = append(got, v.Source)
		}
	}
	if !slices.Equal(got, []string{abs}) {
		t.Errorf("%s mount on %s: got %v, want %s", svc.Name, target, got, abs)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Errorf("%s mount source %s: %v", svc.Name, src, err)
	}
}

// TestJaegerVersion: the compose Jaeger image is the release bin/jaeger is
// built from (scripts/tools/go.mod). Jaeger tags each release twice: Go
// module v1.N.x is Jaeger v2.(N-63).x (v1.63.0 = v2.0.0).
func TestJaegerVersion(t *testing.T) {
	m := toolsModuleVersion(t, "github.com/jaegertracing/jaeger", `v1\.([0-9]+)\.([0-9]+)`)
	if m == nil {
		t.Skip("scripts/tools/go.mod has no github.com/jaegertracing/jaeger v1.x: update this test's version mapping")
	}
	minor, _ := strconv.Atoi(m[1])
	want := fmt.Sprintf("jaegertracing/jaeger:2.%d.%s", minor-63, m[2])
	if got := readDotEnv(t)["JAEGER_IMAGE"]; got != want {
		t.Errorf(".env JAEGER_IMAGE: got %q, want %q (scripts/tools/go.mod has jaeger v1.%s.%s)", got, want, m[1], m[2])
	}
}

// TestMailpitVersion: the compose Mailpit image is the release bin/mailpit
// is built from (scripts/tools/go.mod), the one make dev runs and the
// compose test's stand-in carries. Mailpit's image tags are its module's.
func TestMailpitVersion(t *testing.T) {
	m := toolsModuleVersion(t, "github.com/axllent/mailpit", `v[0-9]+\.[0-9]+\.[0-9]+`)
	if m == nil {
		t.Fatal("scripts/tools/go.mod requires no github.com/axllent/mailpit vX.Y.Z: it builds bin/mailpit")
	}
	if got, want := readDotEnv(t)["MAILPIT_IMAGE"], "axllent/mailpit:"+m[0]; got != want {
		t.Errorf(".env MAILPIT_IMAGE: got %q, want %q (scripts/tools/go.mod has mailpit %s)", got, want, m[0])
	}
}

// toolsModuleVersion finds module's requirement in scripts/tools/go.mod
// and matches its version against the regular expression version: the
// version and its submatches, or nil when the module is not required at a
// version version matches.
func toolsModuleVersion(t *testing.T, module, version string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "scripts", "tools", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(module) + ` (` + version + `)\b`).FindStringSubmatch(string(b))
	if m == nil {
		return nil
	}
	return m[1:]
}
