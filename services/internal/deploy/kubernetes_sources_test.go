package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/carteiro/carteiro/internal/devstack"
	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/health"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// One source of truth for names: the Kubernetes manifests must use the
// images, ports, environment variables and probe paths that
// docker-compose.yml and the services' code use, so that renaming one of
// them anywhere breaks a test here.

var runtimeConverter = runtime.DefaultUnstructuredConverter

// goRuntimeEnv are variables the manifests set that carteiro's code does
// not read, because the Go runtime does.
var goRuntimeEnv = map[string]string{
	"GOMEMLIMIT": "the Go runtime's soft memory limit, from the container's memory limit",
	"GOMAXPROCS": "how many threads run Go code at once (the worker's, devstack.WorkerGOMAXPROCS)",
}

// kubeOnlyEnv are variables the manifests set that compose does not, and why.
var kubeOnlyEnv = map[string]string{
	"GOMEMLIMIT":              "compose sets no memory limit",
	"OTEL_SERVICE_NAME":       "the service's default name, written out",
	"WORKER_NAME":             "the pod's name: unique and stable for the pod's life",
	"WORKER_SHUTDOWN_TIMEOUT": "its default, written out beside the grace period that must exceed it",
	"SMTP_USERNAME":           "production: the relay's account (compose sends to Mailpit)",
	"SMTP_PASSWORD_FILE":      "production: the relay's password, from the Secret carteiro-smtp",
}

// composeOnlyEnv are variables compose sets that the manifests do not.
var composeOnlyEnv = map[string]string{
	"JAEGER_UI_URL": "a browser address of compose's Jaeger UI; a cluster's is its own (set it per deployment)",
	"INCOMING_TRACE_CONTEXT": "join only behind the observability overlay's nginx, whose otel module starts every trace; " +
		"the cluster's frontend has no otel module (NGINX_TRACING=native) and passes a client's traceparent on, which the api links (the default)",
}

// kubeServices maps each compose service to the image the manifests run
// for it; app and worker are services/Dockerfile's targets, frontend is
// deploy/frontend/Dockerfile.
var kubeImages = map[string]string{"app": "carteiro/api", "worker": "carteiro/worker", "frontend": "carteiro/frontend"}

// imageUsers are the uids behind compose's user names (the alpine images).
var imageUsers = map[string]string{"postgres": "70", "redis": "999"}

// configEnv is a getenv for config.LoadAPI/LoadWorker from a container's
// environment: each *_FILE (a mounted secret) is redirected to a temporary
// file, since the secret's content is not what is checked.
func configEnv(t *testing.T, env map[string]string) func(string) string {
	t.Helper()
	dir := t.TempDir()
	out := map[string]string{}
	for k, v := range env {
		if strings.HasSuffix(k, "_FILE") {
			path := filepath.Join(dir, k)
			if err := os.WriteFile(path, []byte("stand-in"), 0o600); err != nil {
				t.Fatal(err)
			}
			v = path
		}
		out[k] = v
	}
	return func(k string) string { return out[k] }
}

// namesRead are the variables a service's code reads (its config loader
// and its telemetry setup), recorded while loading env and while loading an
// empty environment, so that names read only in some cases are seen too.
func namesRead(t *testing.T, service string, env map[string]string) map[string]bool {
	t.Helper()
	read := map[string]bool{}
	for _, e := range []map[string]string{env, {}} {
		getenv := configEnv(t, e)
		record := func(k string) string { read[k] = true; return getenv(k) }
		switch service {
		case "app":
			_, _ = config.LoadAPI(record)
		case "worker":
			_, _ = config.LoadWorker(record)
		default:
			t.Fatalf("namesRead: no configuration for %s", service)
		}
		tel, err := telemetry.Setup(context.Background(), "carteiro-"+service, record)
		if err == nil {
			_ = tel.Shutdown(context.Background())
		}
	}
	return read
}

// kubeEnv is the environment of a workload's main container.
func kubeEnv(t *testing.T, m *manifest, name string) map[string]string {
	t.Helper()
	w := m.workload(t, name)
	return m.env(t, &w.pod.Spec.Containers[0])
}

