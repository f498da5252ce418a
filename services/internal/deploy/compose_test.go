package deploy

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
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
)

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
	want := []string{"app", "db", "frontend", "mail", "queue", "worker"}
	for label, p := range projects(t) {
		t.Run(label, func(t *testing.T) {
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
	for label, p := range projects(t) {
		for _, name := range sortedServiceNames(p) {
			svc := p.Services[name]
			t.Run(label+"/"+name, func(t *testing.T) {
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
				switch {
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

func TestQueueConfig(t *testing.T) {
	q := loadProject(t, baseFile).Services["queue"]
	cmd := strings.Join(q.Command, " ")
	for _, want := range []string{
		"--requirepass",
		"/run/secrets/redis_password",
		"--appendonly yes",
		"--maxmemory-policy noeviction",
	} {
		if !strings.Contains(cmd, want) {
			t.Errorf("queue command: got %q, want it to contain %q", cmd, want)
		}
	}
	// redis-cli must take the password from REDISCLI_AUTH, filled from the
	// secret, never from `-a` on its command line.
	authFromSecret := regexp.MustCompile(`(^|\s)REDISCLI_AUTH="\$\(cat /run/secrets/redis_password\)"\s+redis-cli\s`)
	test := "<none>"
	if q.HealthCheck != nil {
		test = strings.Join(q.HealthCheck.Test, " ")
	}
	if !authFromSecret.MatchString(test) || regexp.MustCompile(`\s-a\s`).MatchString(test) {
		t.Errorf("queue healthcheck: got %q, want redis-cli authenticated by REDISCLI_AUTH from /run/secrets/redis_password", test)
	}
	var mounted []string
	for _, s := range q.Secrets {
		mounted = append(mounted, s.Source)
	}
	if want := []string{"redis_password"}; !slices.Equal(mounted, want) {
		t.Errorf("queue secrets: got %v, want %v", mounted, want)
	}
}

func TestDependsOnHealthy(t *testing.T) {
	want := map[string][]string{
		"app":      {"db", "queue"},
		"worker":   {"app", "db", "mail", "queue"}, // app applies the migrations
		"frontend": {"app"},
	}
	for label, p := range projects(t) {
		for _, name := range sortedServiceNames(p) {
			svc := p.Services[name]
			t.Run(label+"/"+name, func(t *testing.T) {
				if got := sortedKeys(svc.DependsOn); !slices.Equal(got, want[name]) {
					t.Errorf("depends_on: got %v, want %v", got, want[name])
				}
				for dep, d := range svc.DependsOn {
					if d.Condition != types.ServiceConditionHealthy {
						t.Errorf("depends_on %s condition: got %v, want %v", dep, d.Condition, types.ServiceConditionHealthy)
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
			"WORKER_CONCURRENCY": "4",
			"MAIL_FROM":          "carteiro@carteiro.localhost",
			"MAIL_TO":            "contato@carteiro.localhost",
		},
		"frontend": {
			"API_UPSTREAM":              "app:8080",
			"NGINX_LISTEN":              "8080",
			"NGINX_ENVSUBST_OUTPUT_DIR": "/tmp",
			"NGINX_RUN_DIR":             "/tmp",
			"WEB_ROOT":                  "/usr/share/nginx/html",
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
	if got := p.Services["worker"].StopGracePeriod; got == nil || got.String() != "30s" {
		t.Errorf("worker stop_grace_period: got %v, want %v", got, "30s")
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

	if _, ok := merged.Networks["observabilidade"]; !ok {
		t.Errorf("overlay networks: got %v, want %v among them", sortedKeys(merged.Networks), "observabilidade")
	}
	if _, ok := base.Networks["observabilidade"]; ok {
		t.Errorf("base networks: got %v, want no %v", sortedKeys(base.Networks), "observabilidade")
	}
	joins := map[string]bool{"app": true, "worker": true, "frontend": true}
	for _, name := range sortedServiceNames(merged) {
		t.Run(name, func(t *testing.T) {
			want := sortedKeys(base.Services[name].Networks)
			if joins[name] {
				want = append(want, "observabilidade")
				sort.Strings(want)
			}
			if got := sortedKeys(merged.Services[name].Networks); !slices.Equal(got, want) {
				t.Errorf("networks of %s with overlay: got %v, want %v", name, got, want)
			}
		})
	}
}
