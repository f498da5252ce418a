package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// The Kubernetes deployment (deploy/kubernetes) is rendered by the real
// kubectl (its built-in kustomize) and checked in four ways:
//
//	kubernetes_apiserver_test.go  a real kube-apiserver (etcd, token auth,
//	                            PodSecurity) accepts every overlay: Namespace
//	                            created, the rest applied with server-side dry
//	                            run, no warning; a non-compliant pod is warned
//	kubernetes_policy_test.go   the deployment rules, each with a broken copy
//	                            of the manifests that the rule must catch
//	kubernetes_sources_test.go  images, ports, env names and values, probe
//	                            paths against docker-compose.yml and the code
//	kubernetes_network_test.go  the NetworkPolicies as (client → server:port)
//	                            pairs, against what carteiro uses and what
//	                            compose's networks allow
const kubeDir = "deploy/kubernetes"

// kubeOverlays are the overlays users apply.
var kubeOverlays = []string{"dev", "production"}

var (
	renderMu   sync.Mutex
	renderMemo = map[string][]byte{}
)

// renderOverlay is `kubectl kustomize deploy/kubernetes/overlays/<name>`,
// with the kubectl built by `make kubernetes`, memoized.
func renderOverlay(t *testing.T, overlay string) []byte {
	t.Helper()
	renderMu.Lock()
	defer renderMu.Unlock()
	if b, ok := renderMemo[overlay]; ok {
		return b
	}
	kubectl := testenv.KubeBinary(t, "kubectl")
	dir := filepath.Join(repoRoot(t), kubeDir, "overlays", overlay)
	var stderr bytes.Buffer
	cmd := exec.Command(kubectl, "kustomize", dir)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, stderr.String())
	}
	renderMemo[overlay] = out
	return out
}

// manifest is one rendered overlay, as the objects kubectl would send.
// Tests may change a clone of it (the broken fixtures of the policy test).
type manifest struct {
	overlay string
	objects []*unstructured.Unstructured
}

// loadManifest renders overlay and parses it: a fresh copy on every call.
func loadManifest(t *testing.T, overlay string) *manifest {
	t.Helper()
	objs, err := decodeObjects(renderOverlay(t, overlay))
	if err != nil {
		t.Fatalf("overlay %s: %v", overlay, err)
	}
	return &manifest{overlay: overlay, objects: objs}
}

// decodeObjects splits a YAML stream into objects (numbers as int64, as
// the API machinery reads them).
func decodeObjects(b []byte) ([]*unstructured.Unstructured, error) {
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var objs []*unstructured.Unstructured
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		j, err := utilyaml.ToJSON(doc)
		if err != nil {
			return nil, err
		}
		if s := strings.TrimSpace(string(j)); s == "null" || s == "{}" || s == "" {
			continue
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(j); err != nil {
			return nil, err
		}
		objs = append(objs, u)
	}
}

// encodeObjects is the YAML stream of objs, for kubectl's stdin.
func encodeObjects(t *testing.T, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(b)
	}
	return buf.Bytes()
}

func (m *manifest) clone() *manifest {
	c := &manifest{overlay: m.overlay}
	for _, o := range m.objects {
		c.objects = append(c.objects, o.DeepCopy())
	}
	return c
}

func (m *manifest) ofKind(kind string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, o := range m.objects {
		if o.GetKind() == kind {
			out = append(out, o)
		}
	}
	return out
}

// get returns the object of that kind whose name is name, or, for
// generated ConfigMaps and Secrets, whose name is name plus kustomize's
// hash suffix; nil if there is none.
func (m *manifest) get(kind, name string) *unstructured.Unstructured {
	for _, o := range m.ofKind(kind) {
		if o.GetName() == name {
			return o
		}
	}
	for _, o := range m.ofKind(kind) {
		if (kind == "ConfigMap" || kind == "Secret") && generatedName(o.GetName()) == name {
			return o
		}
	}
	return nil
}

var hashSuffix = regexp.MustCompile(`-[a-z0-9]{10}$`)

// generatedName drops kustomize's content hash from a generated name.
func generatedName(name string) string { return hashSuffix.ReplaceAllString(name, "") }

func (m *manifest) remove(kind, name string) {
	m.objects = slices.DeleteFunc(m.objects, func(o *unstructured.Unstructured) bool {
		return o.GetKind() == kind && o.GetName() == name
	})
}

// typed converts u to a typed object (a Deployment, a NetworkPolicy, …).
func typed[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	var v T
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &v); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return &v
}

// edit changes u through its typed form.
func edit[T any](t *testing.T, u *unstructured.Unstructured, fn func(*T)) {
	t.Helper()
	v := typed[T](t, u)
	fn(v)
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(v)
	if err != nil {
		t.Fatal(err)
	}
	u.Object = obj
}

// workload is a Deployment or StatefulSet, by its pod template.
type workload struct {
	kind, name string
	replicas   *int32
	pod        corev1.PodTemplateSpec
}

func (m *manifest) workloads(t *testing.T) []workload {
	t.Helper()
	var out []workload
	for _, o := range m.objects {
		switch o.GetKind() {
		case "Deployment":
			d := typed[appsv1.Deployment](t, o)
			out = append(out, workload{"Deployment", d.Name, d.Spec.Replicas, d.Spec.Template})
		case "StatefulSet":
			s := typed[appsv1.StatefulSet](t, o)
			out = append(out, workload{"StatefulSet", s.Name, s.Spec.Replicas, s.Spec.Template})
		case "DaemonSet", "Job", "CronJob", "Pod", "ReplicaSet":
			t.Fatalf("%s %s: a kind the tests do not inspect yet", o.GetKind(), o.GetName())
		}
	}
	return out
}