// composeEnv is a service's environment in a compose project.
func composeEnv(svc types.ServiceConfig) map[string]string {
	out := map[string]string{}
	for k := range svc.Environment {
		out[k], _ = envValue(svc, k)
	}
	return out
}

// TestKubernetesEnvIsReadByTheCode: every variable the manifests give app
// and worker (init container included) is one their code reads, and their
// configuration loads from it without error.
func TestKubernetesEnvIsReadByTheCode(t *testing.T) {
	for _, overlay := range kubeOverlays {
		m := loadManifest(t, overlay)
		for _, name := range []string{"app", "worker"} {
			w := m.workload(t, name)
			for _, c := range slices.Concat(w.pod.Spec.InitContainers, w.pod.Spec.Containers) {
				t.Run(overlay+"/"+name+"/"+c.Name, func(t *testing.T) {
					env := m.env(t, &c)
					read := namesRead(t, name, env)
					for _, k := range sortedKeys(env) {
						if !read[k] && goRuntimeEnv[k] == "" {
							t.Errorf("env %s: not read by the %s's code (renamed?), nor by the Go runtime", k, name)
						}
					}
					var err error
					if name == "app" {
						_, err = config.LoadAPI(configEnv(t, env))
					} else {
						_, err = config.LoadWorker(configEnv(t, env))
					}
					if err != nil {
						t.Errorf("configuration from the manifest: %v", err)
					}
					if _, err := telemetry.Setup(context.Background(), "carteiro-"+name, configEnv(t, env)); err != nil {
						t.Errorf("telemetry from the manifest: %v", err)
					}
				})
			}
		}
	}
}

// TestWorkerGOMAXPROCS: compose and every overlay run the worker with the
// GOMAXPROCS the native stack (make dev, make bench) gives it,
// devstack.WorkerGOMAXPROCS: the setting the bench measured.
func TestWorkerGOMAXPROCS(t *testing.T) {
	if got, _ := envValue(projects(t)["base"].Services["worker"], "GOMAXPROCS"); got != devstack.WorkerGOMAXPROCS {
		t.Errorf("compose worker GOMAXPROCS: got %q, want %q (as natively, internal/devstack)", got, devstack.WorkerGOMAXPROCS)
	}
	for _, overlay := range kubeOverlays {
		if got := kubeEnv(t, loadManifest(t, overlay), "worker")["GOMAXPROCS"]; got != devstack.WorkerGOMAXPROCS {
			t.Errorf("%s worker GOMAXPROCS: got %q, want %q (as natively, internal/devstack)", overlay, got, devstack.WorkerGOMAXPROCS)
		}
	}
}

// TestKubernetesEnvMatchesCompose: app, worker and frontend get the
// variables compose gives them; in dev, where the stores are in the
// namespace under compose's names, with compose's values.
func TestKubernetesEnvMatchesCompose(t *testing.T) {
	core := projects(t)["base"]
	full := projects(t)["base+observability"]
	for _, overlay := range kubeOverlays {
		m := loadManifest(t, overlay)
		for _, name := range carteiroWorkloads {
			t.Run(overlay+"/"+name, func(t *testing.T) {
				kube := kubeEnv(t, m, name)
				compose := composeEnv(full.Services[name])
				for _, k := range sortedKeys(compose) {
					if _, ok := kube[k]; !ok && composeOnlyEnv[k] == "" {
						t.Errorf("env %s: set by compose, missing from the manifest", k)
					}
				}
				for _, k := range sortedKeys(kube) {
					if _, ok := compose[k]; !ok && kubeOnlyEnv[k] == "" {
						t.Errorf("env %s=%q: not in compose and not a documented difference", k, kube[k])
					}
				}
				if overlay != "dev" {
					return
				}
				coreEnv := composeEnv(core.Services[name])
				for _, k := range sortedKeys(kube) {
					want, inCore := coreEnv[k]
					if !inCore {
						want, inCore = compose[k]
					}
					switch {
					case !inCore:
					case k == "OTEL_EXPORTER_OTLP_ENDPOINT":
						// A collector instead of compose's Jaeger: same scheme
						// and port (the protocol is checked by value).
						got, _ := url.Parse(kube[k])
						w, _ := url.Parse(want)
						if got == nil || w == nil || got.Scheme != w.Scheme || got.Port() != w.Port() {
							t.Errorf("env %s: got %q, want the scheme and port of compose's %q", k, kube[k], want)
						}
					case kube[k] != want:
						t.Errorf("env %s: got %q, want compose's %q", k, kube[k], want)
					}
				}
			})
		}
	}
}

