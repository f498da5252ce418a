package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/carteiro/carteiro/services/internal/config"
)

// kubeRule is one rule of the Kubernetes deployment policy, in the style of
// the compose policy (policy_test.go): check lists what breaks the rule in a
// rendered overlay, and breaks makes a copy of the manifests that the rule
// must reject, so that every check is shown able to fail.
type kubeRule struct {
	name string
	// only limits the rule to one overlay ("" = every overlay).
	only   string
	check  func(t *testing.T, m *manifest) []string
	breaks func(t *testing.T, m *manifest)
}

// carteiroWorkloads are the Deployments every overlay runs.
var carteiroWorkloads = []string{"app", "worker", "frontend"}

// scaledWorkloads are the Deployments an autoscaler sizes in production.
var scaledWorkloads = map[string]string{"app": "HorizontalPodAutoscaler", "worker": "ScaledObject"}

func kubeRules() []kubeRule {
	return []kubeRule{
		{
			name:  "namespace labelled PodSecurity restricted (enforce, audit, warn)",
			check: checkNamespaceRestricted,
			breaks: func(t *testing.T, m *manifest) {
				ns := m.ofKind("Namespace")[0]
				l := ns.GetLabels()
				delete(l, "pod-security.kubernetes.io/warn")
				ns.SetLabels(l)
			},
		},
		{
			name:  "every container runs as a non-root uid",
			check: checkEveryContainer(checkNonRoot),
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "frontend", func(p *corev1.PodSpec) { p.Containers[0].SecurityContext.RunAsUser = ptr[int64](0) })
			},
		},
		{
			name: "read-only root filesystem",
			check: checkEveryContainer(func(p *corev1.PodSpec, c *corev1.Container) []string {
				if s := c.SecurityContext; s == nil || s.ReadOnlyRootFilesystem == nil || !*s.ReadOnlyRootFilesystem {
					return []string{"readOnlyRootFilesystem is not true"}
				}
				return nil
			}),
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "worker", func(p *corev1.PodSpec) { p.Containers[0].SecurityContext.ReadOnlyRootFilesystem = ptr(false) })
			},
		},
		{
			name: "capabilities: drop ALL, add none",
			check: checkEveryContainer(func(p *corev1.PodSpec, c *corev1.Container) []string {
				s := c.SecurityContext
				if s == nil || s.Capabilities == nil || !slices.Equal(s.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(s.Capabilities.Add) > 0 {
					return []string{"capabilities: want drop [ALL] and no add"}
				}
				return nil
			}),
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "app", func(p *corev1.PodSpec) { p.InitContainers[0].SecurityContext.Capabilities.Drop = nil })
			},
		},
		{
			name: "no privilege escalation, not privileged",
			check: checkEveryContainer(func(p *corev1.PodSpec, c *corev1.Container) []string {
				s := c.SecurityContext
				if s == nil || s.AllowPrivilegeEscalation == nil || *s.AllowPrivilegeEscalation || (s.Privileged != nil && *s.Privileged) {
					return []string{"allowPrivilegeEscalation: want false (and not privileged)"}
				}
				return nil
			}),
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "frontend", func(p *corev1.PodSpec) { p.Containers[0].SecurityContext.AllowPrivilegeEscalation = ptr(true) })
			},
		},
		{
			name: "seccomp profile RuntimeDefault",
			check: checkEveryContainer(func(p *corev1.PodSpec, c *corev1.Container) []string {
				profile := (*corev1.SeccompProfile)(nil)
				if p.SecurityContext != nil {
					profile = p.SecurityContext.SeccompProfile
				}
				if c.SecurityContext != nil && c.SecurityContext.SeccompProfile != nil {
					profile = c.SecurityContext.SeccompProfile
				}
				if profile == nil || profile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					return []string{"seccompProfile: want RuntimeDefault"}
				}
				return nil
			}),
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "worker", func(p *corev1.PodSpec) {
					p.SecurityContext.SeccompProfile = nil
					p.Containers[0].SecurityContext.SeccompProfile = &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}
				})
			},
		},
		{
			name:  "writable paths are emptyDir or the workload's own volume claim; no hostPath",
			check: checkWritablePaths,
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "frontend", func(p *corev1.PodSpec) {
					p.Volumes = append(p.Volumes, corev1.Volume{Name: "cache", VolumeSource: corev1.VolumeSource{
						HostPath: &corev1.HostPathVolumeSource{Path: "/var/cache/nginx"}}})
					p.Containers[0].VolumeMounts = append(p.Containers[0].VolumeMounts, corev1.VolumeMount{Name: "cache", MountPath: "/var/cache/nginx"})
				})
			},
		},
		{
			name:  "own ServiceAccount per workload, no token mounted",
			check: checkServiceAccounts,
			breaks: func(t *testing.T, m *manifest) {
				unstructured.SetNestedField(m.get("ServiceAccount", "worker").Object, true, "automountServiceAccountToken")
			},
		},
		{
			name: "no service links (a Service `db` would set DB_PORT)",
			check: checkEveryPod(func(w workload) []string {
				if l := w.pod.Spec.EnableServiceLinks; l == nil || *l {
					return []string{"enableServiceLinks: want false"}
				}
				return nil
			}),
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "worker", func(p *corev1.PodSpec) { p.EnableServiceLinks = ptr(true) })
			},
		},
		{
			name: "CPU and memory requests and a memory limit on every container",
			check: checkEveryContainer(func(p *corev1.PodSpec, c *corev1.Container) []string {
				r := c.Resources
				var bad []string
				for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if q, ok := r.Requests[name]; !ok || q.IsZero() {
						bad = append(bad, "no "+string(name)+" request")
					}
				}
				limit, ok := r.Limits[corev1.ResourceMemory]
				req := r.Requests[corev1.ResourceMemory]
				if !ok || limit.Cmp(req) < 0 {
					bad = append(bad, "memory limit missing or below the request")
				}
				return bad
			}),
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "frontend", func(p *corev1.PodSpec) { delete(p.Containers[0].Resources.Limits, corev1.ResourceMemory) })
			},
		},
		{
			name:  "startup, readiness and liveness probes; app and worker: /readyz and /healthz on the internal port",
			check: checkProbes,
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "app", func(p *corev1.PodSpec) { p.Containers[0].ReadinessProbe.HTTPGet.Path = "/healthz" })
			},
		},
		{
			name:  "worker's grace period outlasts WORKER_SHUTDOWN_TIMEOUT",
			check: checkWorkerGrace,
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "worker", func(p *corev1.PodSpec) { p.TerminationGracePeriodSeconds = ptr[int64](20) })
			},
		},
		{
			name:  "pods behind a Service wait for it to forget them before stopping",
			check: checkPreStop,
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "frontend", func(p *corev1.PodSpec) { p.Containers[0].Lifecycle = nil })
			},
		},
		{
			name:  "pods behind a Service wait as long as the endpoints take to catch up",
			check: checkPreStop,
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "frontend", func(p *corev1.PodSpec) { p.Containers[0].Lifecycle.PreStop.Sleep.Seconds = 5 })
			},
		},
		{
			name:  "the frontend's grace period outlasts its preStop sleep and nginx's longest proxied request",
			check: checkFrontendStop,
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "frontend", func(p *corev1.PodSpec) { p.TerminationGracePeriodSeconds = ptr[int64](20) })
			},
		},
		{
			name:  "the api waits once before closing its listener: the preStop sleep, SHUTDOWN_DELAY 0",
			check: checkAPIStop,
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "app", func(p *corev1.PodSpec) {
					p.Containers[0].Env = append(p.Containers[0].Env, corev1.EnvVar{Name: "SHUTDOWN_DELAY", Value: "5s"})
				})
			},
		},
		{
			name:  "the api's grace period outlasts its preStop sleep and its stop (SHUTDOWN_DRAIN, Shutdown)",
			check: checkAPIStop,
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "app", func(p *corev1.PodSpec) { p.TerminationGracePeriodSeconds = ptr[int64](15) })
			},
		},
		{
			name:  "spread across nodes",
			check: checkTopologySpread,
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "app", func(p *corev1.PodSpec) { p.TopologySpreadConstraints[0].TopologyKey = "topology.kubernetes.io/zone" })
			},
		},
		{
			name:  "NetworkPolicy default deny, ingress and egress",
			check: checkDefaultDeny,
			breaks: func(t *testing.T, m *manifest) {
				edit(t, m.get("NetworkPolicy", "default-deny"), func(n *networkingv1.NetworkPolicy) {
					n.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
				})
			},
		},
		{
			name:  "Services: only inside the cluster, never the internal port",
			check: checkServices,
			breaks: func(t *testing.T, m *manifest) {
				edit(t, m.get("Service", "app"), func(s *corev1.Service) {
					s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: "internal", Port: 9101, TargetPort: intstr.FromString("internal")})
				})
			},
		},
		{
			name: "images pinned by tag or digest (never latest)",
			check: checkEveryContainer(func(p *corev1.PodSpec, c *corev1.Container) []string {
				if !pinnedImage(c.Image) {
					return []string{"image " + c.Image + ": want a tag other than latest, or a digest"}
				}
				return nil
			}),
			breaks: func(t *testing.T, m *manifest) {
				m.editPod(t, "worker", func(p *corev1.PodSpec) { p.Containers[0].Image = "carteiro/worker:latest" })
			},
		},
		{
			name:  "secrets: production generates none; every Secret a pod reads is there or referenced by name",
			check: checkSecrets,
			breaks: func(t *testing.T, m *manifest) {
				if m.overlay == "production" {
					m.objects = append(m.objects, &unstructured.Unstructured{Object: map[string]any{
						"apiVersion": "v1", "kind": "Secret",
						"metadata":   map[string]any{"name": "carteiro-db", "namespace": "carteiro"},
						"stringData": map[string]any{"password": "hunter2"}}})
					return
				}
				m.remove("Secret", m.get("Secret", "carteiro-redis").GetName())
			},
		},
		{
			name:  "a PodDisruptionBudget per workload, which a drain can satisfy",
			only:  "production",
			check: checkDisruptionBudgets,
			breaks: func(t *testing.T, m *manifest) {
				m.remove("PodDisruptionBudget", "frontend")
			},
		},
		{
			name:  "api: HorizontalPodAutoscaler on CPU; the Deployment leaves replicas to it",
			only:  "production",
			check: checkAPIAutoscaler,
			breaks: func(t *testing.T, m *manifest) {
				edit(t, m.get("Deployment", "app"), func(d *appsv1.Deployment) { d.Spec.Replicas = ptr[int32](3) })
			},
		},
		{
			name:  "worker: KEDA redis-streams on the consumer group's lag, password from the Secret, a cool-down for sends in flight",
			only:  "production",
			check: checkWorkerScaledObject,
			breaks: func(t *testing.T, m *manifest) {
				so := m.get("ScaledObject", "worker")
				triggers, _, _ := unstructured.NestedSlice(so.Object, "spec", "triggers")
				delete(triggers[0].(map[string]any)["metadata"].(map[string]any), "lagCount")
				unstructured.SetNestedSlice(so.Object, triggers, "spec", "triggers")
			},
		},
		{
			name:  "PodMonitors scrape the internal ports of app and worker",
			only:  "production",
			check: checkPodMonitors,
			breaks: func(t *testing.T, m *manifest) {
				pm := m.get("PodMonitor", "worker")
				eps, _, _ := unstructured.NestedSlice(pm.Object, "spec", "podMetricsEndpoints")
				eps[0].(map[string]any)["port"] = "http"
				unstructured.SetNestedSlice(pm.Object, eps, "spec", "podMetricsEndpoints")
			},
		},
		{
			name:  "every Grafana dashboard in a ConfigMap for the sidecar",
			only:  "production",
			check: checkDashboards,
			breaks: func(t *testing.T, m *manifest) {
				m.remove("ConfigMap", "carteiro-dashboard-queue")
			},
		},
		{
			name:  "the edge: an HTTPRoute to the frontend Service's port",
			only:  "production",
			check: checkHTTPRoute,
			breaks: func(t *testing.T, m *manifest) {
				r := m.get("HTTPRoute", "frontend")
				rules, _, _ := unstructured.NestedSlice(r.Object, "spec", "rules")
				rules[0].(map[string]any)["backendRefs"].([]any)[0].(map[string]any)["port"] = int64(80)
				unstructured.SetNestedSlice(r.Object, rules, "spec", "rules")
			},
		},
	}
}