func (m *manifest) workload(t *testing.T, name string) workload {
	t.Helper()
	for _, w := range m.workloads(t) {
		if w.name == name {
			return w
		}
	}
	t.Fatalf("overlay %s: no Deployment or StatefulSet %s", m.overlay, name)
	return workload{}
}

// editPod changes the pod template of the workload called name.
func (m *manifest) editPod(t *testing.T, name string, fn func(*corev1.PodSpec)) {
	t.Helper()
	for _, o := range m.objects {
		if o.GetName() != name {
			continue
		}
		switch o.GetKind() {
		case "Deployment":
			edit(t, o, func(d *appsv1.Deployment) { fn(&d.Spec.Template.Spec) })
			return
		case "StatefulSet":
			edit(t, o, func(s *appsv1.StatefulSet) { fn(&s.Spec.Template.Spec) })
			return
		}
	}
	t.Fatalf("overlay %s: no workload %s to edit", m.overlay, name)
}

// container returns the named container of a pod spec (init containers
// included).
func container(t *testing.T, pod *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for i := range pod.Containers {
		if pod.Containers[i].Name == name {
			return &pod.Containers[i]
		}
	}
	for i := range pod.InitContainers {
		if pod.InitContainers[i].Name == name {
			return &pod.InitContainers[i]
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

// podValue is what env(…) gives a variable set from the pod's own fields
// (valueFrom.fieldRef / resourceFieldRef): a stand-in of the right shape.
var podValue = map[string]string{
	"metadata.name": "worker-5d9c7f6b8-x2x4k",
	"limits.memory": "134217728",
}

// env is the environment the container gets: its envFrom ConfigMaps, then
// its env (which wins), as the kubelet builds it. Values taken from the pod
// itself are stand-ins (podValue); a reference to a ConfigMap the overlay
// does not render fails the test.
func (m *manifest) env(t *testing.T, c *corev1.Container) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Fatalf("container %s: envFrom other than a ConfigMap", c.Name)
		}
		cm := m.get("ConfigMap", from.ConfigMapRef.Name)
		if cm == nil || cm.GetName() != from.ConfigMapRef.Name {
			t.Fatalf("container %s: envFrom ConfigMap %s is not in the overlay", c.Name, from.ConfigMapRef.Name)
		}
		data, _, _ := unstructured.NestedStringMap(cm.Object, "data")
		for k, v := range data {
			out[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			out[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil:
			out[e.Name] = podValue[e.ValueFrom.FieldRef.FieldPath]
		case e.ValueFrom.ResourceFieldRef != nil:
			out[e.Name] = podValue[e.ValueFrom.ResourceFieldRef.Resource]
		default:
			t.Fatalf("container %s env %s: a valueFrom the tests do not resolve", c.Name, e.Name)
		}
	}
	return out
}

// TestKubernetesToolsVersion: kubectl and kube-apiserver are the release the
// tools module requires, stamped as such (KUBERNETES_VERSION in the Makefile).
func TestKubernetesToolsVersion(t *testing.T) {
	root := repoRoot(t)
	gomod, err := os.ReadFile(filepath.Join(root, "scripts/tools/kubernetes/go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^(?:require )?\s*k8s\.io/kubernetes (v\S+)`).FindSubmatch(gomod)
	if m == nil {
		t.Fatal("scripts/tools/kubernetes/go.mod: k8s.io/kubernetes is not required")
	}
	want := string(m[1])
	makefile, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	if mk := regexp.MustCompile(`(?m)^KUBERNETES_VERSION := (\S+)$`).FindSubmatch(makefile); mk == nil || string(mk[1]) != want {
		t.Errorf("Makefile KUBERNETES_VERSION: got %q, want %s (the tools module's k8s.io/kubernetes)", mk, want)
	}
	// Every staging module replaced by the same release (v1.X.Y → v0.X.Y).
	staging := "v0" + strings.TrimPrefix(want, "v1")
	for _, line := range regexp.MustCompile(`(?m)^\t(k8s\.io/\S+) => (\S+) (\S+)$`).FindAllSubmatch(gomod, -1) {
		if string(line[1]) != string(line[2]) || string(line[3]) != staging {
			t.Errorf("go.mod replace %s => %s %s: want the same module at %s", line[1], line[2], line[3], staging)
		}
	}

	out, err := exec.Command(testenv.KubeBinary(t, "kubectl"), "version", "--client", "-o", "json").Output()
	if err != nil {
		t.Fatalf("kubectl version: %v", err)
	}
	var v struct {
		ClientVersion struct{ GitVersion string } `json:"clientVersion"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("kubectl version: %v: %s", err, out)
	}
	if v.ClientVersion.GitVersion != want {
		t.Errorf("kubectl version: got %q, want %s", v.ClientVersion.GitVersion, want)
	}
	out, err = exec.Command(testenv.KubeBinary(t, "kube-apiserver"), "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("kube-apiserver --version: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "Kubernetes "+want {
		t.Errorf("kube-apiserver --version: got %q, want %q", got, "Kubernetes "+want)
	}
}