// serviceTarget resolves host:port the way a pod in the namespace would:
// the Service called host, its port, and the container port it targets on
// the workload it selects.
func serviceTarget(t *testing.T, m *manifest, hostport string) (workload string, port corev1.ContainerPort, err error) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", port, err
	}
	svcObj := m.get("Service", host)
	if svcObj == nil {
		return "", port, fmt.Errorf("no Service %s", host)
	}
	svc := typed[corev1.Service](t, svcObj)
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if strconv.Itoa(int(svc.Spec.Ports[i].Port)) == p {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return "", port, fmt.Errorf("Service %s has no port %s", host, p)
	}
	for _, w := range m.workloads(t) {
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(w.pod.Labels)) {
			continue
		}
		for _, c := range w.pod.Spec.Containers {
			for _, cp := range c.Ports {
				if (sp.TargetPort.Type == intstr.String && cp.Name == sp.TargetPort.StrVal) ||
					(sp.TargetPort.Type == intstr.Int && cp.ContainerPort == sp.TargetPort.IntVal) {
					return w.name, cp, nil
				}
			}
		}
	}
	return "", port, fmt.Errorf("Service %s port %s targets no container port of a pod it selects", host, p)
}

// containerPort is the port called name in the workload's main container.
func containerPort(t *testing.T, m *manifest, workload, name string) int32 {
	t.Helper()
	w := m.workload(t, workload)
	for _, p := range w.pod.Spec.Containers[0].Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	t.Errorf("%s: no container port %s", workload, name)
	return 0
}

// TestKubernetesPortsMatch: the ports the containers declare are the ones
// the services listen on (their *_ADDR settings, as in compose), and the
// addresses the services are given resolve, through a Service, to them.
func TestKubernetesPortsMatch(t *testing.T) {
	core := projects(t)["base"]
	for _, overlay := range kubeOverlays {
		m := loadManifest(t, overlay)
		t.Run(overlay, func(t *testing.T) {
			app, worker, frontend := kubeEnv(t, m, "app"), kubeEnv(t, m, "worker"), kubeEnv(t, m, "frontend")
			for _, c := range []struct {
				workload, port, want, source string
			}{
				{"app", "http", portOf(app["HTTP_ADDR"]), "HTTP_ADDR"},
				{"app", "internal", portOf(app["INTERNAL_ADDR"]), "INTERNAL_ADDR"},
				{"worker", "internal", portOf(worker["INTERNAL_ADDR"]), "INTERNAL_ADDR"},
				{"frontend", "http", frontend["NGINX_LISTEN"], "NGINX_LISTEN"},
				{"frontend", "status", frontend["NGINX_STATUS_LISTEN"], "NGINX_STATUS_LISTEN"},
			} {
				if got := containerPort(t, m, c.workload, c.port); fmt.Sprint(got) != c.want || c.want == "" {
					t.Errorf("%s port %s: got %d, want %s (%s)", c.workload, c.port, got, c.want, c.source)
				}
			}
			for svc, addr := range map[string]string{"app": "HTTP_ADDR", "worker": "INTERNAL_ADDR"} {
				composeAddr, _ := envValue(core.Services[svc], addr)
				if got := kubeEnv(t, m, svc)[addr]; got != composeAddr {
					t.Errorf("%s %s: got %q, want compose's %q", svc, addr, got, composeAddr)
				}
			}
			// Who calls whom, by the addresses in the environment.
			calls := []struct{ from, addr, wantWorkload, wantPort string }{
				{"frontend", frontend["API_UPSTREAM"], "app", "http"},
			}
			if overlay == "dev" {
				calls = append(calls,
					struct{ from, addr, wantWorkload, wantPort string }{"app", net.JoinHostPort(app["DB_HOST"], app["DB_PORT"]), "db", "postgres"},
					struct{ from, addr, wantWorkload, wantPort string }{"app", app["REDIS_ADDR"], "queue", "redis"},
					struct{ from, addr, wantWorkload, wantPort string }{"worker", net.JoinHostPort(worker["SMTP_HOST"], worker["SMTP_PORT"]), "mail", "smtp"},
				)
			}
			for _, c := range calls {
				w, p, err := serviceTarget(t, m, c.addr)
				if err != nil || w != c.wantWorkload || p.Name != c.wantPort {
					t.Errorf("%s calls %s: reaches %s port %s (%v), want %s port %s", c.from, c.addr, w, p.Name, err, c.wantWorkload, c.wantPort)
				}
				if err == nil && fmt.Sprint(p.ContainerPort) != portOf(c.addr) {
					t.Errorf("%s calls %s: the container listens on %d; compose and the code use the same port on both sides", c.from, c.addr, p.ContainerPort)
				}
			}
		})
	}
}