// TestKubernetesPolicy checks every rule on every overlay, then checks that
// each rule rejects its broken copy.
func TestKubernetesPolicy(t *testing.T) {
	for _, overlay := range kubeOverlays {
		m := loadManifest(t, overlay)
		for _, rule := range kubeRules() {
			if rule.only != "" && rule.only != overlay {
				continue
			}
			t.Run(overlay+"/"+rule.name, func(t *testing.T) {
				for _, p := range rule.check(t, m) {
					t.Error(p)
				}
				broken := m.clone()
				rule.breaks(t, broken)
				if len(rule.check(t, broken)) == 0 {
					t.Errorf("the broken copy passed: the check cannot fail")
				}
			})
		}
	}
}

// checkEveryPod applies check to every workload's pod template.
func checkEveryPod(check func(w workload) []string) func(t *testing.T, m *manifest) []string {
	return func(t *testing.T, m *manifest) []string {
		var out []string
		for _, w := range m.workloads(t) {
			for _, p := range check(w) {
				out = append(out, fmt.Sprintf("%s %s: %s", w.kind, w.name, p))
			}
		}
		return out
	}
}

// checkEveryContainer applies check to every container, init containers
// included.
func checkEveryContainer(check func(p *corev1.PodSpec, c *corev1.Container) []string) func(t *testing.T, m *manifest) []string {
	return checkEveryPod(func(w workload) []string {
		var out []string
		spec := &w.pod.Spec
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			for _, p := range check(spec, &c) {
				out = append(out, "container "+c.Name+": "+p)
			}
		}
		return out
	})
}

