package deploy

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/carteiro/carteiro/internal/devstack"
)

// TestKubernetesExporters: the exporters of components/exporters run as
// compose's and the native stack's do: the same images (.env), users,
// logins and flags; the dev queue defines the same ACL user and probes
// with the same script as compose's healthcheck, the dev init
// container makes the same role; the PodMonitors give the jobs the rules
// select on.
func TestKubernetesExporters(t *testing.T) {
	env := readDotEnv(t)
	compose := projects(t)["base+observability"]
	dev, err := devstack.Load(repoRoot(t), []string{"DEV_DIR=" + t.TempDir(), "OBS=1"})
	if err != nil {
		t.Fatal(err)
	}
	var nativeRedisArgs []string
	for _, c := range dev.Components() {
		if c.Name == "redis-exporter" {
			nativeRedisArgs = c.Args
		}
	}
	for _, overlay := range kubeOverlays {
		t.Run(overlay, func(t *testing.T) {
			m := loadManifest(t, overlay)
			for name, image := range map[string]string{"postgres-exporter": "POSTGRES_EXPORTER_IMAGE", "redis-exporter": "REDIS_EXPORTER_IMAGE"} {
				w := m.workload(t, name)
				c := w.pod.Spec.Containers[0]
				if c.Image != env[image] {
					t.Errorf("%s image: got %s, want .env %s %s", name, c.Image, image, env[image])
				}
				uid, _, _ := strings.Cut(compose.Services[name].User, ":")
				if u := w.pod.Spec.SecurityContext.RunAsUser; u == nil || strconv.FormatInt(*u, 10) != uid {
					t.Errorf("%s runAsUser: got %v, want compose's %s", name, u, uid)
				}
			}

			pg := m.workload(t, "postgres-exporter")
			pgc := pg.pod.Spec.Containers[0]
			pgEnv := m.env(t, &pgc)
			if pgEnv["DATA_SOURCE_USER"] != dev.PostgresExporter.User {
				t.Errorf("postgres-exporter DATA_SOURCE_USER: got %q, want %q (devstack, compose)", pgEnv["DATA_SOURCE_USER"], dev.PostgresExporter.User)
			}
			if got, want := slices.Concat(pgc.Command, pgc.Args), []string(compose.Services["postgres-exporter"].Command); !slices.Equal(got, want) {
				t.Errorf("postgres-exporter arguments: got %q, want compose's %q", got, want)
			}
			if got := kubeExpand(pgEnv["DATA_SOURCE_URI"], pgEnv); !strings.HasPrefix(got, pgEnv["DB_HOST"]+":"+pgEnv["DB_PORT"]+"/"+pgEnv["DB_NAME"]+"?sslmode="+pgEnv["DB_SSLMODE"]) {
				t.Errorf("postgres-exporter DATA_SOURCE_URI: got %q, want carteiro's database and TLS settings", got)
			}

			rx := m.workload(t, "redis-exporter").pod.Spec.Containers[0]
			rxEnv := m.env(t, &rx)
			words := strings.Fields(kubeExpand(strings.Join(slices.Concat(rx.Command, rx.Args), " "), rxEnv))
			for _, a := range nativeRedisArgs {
				switch {
				case strings.HasPrefix(a, "--redis.addr="):
					if want := "--redis.addr=redis://" + rxEnv["REDIS_ADDR"]; !slices.Contains(words, want) {
						t.Errorf("redis-exporter: got %v, want %s (carteiro's REDIS_ADDR)", words, want)
					}
				case strings.HasPrefix(a, "--web.listen-address="):
				case strings.HasPrefix(a, "--redis.password-file="):
					// The same script as compose's writes it from the Secret.
					if !slices.Contains(words, "--redis.password-file=/tmp/redis-exporter-passwords.json") {
						t.Errorf("redis-exporter: got %v, want the password file compose's script writes", words)
					}
				case !slices.Contains(words, a):
					t.Errorf("redis-exporter: got %v, want %q as natively and in compose", words, a)
				}
			}
			composeScript := strings.ReplaceAll(strings.Join(compose.Services["redis-exporter"].Command, " "), "queue:6379", rxEnv["REDIS_ADDR"])
			if got := kubeExpand(strings.Join(rx.Args, " "), rxEnv); got != composeScript {
				t.Errorf("redis-exporter script: got %q, want compose's %q (for REDIS_ADDR)", got, composeScript)
			}

			if overlay == "dev" {
				// The queue's ACL user: compose's overlay command, whose
				// rules TestQueueOverlay holds to devstack's.
				q := m.workload(t, "queue").pod.Spec.Containers[0]
				got := strings.Join(slices.Concat(q.Command, q.Args), " ")
				if want := strings.Join(compose.Services["queue"].Command, " "); got != want {
					t.Errorf("dev queue command: got %q, want compose's %q", got, want)
				}
				// Its probes: compose's healthcheck script (the password
				// read as the command reads it, AUTH on redis-cli's
				// standard input), which TestQueueConfig holds and
				// TestQueueCommand runs.
				hc := compose.Services["queue"].HealthCheck
				if hc == nil || len(hc.Test) != 2 || hc.Test[0] != "CMD-SHELL" {
					t.Fatalf("compose queue healthcheck: got %+v, want CMD-SHELL <script>", hc)
				}
				for name, p := range map[string]*corev1.Probe{"startupProbe": q.StartupProbe, "readinessProbe": q.ReadinessProbe, "livenessProbe": q.LivenessProbe} {
					if want := []string{"sh", "-c", hc.Test[1]}; p == nil || p.Exec == nil || !slices.Equal(p.Exec.Command, want) {
						t.Errorf("dev queue %s: got %+v, want exec %q (compose's healthcheck)", name, p, want)
					}
				}
				init := pg.pod.Spec.InitContainers
				if len(init) != 1 || init[0].Image != env["POSTGRES_IMAGE"] ||
					!strings.Contains(strings.Join(init[0].Command, " "), "-v role="+dev.PostgresExporter.User+" ") ||
					!strings.Contains(strings.Join(init[0].Command, " "), "-f /etc/postgres-exporter/monitor-role.sql") {
					t.Errorf("dev postgres-exporter init containers: got %+v, want psql (POSTGRES_IMAGE) running monitor-role.sql for %s", init, dev.PostgresExporter.User)
				}
				return
			}
			// Production: Prometheus Operator scrapes them as the jobs the
			// rules and dashboards select on.
			for name, job := range map[string]string{"postgres-exporter": "postgres", "redis-exporter": "redis"} {
				pm := m.get("PodMonitor", name)
				if pm == nil {
					t.Errorf("no PodMonitor %s", name)
					continue
				}
				eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
				ok := len(eps) == 1
				for _, ep := range eps {
					ep := ep.(map[string]any)
					rel, _ := ep["relabelings"].([]any)
					ok = ok && ep["port"] == "metrics" && len(rel) == 1 && rel[0].(map[string]any)["replacement"] == job
				}
				if !ok {
					t.Errorf("PodMonitor %s: got %v, want port metrics relabelled to job %q", name, eps, job)
				}
			}
		})
	}
}