// TestKubernetesMatchesComposeServices: image, user, command, writable
// paths, secrets, stop grace period and health checks of each compose
// service carry over to its workload.
func TestKubernetesMatchesComposeServices(t *testing.T) {
	core := projects(t)["base"]
	for _, overlay := range kubeOverlays {
		m := loadManifest(t, overlay)
		for _, name := range sortedServiceNames(core) {
			if overlay != "dev" && !slices.Contains(carteiroWorkloads, name) {
				continue // production: Postgres, Redis and the relay are outside
			}
			svc := core.Services[name]
			if name == "queue" {
				// The dev queue also defines redis-exporter's ACL user, as
				// compose's observability overlay does (dev runs the
				// exporters, components/exporters).
				svc = projects(t)["base+observability"].Services[name]
			}
			t.Run(overlay+"/"+name, func(t *testing.T) {
				w := m.workload(t, name)
				pod := w.pod.Spec
				c := pod.Containers[0]

				// Image: compose's own for the stores; carteiro's builds
				// otherwise, named after services/Dockerfile's target.
				repo, _, _ := strings.Cut(c.Image, ":")
				switch want, built := kubeImages[name]; {
				case built && overlay == "dev":
					if repo != want {
						t.Errorf("image %s: want %s", c.Image, want)
					}
					if svc.Build != nil && "carteiro/"+svc.Build.Target != want {
						t.Errorf("compose builds target %s: want it to be the image %s", svc.Build.Target, want)
					}
				case built:
					if !strings.HasSuffix(repo, "/"+want) || !strings.Contains(repo, ".") {
						t.Errorf("image %s: want a registry path ending in /%s", c.Image, want)
					}
				case c.Image != svc.Image:
					t.Errorf("image: got %s, want compose's %s (.env)", c.Image, svc.Image)
				}

				// User: the image's uid, as compose runs it.
				uid, _, _ := strings.Cut(svc.User, ":")
				if u, ok := imageUsers[uid]; ok {
					uid = u
				}
				if got := pod.SecurityContext.RunAsUser; got == nil || fmt.Sprint(*got) != uid {
					t.Errorf("runAsUser %v: want compose's user %s (uid %s)", got, svc.User, uid)
				}

				// Command: compose's command is the container's.
				if len(svc.Command) > 0 {
					got := slices.Concat(c.Command, c.Args)
					if !slices.Equal(got, []string(svc.Command)) {
						t.Errorf("command: got %q, want compose's %q", got, []string(svc.Command))
					}
				}

				// Writable paths: each tmpfs an emptyDir, each named volume
				// a volume claim.
				mounts := map[string]string{}
				for _, vm := range c.VolumeMounts {
					mounts[vm.MountPath] = vm.Name
				}
				emptyDirs := map[string]bool{}
				for _, v := range pod.Volumes {
					emptyDirs[v.Name] = v.EmptyDir != nil
				}
				for _, tmpfs := range svc.Tmpfs {
					path, _, _ := strings.Cut(tmpfs, ":")
					if !emptyDirs[mounts[path]] {
						t.Errorf("tmpfs %s: want an emptyDir mounted there", path)
					}
				}
				for _, v := range svc.Volumes {
					if v.Type == types.VolumeTypeVolume {
						if vol, ok := mounts[v.Target]; !ok || emptyDirs[vol] {
							t.Errorf("volume %s on %s: want the StatefulSet's volume claim mounted there", v.Source, v.Target)
						}
					}
				}

				// Secrets: the same files, at the same paths.
				env := m.env(t, &c)
				for _, s := range svc.Secrets {
					target := s.Target
					if target == "" {
						target = "/run/secrets/" + s.Source
					}
					if !secretFileMounted(pod, c, target) {
						t.Errorf("secret %s: want a Secret's key mounted at %s", s.Source, target)
					}
				}
				for k, v := range env {
					if strings.HasSuffix(k, "_FILE") && !secretFileMounted(pod, c, v) {
						t.Errorf("env %s=%s: no Secret key is mounted there", k, v)
					}
				}

				// Stop grace: at least compose's.
				if g := svc.StopGracePeriod; g != nil {
					if got := pod.TerminationGracePeriodSeconds; got == nil || time.Duration(*got)*time.Second < time.Duration(*g) {
						t.Errorf("terminationGracePeriodSeconds %v: want at least compose's stop_grace_period %s", got, time.Duration(*g))
					}
				}

				// Health: compose's check, as the probes.
				checkProbesMatchCompose(t, name, svc, c, env)
			})
		}
	}
}