func checkNamespaceRestricted(t *testing.T, m *manifest) []string {
	nss := m.ofKind("Namespace")
	if len(nss) != 1 {
		return []string{fmt.Sprintf("got %d Namespaces, want 1", len(nss))}
	}
	var out []string
	for _, mode := range []string{"enforce", "audit", "warn"} {
		if got := nss[0].GetLabels()["pod-security.kubernetes.io/"+mode]; got != "restricted" {
			out = append(out, fmt.Sprintf("namespace %s pod-security.kubernetes.io/%s: got %q, want restricted", nss[0].GetName(), mode, got))
		}
	}
	for _, o := range m.objects {
		if o.GetKind() != "Namespace" && o.GetNamespace() != nss[0].GetName() {
			out = append(out, fmt.Sprintf("%s: namespace %q, want %s", kubeObjectName(o), o.GetNamespace(), nss[0].GetName()))
		}
	}
	return out
}

// checkNonRoot: runAsNonRoot and a non-zero uid, from the container or
// its pod.
func checkNonRoot(p *corev1.PodSpec, c *corev1.Container) []string {
	var nonRoot *bool
	var uid *int64
	if s := p.SecurityContext; s != nil {
		nonRoot, uid = s.RunAsNonRoot, s.RunAsUser
	}
	if s := c.SecurityContext; s != nil {
		if s.RunAsNonRoot != nil {
			nonRoot = s.RunAsNonRoot
		}
		if s.RunAsUser != nil {
			uid = s.RunAsUser
		}
	}
	if nonRoot == nil || !*nonRoot || uid == nil || *uid == 0 {
		return []string{"want runAsNonRoot: true and a non-zero runAsUser (the image's uid)"}
	}
	return nil
}