// secretFileMounted reports whether path in container c is a key of a
// Secret, through a projected or secret volume.
func secretFileMounted(pod corev1.PodSpec, c corev1.Container, path string) bool {
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(path, vm.MountPath+"/")
		if !ok {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name {
				continue
			}
			if v.Secret != nil && slices.ContainsFunc(v.Secret.Items, func(i corev1.KeyToPath) bool { return i.Path == rel }) {
				return true
			}
			if v.Projected != nil {
				for _, s := range v.Projected.Sources {
					if s.Secret != nil && slices.ContainsFunc(s.Secret.Items, func(i corev1.KeyToPath) bool { return i.Path == rel }) {
						return true
					}
				}
			}
		}
	}
	return false
}

// checkProbesMatchCompose: the Go services' probes are the paths their
// health package serves (compose's `healthcheck` command asks /readyz);
// nginx's is the URL of compose's healthcheck; the stores' exec probes run
// compose's healthcheck command.
func checkProbesMatchCompose(t *testing.T, name string, svc types.ServiceConfig, c corev1.Container, env map[string]string) {
	t.Helper()
	test := []string(svc.HealthCheck.Test)
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "readiness": c.ReadinessProbe, "liveness": c.LivenessProbe}
	switch {
	case name == "app" || name == "worker":
		mux := http.NewServeMux()
		health.Register(mux, slog.New(slog.DiscardHandler))
		for kind, p := range probes {
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, p.HTTPGet.Path, nil))
			if rec.Code != http.StatusOK {
				t.Errorf("%s probe %s: the health package answers %d, want 200", kind, p.HTTPGet.Path, rec.Code)
			}
			if p.HTTPGet.Port.StrVal != "internal" || portOf(env["INTERNAL_ADDR"]) == "" {
				t.Errorf("%s probe on port %s: want the internal port (INTERNAL_ADDR %q)", kind, p.HTTPGet.Port.String(), env["INTERNAL_ADDR"])
			}
		}
		if want := []string{"CMD", "/" + strings.TrimPrefix(kubeImages[name], "carteiro/"), "healthcheck"}; !slices.Equal(test, want) {
			t.Errorf("compose healthcheck %q: want %q, which asks /readyz on INTERNAL_ADDR", test, want)
		}
	case slices.Contains(test, "wget"):
		u, err := url.Parse(test[len(test)-1])
		if err != nil {
			t.Fatal(err)
		}
		for kind, p := range probes {
			if p.HTTPGet == nil || p.HTTPGet.Path != u.Path || fmt.Sprint(containerPortByName(c, p.HTTPGet.Port.StrVal)) != u.Port() {
				t.Errorf("%s probe: want GET %s on port %s, as compose's healthcheck", kind, u.Path, u.Port())
			}
		}
	case test[0] == "CMD" || test[0] == "CMD-SHELL":
		want := test[1:]
		if test[0] == "CMD-SHELL" {
			want = []string{"sh", "-c", test[1]}
		}
		for kind, p := range probes {
			if p.Exec == nil || !slices.Equal(p.Exec.Command, want) {
				t.Errorf("%s probe: got %v, want compose's healthcheck %q", kind, p.Exec, want)
			}
		}
	}
}