func checkWritablePaths(t *testing.T, m *manifest) []string {
	var out []string
	for _, o := range m.objects {
		var spec *corev1.PodSpec
		claims := map[string]bool{}
		switch o.GetKind() {
		case "Deployment":
			spec = &typed[appsv1.Deployment](t, o).Spec.Template.Spec
		case "StatefulSet":
			s := typed[appsv1.StatefulSet](t, o)
			spec = &s.Spec.Template.Spec
			for _, c := range s.Spec.VolumeClaimTemplates {
				claims[c.Name] = true
			}
		default:
			continue
		}
		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
			if v.HostPath != nil {
				out = append(out, fmt.Sprintf("%s volume %s: hostPath", kubeObjectName(o), v.Name))
			}
		}
		for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
			for _, mount := range c.VolumeMounts {
				v, isVolume := volumes[mount.Name]
				switch {
				case mount.ReadOnly:
				case claims[mount.Name]:
				case isVolume && v.EmptyDir != nil:
				default:
					out = append(out, fmt.Sprintf("%s container %s: writable mount %s is neither an emptyDir nor a volume claim", kubeObjectName(o), c.Name, mount.MountPath))
				}
			}
		}
	}
	return out
}

func checkServiceAccounts(t *testing.T, m *manifest) []string {
	var out []string
	for _, w := range m.workloads(t) {
		spec := w.pod.Spec
		if spec.ServiceAccountName == "" || spec.ServiceAccountName == "default" {
			out = append(out, fmt.Sprintf("%s %s: serviceAccountName %q, want its own", w.kind, w.name, spec.ServiceAccountName))
		}
		if a := spec.AutomountServiceAccountToken; a == nil || *a {
			out = append(out, fmt.Sprintf("%s %s: automountServiceAccountToken: want false", w.kind, w.name))
		}
		sa := m.get("ServiceAccount", spec.ServiceAccountName)
		if sa == nil {
			out = append(out, fmt.Sprintf("%s %s: ServiceAccount %s is not in the overlay", w.kind, w.name, spec.ServiceAccountName))
			continue
		}
		if a, found, _ := unstructured.NestedBool(sa.Object, "automountServiceAccountToken"); !found || a {
			out = append(out, fmt.Sprintf("ServiceAccount %s: automountServiceAccountToken: want false", sa.GetName()))
		}
	}
	return out
}