func containerPortByName(c corev1.Container, name string) int32 {
	for _, p := range c.Ports {
		if p.Name == name {
			return p.ContainerPort
		}
	}
	return 0
}

// TestKubernetesMemoryFromBench: the api's and the worker's memory request
// covers the peak RSS make bench measured (bench/results.json), and the
// limit leaves twice that.
func TestKubernetesMemoryFromBench(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "bench/results.json"))
	if err != nil {
		t.Fatal(err)
	}
	var results struct {
		Modes []struct {
			RSS []struct {
				Processes map[string]struct {
					Peak float64 `json:"peak_rss_mib"`
				}
			} `json:"phase5_rss"`
		}
	}
	if err := json.Unmarshal(b, &results); err != nil {
		t.Fatal(err)
	}
	peak := map[string]float64{}
	for _, mode := range results.Modes {
		for _, r := range mode.RSS {
			for proc, p := range r.Processes {
				peak[proc] = math.Max(peak[proc], p.Peak)
			}
		}
	}
	for _, overlay := range kubeOverlays {
		m := loadManifest(t, overlay)
		for workload, proc := range map[string]string{"app": "api", "worker": "worker"} {
			if peak[proc] == 0 {
				t.Fatalf("bench/results.json: no peak RSS for %s", proc)
			}
			c := m.workload(t, workload).pod.Spec.Containers[0]
			req := c.Resources.Requests[corev1.ResourceMemory]
			limit := c.Resources.Limits[corev1.ResourceMemory]
			mib := func(q int64) float64 { return float64(q) / (1 << 20) }
			if mib(req.Value()) < peak[proc] || mib(limit.Value()) < 2*peak[proc] {
				t.Errorf("%s/%s memory request %s, limit %s: want ≥ the measured peak %.1f MiB and a limit ≥ twice it",
					overlay, workload, req.String(), limit.String(), peak[proc])
			}
		}
	}
}