func checkProbes(t *testing.T, m *manifest) []string {
	return checkEveryPod(func(w workload) []string {
		var out []string
		for _, c := range w.pod.Spec.Containers {
			if c.StartupProbe == nil || c.ReadinessProbe == nil || c.LivenessProbe == nil {
				out = append(out, "container "+c.Name+": want startup, readiness and liveness probes")
				continue
			}
			if w.name != "app" && w.name != "worker" {
				continue
			}
			for _, p := range []struct {
				kind  string
				probe *corev1.Probe
				path  string
			}{{"startup", c.StartupProbe, "/readyz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
				h := p.probe.HTTPGet
				if h == nil || h.Path != p.path || h.Port != intstr.FromString("internal") {
					out = append(out, fmt.Sprintf("container %s %s probe: got %+v, want GET %s on port internal", c.Name, p.kind, h, p.path))
				}
			}
		}
		return out
	})(t, m)
}

func checkWorkerGrace(t *testing.T, m *manifest) []string {
	w := m.workload(t, "worker")
	cfg, err := config.LoadWorker(configEnv(t, m.env(t, &w.pod.Spec.Containers[0])))
	if err != nil {
		return []string{fmt.Sprintf("worker configuration: %v", err)}
	}
	grace := w.pod.Spec.TerminationGracePeriodSeconds
	if grace == nil || float64(*grace) <= cfg.ShutdownTimeout.Seconds() {
		return []string{fmt.Sprintf("terminationGracePeriodSeconds %v: want more than WORKER_SHUTDOWN_TIMEOUT %s", grace, cfg.ShutdownTimeout)}
	}
	return nil
}

// checkAPIStop: the api's pod waits for the Service to forget it once,
// with the kubelet's preStop sleep (README "Restarts without errors"), not
// again with SHUTDOWN_DELAY after SIGTERM; its grace period, which counts
// the sleep, outlasts the sleep and the api's StopTime.
func checkAPIStop(t *testing.T, m *manifest) []string {
	w := m.workload(t, "app")
	c := container(t, &w.pod.Spec, "api")
	cfg, err := config.LoadAPI(configEnv(t, m.env(t, c)))
	if err != nil {
		return []string{fmt.Sprintf("api configuration: %v", err)}
	}
	var out []string
	sleep := preStopSleep(c)
	if sleep == 0 || cfg.ShutdownDelay != 0 {
		out = append(out, fmt.Sprintf("preStop sleep %s, SHUTDOWN_DELAY %s: want the sleep alone", sleep, cfg.ShutdownDelay))
	}
	grace := w.pod.Spec.TerminationGracePeriodSeconds
	if need := sleep + cfg.StopTime(); grace == nil || time.Duration(*grace)*time.Second <= need {
		out = append(out, fmt.Sprintf("terminationGracePeriodSeconds %v: want more than the preStop sleep and the api's stop, %s", grace, need))
	}
	return out
}

func checkTopologySpread(t *testing.T, m *manifest) []string {
	var out []string
	for _, name := range carteiroWorkloads {
		w := m.workload(t, name)
		spread := false
		for _, c := range w.pod.Spec.TopologySpreadConstraints {
			sel, err := metav1.LabelSelectorAsSelector(c.LabelSelector)
			spread = spread || (c.TopologyKey == "kubernetes.io/hostname" && err == nil && sel.Matches(labels.Set(w.pod.Labels)))
		}
		if !spread {
			out = append(out, name+": no topologySpreadConstraint over kubernetes.io/hostname selecting its own pods")
		}
	}
	return out
}

func checkDefaultDeny(t *testing.T, m *manifest) []string {
	for _, o := range m.ofKind("NetworkPolicy") {
		n := typed[networkingv1.NetworkPolicy](t, o)
		if len(n.Spec.PodSelector.MatchLabels) == 0 && len(n.Spec.PodSelector.MatchExpressions) == 0 &&
			len(n.Spec.Ingress) == 0 && len(n.Spec.Egress) == 0 &&
			slices.Contains(n.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) &&
			slices.Contains(n.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			return nil
		}
	}
	return []string{"no NetworkPolicy selects every pod and denies both ingress and egress"}
}

func checkServices(t *testing.T, m *manifest) []string {
	var out []string
	for _, o := range m.ofKind("Service") {
		s := typed[corev1.Service](t, o)
		if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
			out = append(out, fmt.Sprintf("Service %s: type %s, want ClusterIP (the edge is the Gateway's)", s.Name, s.Spec.Type))
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.String() == "internal" || p.Name == "internal" {
				out = append(out, fmt.Sprintf("Service %s: exposes the internal port (/metrics, /readyz)", s.Name))
			}
		}
	}
	return out
}

// pinnedImage: a tag that is not latest, or a digest.
func pinnedImage(image string) bool {
	if strings.Contains(image, "@sha256:") {
		return true
	}
	i := strings.LastIndex(image, ":")
	if i < 0 || strings.Contains(image[i:], "/") {
		return false
	}
	return image[i+1:] != "latest" && image[i+1:] != ""
}

// secretsRead are the Secrets the pods mount.
func secretsRead(m *manifest, t *testing.T) map[string]bool {
	out := map[string]bool{}
	for _, w := range m.workloads(t) {
		for _, v := range w.pod.Spec.Volumes {
			if v.Secret != nil {
				out[v.Secret.SecretName] = true
			}
			if v.Projected != nil {
				for _, s := range v.Projected.Sources {
					if s.Secret != nil {
						out[s.Secret.Name] = true
					}
				}
			}
		}
	}
	return out
}

func checkSecrets(t *testing.T, m *manifest) []string {
	var out []string
	read := secretsRead(m, t)
	if len(read) == 0 {
		out = append(out, "no pod reads a Secret")
	}
	if m.overlay == "production" {
		for _, o := range m.ofKind("Secret") {
			out = append(out, fmt.Sprintf("Secret %s: production must reference existing Secrets, never carry one", o.GetName()))
		}
		return out
	}
	for name := range read {
		if s := m.get("Secret", name); s == nil || s.GetName() != name {
			out = append(out, fmt.Sprintf("Secret %s is read by a pod but not generated by overlay %s", name, m.overlay))
		}
	}
	return out
}

// minReplicas is the fewest pods the workload may have in m: its
// autoscaler's minimum, or its replicas (unset means 1).
func minReplicas(t *testing.T, m *manifest, name string) int64 {
	for _, o := range m.ofKind("HorizontalPodAutoscaler") {
		h := typed[autoscalingv2.HorizontalPodAutoscaler](t, o)
		if h.Spec.ScaleTargetRef.Name == name && h.Spec.MinReplicas != nil {
			return int64(*h.Spec.MinReplicas)
		}
	}
	for _, o := range m.ofKind("ScaledObject") {
		if target, _, _ := unstructured.NestedString(o.Object, "spec", "scaleTargetRef", "name"); target == name {
			n, _, _ := unstructured.NestedInt64(o.Object, "spec", "minReplicaCount")
			return n
		}
	}
	if r := m.workload(t, name).replicas; r != nil {
		return int64(*r)
	}
	return 1
}

func checkDisruptionBudgets(t *testing.T, m *manifest) []string {
	var out []string
	for _, name := range carteiroWorkloads {
		w := m.workload(t, name)
		var budgets []*policyv1.PodDisruptionBudget
		for _, o := range m.ofKind("PodDisruptionBudget") {
			b := typed[policyv1.PodDisruptionBudget](t, o)
			sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
			if err == nil && sel.Matches(labels.Set(w.pod.Labels)) {
				budgets = append(budgets, b)
			}
		}
		if len(budgets) != 1 {
			out = append(out, fmt.Sprintf("%s: %d PodDisruptionBudgets select its pods, want 1", name, len(budgets)))
			continue
		}
		b := budgets[0]
		if b.Spec.MaxUnavailable == nil || b.Spec.MaxUnavailable.IntValue() < 1 {
			out = append(out, fmt.Sprintf("PodDisruptionBudget %s: want maxUnavailable ≥ 1 (never blocks a drain)", b.Name))
		}
		if n := minReplicas(t, m, name); n < 2 {
			out = append(out, fmt.Sprintf("%s: at least %d replica(s): a drain takes the only one, want ≥ 2", name, n))
		}
	}
	return out
}