// TestKubernetesTelemetryMatchesCompose: spans go to the observability
// namespace over the protocol and port compose uses; the PodMonitors scrape
// as observability/prometheus/prometheus.yml does (job names, which the
// dashboards and alerts select on, interval, path, protocols).
func TestKubernetesTelemetryMatchesCompose(t *testing.T) {
	obs := projects(t)["base+observability"]
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "observability/prometheus/prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var prom struct {
		Global struct {
			ScrapeProtocols []string `json:"scrape_protocols"`
		}
		ScrapeConfigs []struct {
			JobName        string                       `json:"job_name"`
			ScrapeInterval string                       `json:"scrape_interval"`
			MetricsPath    string                       `json:"metrics_path"`
			StaticConfigs  []struct{ Targets []string } `json:"static_configs"`
		} `json:"scrape_configs"`
	}
	if err := sigsyaml.Unmarshal(b, &prom); err != nil {
		t.Fatal(err)
	}
	for _, overlay := range kubeOverlays {
		m := loadManifest(t, overlay)
		for _, name := range []string{"app", "worker"} {
			t.Run(overlay+"/"+name, func(t *testing.T) {
				env := kubeEnv(t, m, name)
				composeEndpoint, _ := envValue(obs.Services[name], "OTEL_EXPORTER_OTLP_ENDPOINT")
				got, err := url.Parse(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
				if err != nil {
					t.Fatal(err)
				}
				want, _ := url.Parse(composeEndpoint)
				if got.Port() != want.Port() || !regexp.MustCompile(`^[a-z0-9-]+\.observability\.svc$`).MatchString(got.Hostname()) {
					t.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT %q: want a Service of the observability namespace on compose's port %s", got, want.Port())
				}
				if p, _ := envValue(obs.Services[name], "OTEL_EXPORTER_OTLP_PROTOCOL"); env["OTEL_EXPORTER_OTLP_PROTOCOL"] != p {
					t.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL %q: want compose's %q", env["OTEL_EXPORTER_OTLP_PROTOCOL"], p)
				}
				if overlay != "production" {
					return
				}
				pm := m.get("PodMonitor", name)
				if pm == nil {
					t.Fatalf("no PodMonitor %s", name)
				}
				protocols, _, _ := unstructured.NestedStringSlice(pm.Object, "spec", "scrapeProtocols")
				if !slices.Equal(protocols, prom.Global.ScrapeProtocols) {
					t.Errorf("PodMonitor scrapeProtocols %v: want prometheus.yml's %v", protocols, prom.Global.ScrapeProtocols)
				}
				eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
				ep := eps[0].(map[string]any)
				job := ""
				relabelings, _, _ := unstructured.NestedSlice(ep, "relabelings")
				for _, r := range relabelings {
					if r := r.(map[string]any); r["targetLabel"] == "job" {
						job = fmt.Sprint(r["replacement"])
					}
				}
				target := net.JoinHostPort(name, portOf(env["INTERNAL_ADDR"]))
				found := false
				for _, sc := range prom.ScrapeConfigs {
					for _, s := range sc.StaticConfigs {
						if slices.Contains(s.Targets, target) {
							found = true
							if job != sc.JobName || ep["interval"] != sc.ScrapeInterval || ep["path"] != sc.MetricsPath {
								t.Errorf("PodMonitor %s: job %q interval %v path %v, want prometheus.yml's %q %s %s",
									name, job, ep["interval"], ep["path"], sc.JobName, sc.ScrapeInterval, sc.MetricsPath)
							}
						}
					}
				}
				if !found {
					t.Errorf("prometheus.yml scrapes no %s: the PodMonitor has nothing to match", target)
				}
			})
		}
	}
}

// TestFrontendImage: the frontend image is the compose frontend's image
// plus the two directories compose mounts into it, at the same paths.
func TestFrontendImage(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "deploy/frontend/Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(b)
	svc := projects(t)["base"].Services["frontend"]
	if m := regexp.MustCompile(`(?m)^ARG NGINX_IMAGE=(\S+)$`).FindStringSubmatch(dockerfile); m == nil || m[1] != svc.Image {
		t.Errorf("deploy/frontend/Dockerfile ARG NGINX_IMAGE: got %v, want compose's frontend image %s", m, svc.Image)
	}
	if !strings.Contains(dockerfile, "\nFROM ${NGINX_IMAGE}\n") {
		t.Error("deploy/frontend/Dockerfile: want FROM ${NGINX_IMAGE}")
	}
	for _, v := range svc.Volumes {
		src, err := filepath.Rel(root, v.Source)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("\nCOPY %s/ %s/\n", src, v.Target); !strings.Contains(dockerfile, want) {
			t.Errorf("deploy/frontend/Dockerfile: want %q (compose mounts %s on %s)", strings.TrimSpace(want), src, v.Target)
		}
	}
	uid, _, _ := strings.Cut(svc.User, ":")
	if !strings.Contains(dockerfile, "\nUSER "+svc.User+"\n") || uid != "101" {
		t.Errorf("deploy/frontend/Dockerfile: want USER %s, compose's user", svc.User)
	}
}