func checkAPIAutoscaler(t *testing.T, m *manifest) []string {
	var out []string
	hpas := m.ofKind("HorizontalPodAutoscaler")
	if len(hpas) != 1 {
		return []string{fmt.Sprintf("got %d HorizontalPodAutoscalers, want 1 (the api's)", len(hpas))}
	}
	h := typed[autoscalingv2.HorizontalPodAutoscaler](t, hpas[0])
	if ref := h.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != "app" {
		out = append(out, fmt.Sprintf("HPA target %s/%s, want Deployment/app", ref.Kind, ref.Name))
	}
	cpu := slices.ContainsFunc(h.Spec.Metrics, func(s autoscalingv2.MetricSpec) bool {
		return s.Type == autoscalingv2.ResourceMetricSourceType && s.Resource.Name == corev1.ResourceCPU &&
			s.Resource.Target.Type == autoscalingv2.UtilizationMetricType && s.Resource.Target.AverageUtilization != nil
	})
	if !cpu {
		out = append(out, "HPA: no CPU utilisation target")
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas <= *h.Spec.MinReplicas {
		out = append(out, "HPA: want minReplicas ≥ 2 and maxReplicas above it")
	}
	for name := range scaledWorkloads {
		if r := m.workload(t, name).replicas; r != nil {
			out = append(out, fmt.Sprintf("Deployment %s: replicas %d is set; applying again would reset what its autoscaler chose", name, *r))
		}
	}
	return out
}

func checkWorkerScaledObject(t *testing.T, m *manifest) []string {
	var out []string
	objs := m.ofKind("ScaledObject")
	if len(objs) != 1 {
		return []string{fmt.Sprintf("got %d ScaledObjects, want 1 (the worker's)", len(objs))}
	}
	so := objs[0].Object
	if target, _, _ := unstructured.NestedString(so, "spec", "scaleTargetRef", "name"); target != "worker" {
		out = append(out, fmt.Sprintf("ScaledObject target %q, want worker", target))
	}
	w := m.workload(t, "worker")
	env := m.env(t, &w.pod.Spec.Containers[0])
	cfg, err := config.LoadWorker(configEnv(t, env))
	if err != nil {
		return append(out, fmt.Sprintf("worker configuration: %v", err))
	}
	triggers, _, _ := unstructured.NestedSlice(so, "spec", "triggers")
	if len(triggers) != 1 {
		return append(out, fmt.Sprintf("got %d triggers, want 1", len(triggers)))
	}
	trigger := triggers[0].(map[string]any)
	meta, _, _ := unstructured.NestedStringMap(trigger, "metadata")
	if trigger["type"] != "redis-streams" {
		out = append(out, fmt.Sprintf("trigger type %v, want redis-streams", trigger["type"]))
	}
	if meta["stream"] != cfg.Redis.Stream || meta["consumerGroup"] != cfg.Redis.Group {
		out = append(out, fmt.Sprintf("trigger stream %q group %q, want the worker's %q and %q (REDIS_STREAM, REDIS_GROUP)",
			meta["stream"], meta["consumerGroup"], cfg.Redis.Stream, cfg.Redis.Group))
	}
	// With a consumer group, KEDA scales on lag only when lagCount is set
	// (otherwise on pending entries, which a busy worker always has).
	if n, err := resource.ParseQuantity(meta["lagCount"]); err != nil || n.Sign() <= 0 {
		out = append(out, fmt.Sprintf("lagCount %q: want a positive number (scale on the consumer group's lag)", meta["lagCount"]))
	}
	if from := meta["addressFromEnv"]; from == "" || env[from] != cfg.Redis.Addr {
		out = append(out, fmt.Sprintf("addressFromEnv %q: want the worker's REDIS_ADDR", from))
	}
	if db := meta["databaseIndex"]; db != fmt.Sprint(cfg.Redis.DB) {
		out = append(out, fmt.Sprintf("databaseIndex %q: want the worker's REDIS_DB %d", db, cfg.Redis.DB))
	}
	auth, _, _ := unstructured.NestedString(trigger, "authenticationRef", "name")
	ta := m.get("TriggerAuthentication", auth)
	if ta == nil {
		out = append(out, fmt.Sprintf("TriggerAuthentication %q is not in the overlay", auth))
	} else {
		refs, _, _ := unstructured.NestedSlice(ta.Object, "spec", "secretTargetRef")
		ok := false
		for _, r := range refs {
			r := r.(map[string]any)
			ok = ok || (r["parameter"] == "password" && r["name"] == redisPasswordSecret(t, m, &w.pod.Spec, env))
		}
		if !ok {
			out = append(out, "TriggerAuthentication: want the password parameter from the Secret the worker reads REDIS_PASSWORD_FILE from")
		}
	}
	if n, _, _ := unstructured.NestedInt64(so, "spec", "minReplicaCount"); n < 1 {
		out = append(out, "minReplicaCount: want ≥ 1 (a worker also reclaims and retries)")
	}
	window, _, _ := unstructured.NestedInt64(so, "spec", "advanced", "horizontalPodAutoscalerConfig", "behavior", "scaleDown", "stabilizationWindowSeconds")
	if grace := w.pod.Spec.TerminationGracePeriodSeconds; grace == nil || window < *grace {
		out = append(out, fmt.Sprintf("scale-down stabilization window %ds: want at least the worker's grace period", window))
	}
	if r := w.replicas; r != nil {
		out = append(out, "Deployment worker: replicas is set; KEDA owns it")
	}
	return out
}

// redisPasswordSecret is the Secret whose key lands at the worker's
// REDIS_PASSWORD_FILE.
func redisPasswordSecret(t *testing.T, m *manifest, spec *corev1.PodSpec, env map[string]string) string {
	path := env["REDIS_PASSWORD_FILE"]
	for _, mount := range spec.Containers[0].VolumeMounts {
		rel, ok := strings.CutPrefix(path, mount.MountPath+"/")
		if !ok {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != mount.Name || v.Projected == nil {
				continue
			}
			for _, s := range v.Projected.Sources {
				if s.Secret != nil && slices.ContainsFunc(s.Secret.Items, func(i corev1.KeyToPath) bool { return i.Path == rel }) {
					return s.Secret.Name
				}
			}
		}
	}
	return ""
}

func checkPodMonitors(t *testing.T, m *manifest) []string {
	var out []string
	for _, name := range []string{"app", "worker"} {
		w := m.workload(t, name)
		found := false
		for _, o := range m.ofKind("PodMonitor") {
			var sel metav1.LabelSelector
			selMap, _, _ := unstructured.NestedMap(o.Object, "spec", "selector")
			if err := fromMap(selMap, &sel); err != nil {
				t.Fatal(err)
			}
			s, err := metav1.LabelSelectorAsSelector(&sel)
			if err != nil || !s.Matches(labels.Set(w.pod.Labels)) {
				continue
			}
			found = true
			eps, _, _ := unstructured.NestedSlice(o.Object, "spec", "podMetricsEndpoints")
			for _, ep := range eps {
				ep := ep.(map[string]any)
				if ep["port"] != "internal" || ep["path"] != "/metrics" || !hasContainerPort(w.pod.Spec, "internal") {
					out = append(out, fmt.Sprintf("PodMonitor %s: endpoint %v %v, want /metrics on the pod's port internal", o.GetName(), ep["port"], ep["path"]))
				}
			}
		}
		if !found {
			out = append(out, name+": no PodMonitor selects its pods")
		}
	}
	return out
}

func hasContainerPort(spec corev1.PodSpec, name string) bool {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

func checkDashboards(t *testing.T, m *manifest) []string {
	dir := filepath.Join(repoRoot(t), "observability/grafana/dashboards")
	files, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards in %s: %v", dir, err)
	}
	var out []string
	for _, f := range files {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, o := range m.ofKind("ConfigMap") {
			data, _, _ := unstructured.NestedStringMap(o.Object, "data")
			if data[filepath.Base(f)] == string(want) && o.GetLabels()["grafana_dashboard"] == "1" {
				found = true
			}
		}
		if !found {
			out = append(out, fmt.Sprintf("dashboard %s: no ConfigMap labelled grafana_dashboard=1 holds it as is", filepath.Base(f)))
		}
	}
	return out
}

func checkHTTPRoute(t *testing.T, m *manifest) []string {
	routes := m.ofKind("HTTPRoute")
	if len(routes) != 1 {
		return []string{fmt.Sprintf("got %d HTTPRoutes, want 1", len(routes))}
	}
	var out []string
	parents, _, _ := unstructured.NestedSlice(routes[0].Object, "spec", "parentRefs")
	if len(parents) == 0 {
		out = append(out, "HTTPRoute: no parentRefs (a Gateway)")
	}
	rules, _, _ := unstructured.NestedSlice(routes[0].Object, "spec", "rules")
	for _, r := range rules {
		refs, _, _ := unstructured.NestedSlice(r.(map[string]any), "backendRefs")
		for _, ref := range refs {
			ref := ref.(map[string]any)
			svc := m.get("Service", fmt.Sprint(ref["name"]))
			if ref["name"] != "frontend" || svc == nil {
				out = append(out, fmt.Sprintf("HTTPRoute backend %v: want the frontend Service", ref["name"]))
				continue
			}
			s := typed[corev1.Service](t, svc)
			if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return fmt.Sprint(p.Port) == fmt.Sprint(ref["port"]) }) {
				out = append(out, fmt.Sprintf("HTTPRoute backend port %v: not a port of Service frontend", ref["port"]))
			}
		}
	}
	return out
}

// fromMap converts a map read from an unstructured object.
func fromMap(m map[string]any, v any) error {
	return runtimeConverter.FromUnstructured(m, v)
}

// endpointsCatchUp is how long a pod behind a Service keeps accepting
// after it leaves the endpoints (its preStop sleep): the time every node's
// kube-proxy, and an ingress controller reading the endpoints, may take to
// stop sending it new connections. A client of either Service has no other
// pod to retry a refused connection on (nginx's only upstream is app:8080;
// a load balancer reaches the frontend through kube-proxy), so 10 s rather
// than 5 (README "Restarts without errors").
const endpointsCatchUp = 10 * time.Second

// checkPreStop: the pods of app and frontend (the ones Services send
// traffic to) sleep endpointsCatchUp or longer before they are stopped, so
// that connections opened before every node removed them from the Service
// are still served; the grace period covers the sleep.
func checkPreStop(t *testing.T, m *manifest) []string {
	var out []string
	for _, name := range []string{"app", "frontend"} {
		w := m.workload(t, name)
		c := w.pod.Spec.Containers[0]
		sleep := preStopSleep(&c)
		if sleep < endpointsCatchUp {
			out = append(out, fmt.Sprintf("%s: preStop sleep %s, want %s or more", name, sleep, endpointsCatchUp))
			continue
		}
		if g := w.pod.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= sleep {
			out = append(out, fmt.Sprintf("%s: grace period %v does not outlast the preStop sleep", name, g))
		}
	}
	return out
}

// preStopSleep is c's preStop sleep, 0 when it has none.
func preStopSleep(c *corev1.Container) time.Duration {
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		return 0
	}
	return time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
}

// checkFrontendStop: the frontend's grace period, which counts the preStop
// sleep, outlasts the sleep and nginx's stop. The image's stop signal,
// SIGQUIT, makes nginx close its listeners and finish the requests in
// flight, the longest a proxied one waiting proxy_read_timeout for the api.
func checkFrontendStop(t *testing.T, m *manifest) []string {
	w := m.workload(t, "frontend")
	sleep := preStopSleep(container(t, &w.pod.Spec, "nginx"))
	need := sleep + nginxDuration(t, "proxy_read_timeout")
	if grace := w.pod.Spec.TerminationGracePeriodSeconds; grace == nil || time.Duration(*grace)*time.Second <= need {
		return []string{fmt.Sprintf("terminationGracePeriodSeconds %v: want more than the preStop sleep and nginx's longest proxied request, %s", grace, need)}
	}
	return nil
}
