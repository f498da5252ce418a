package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// crdModules are the Go modules whose CustomResourceDefinitions the
// manifests use, and where each keeps them. Their versions are pinned in
// scripts/tools/kubernetes/crds/go.mod; the files are read from the module
// cache, never copied into the repository.
var crdModules = map[string]string{
	"github.com/kedacore/keda/v2":                        "config/crd/bases",
	"github.com/prometheus-operator/prometheus-operator": "example/prometheus-operator-crd",
	"sigs.k8s.io/gateway-api":                            "config/crd/standard",
}

// crdFile is one CRD manifest from the module cache.
type crdFile struct {
	path string
	crd  *crd
}

// crd is what the tests read of a CustomResourceDefinition.
type crd struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind string `json:"kind"`
		} `json:"names"`
		Versions []struct {
			Name   string `json:"name"`
			Served bool   `json:"served"`
		} `json:"versions"`
	} `json:"spec"`
}

// crdIndex downloads the CRD modules (go mod download in the crds module,
// at the versions its go.mod pins) and indexes their CRDs by group and kind.
func crdIndex(t *testing.T) map[schema.GroupKind]crdFile {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		testenv.Missing(t, "go (to download the CRD modules): %v", err)
	}
	args := []string{"mod", "download", "-json"}
	for mod := range crdModules {
		args = append(args, mod)
	}
	cmd := exec.Command(goBin, args...)
	cmd.Dir = filepath.Join(repoRoot(t), "scripts/tools/kubernetes/crds")
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download in %s: %v\n%s", cmd.Dir, err, out)
	}
	index := map[schema.GroupKind]crdFile{}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var mod struct{ Path, Version, Dir, Error string }
		if err := dec.Decode(&mod); err != nil {
			t.Fatal(err)
		}
		if mod.Error != "" || mod.Dir == "" {
			t.Fatalf("go mod download %s: %s", mod.Path, mod.Error)
		}
		files, err := filepath.Glob(filepath.Join(mod.Dir, crdModules[mod.Path], "*.yaml"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s@%s: no CRD files under %s (%v)", mod.Path, mod.Version, crdModules[mod.Path], err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			objs, err := decodeObjects(b)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			for _, o := range objs {
				if o.GetKind() != "CustomResourceDefinition" {
					continue
				}
				var c crd
				if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &c); err != nil {
					t.Fatalf("%s: %v", f, err)
				}
				index[schema.GroupKind{Group: c.Spec.Group, Kind: c.Spec.Names.Kind}] = crdFile{path: f, crd: &c}
			}
		}
	}
	return index
}

// crdsFor returns the CRDs that define the kinds of m; each object's
// version must be one the CRD serves.
func crdsFor(t *testing.T, m *manifest, index map[schema.GroupKind]crdFile) []crdFile {
	t.Helper()
	var out []crdFile
	for _, o := range m.objects {
		gvk := o.GroupVersionKind()
		f, ok := index[gvk.GroupKind()]
		if !ok {
			continue
		}
		served := false
		for _, v := range f.crd.Spec.Versions {
			served = served || (v.Name == gvk.Version && v.Served)
		}
		if !served {
			t.Errorf("%s %s: %s is not a version %s serves", gvk.Kind, o.GetName(), gvk.Version, f.path)
		}
		if !slices.ContainsFunc(out, func(c crdFile) bool { return c.path == f.path }) {
			out = append(out, f)
		}
	}
	return out
}

// applyOverlay creates m's Namespace for real (a dry run would not keep it,
// and Pod Security reads its labels), then applies every other object
// with a server-side dry run: the API server validates, defaults and admits
// each one (Pod Security included) without storing it. Any error or warning
// fails the test.
func applyOverlay(t *testing.T, k *testenv.Kubernetes, m *manifest) {
	t.Helper()
	var namespaces, rest []*unstructured.Unstructured
	for _, o := range m.objects {
		if o.GetKind() == "Namespace" {
			namespaces = append(namespaces, o)
		} else {
			rest = append(rest, o)
		}
	}
	if len(namespaces) != 1 {
		t.Fatalf("overlay %s: got %d Namespaces, want 1", m.overlay, len(namespaces))
	}
	if out, errOut, err := k.Kubectl(encodeObjects(t, namespaces), "apply", "-f", "-"); err != nil {
		t.Fatalf("create namespace: %v\n%s%s", err, out, errOut)
	}
	ns := namespaces[0].GetName()
	labels, _, err := k.Kubectl(nil, "get", "namespace", ns, "-o", "jsonpath={.metadata.labels}")
	if err != nil || !strings.Contains(labels, `"pod-security.kubernetes.io/enforce":"restricted"`) {
		t.Fatalf("namespace %s as stored: labels %s (%v), want pod-security.kubernetes.io/enforce=restricted", ns, labels, err)
	}
	out, errOut, err := k.Kubectl(encodeObjects(t, rest), "apply", "--dry-run=server", "--warnings-as-errors", "-f", "-")
	if err != nil || strings.TrimSpace(errOut) != "" {
		t.Fatalf("kubectl apply --dry-run=server (overlay %s): %v\nstderr:\n%s\nstdout:\n%s", m.overlay, err, errOut, out)
	}
	if got := strings.Count(out, "(server dry run)"); got != len(rest) {
		t.Errorf("objects applied: got %d, want %d:\n%s", got, len(rest), out)
	}
	t.Logf("overlay %s: namespace %s created, %d objects accepted by a server-side dry run, no warning", m.overlay, ns, len(rest))
}

// TestKubernetesAPIServer applies the overlays to a real kube-apiserver
// (built from k8s.io/kubernetes by `make kubernetes`) with Debian's etcd as
// its store, token authentication and the PodSecurity admission plugin.
func TestKubernetesAPIServer(t *testing.T) {
	// Render before starting anything: a kustomize error is reported as
	// such, without the cost of a control plane.
	began := time.Now()
	dev, production := loadManifest(t, "dev"), loadManifest(t, "production")
	index := crdIndex(t)
	rendered := time.Now()
	k := testenv.StartKubernetes(t)
	started := time.Now()
	// Figures for the report (what this test adds to make test), never
	// asserted: the machine is shared.
	defer func() {
		kubeReport(t, "kube-apiserver", []string{
			fmt.Sprintf("  rendered both overlays and indexed the CRD modules in %s", rendered.Sub(began).Round(time.Millisecond)),
			fmt.Sprintf("  etcd and kube-apiserver ready in %s", started.Sub(rendered).Round(time.Millisecond)),
			fmt.Sprintf("  both overlays, the CRDs and the non-compliant fixture applied in %s", time.Since(started).Round(time.Millisecond)),
		})
	}()

	// dev must apply to a bare cluster (kind, minikube): no CRD installed yet.
	t.Run("dev without CRDs", func(t *testing.T) {
		if crds := crdsFor(t, dev, index); len(crds) > 0 {
			t.Errorf("dev uses custom resources (%s): want only built-in kinds", crds[0].crd.Metadata.Name)
		}
		applyOverlay(t, k, dev)
	})

	t.Run("production", func(t *testing.T) {
		crds := crdsFor(t, production, index)
		if len(crds) == 0 {
			t.Fatal("production uses no custom resource: want KEDA's, the Prometheus Operator's and the Gateway API's")
		}
		for _, f := range crds {
			b, err := os.ReadFile(f.path)
			if err != nil {
				t.Fatal(err)
			}
			// Server-side: some CRDs exceed the size of the annotation a
			// client-side apply keeps.
			if out, errOut, err := k.Kubectl(b, "apply", "--server-side", "-f", "-"); err != nil {
				t.Fatalf("install CRD %s: %v\n%s%s", f.crd.Metadata.Name, err, out, errOut)
			}
			if out, errOut, err := k.Kubectl(nil, "wait", "--for=condition=Established", "--timeout=5m", "crd/"+f.crd.Metadata.Name); err != nil {
				t.Fatalf("CRD %s not established: %v\n%s%s", f.crd.Metadata.Name, err, out, errOut)
			}
			t.Logf("CRD %s from %s", f.crd.Metadata.Name, f.path)
		}
		applyOverlay(t, k, production)
	})

	// The check can fail: the app Deployment with a container that may gain
	// privileges and keeps its capabilities is warned about, by name. In a
	// namespace without the labels the same object passes silently, which
	// is why the overlay's Namespace must exist, labelled, before the dry
	// run.
	t.Run("non-compliant pod", func(t *testing.T) {
		bad := dev.get("Deployment", "app").DeepCopy()
		edit(t, bad, func(d *appsv1.Deployment) {
			d.Name = "app-non-compliant"
			c := &d.Spec.Template.Spec.Containers[0]
			c.SecurityContext.AllowPrivilegeEscalation = ptr(true)
			c.SecurityContext.Capabilities = &corev1.Capabilities{Add: []corev1.Capability{"NET_RAW"}}
		})
		_, errOut, err := k.Kubectl(encodeObjects(t, []*unstructured.Unstructured{bad}), "apply", "--dry-run=server", "--warnings-as-errors", "-f", "-")
		want := `would violate PodSecurity "restricted:latest"`
		if err == nil || !strings.Contains(errOut, want) || !strings.Contains(errOut, "allowPrivilegeEscalation") {
			t.Errorf("non-compliant Deployment in namespace %s: got err %v, stderr %q; want a warning %q naming allowPrivilegeEscalation",
				bad.GetNamespace(), err, errOut, want)
		}

		unlabelled := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "unlabelled"}}}
		if out, errOut, err := k.Kubectl(encodeObjects(t, []*unstructured.Unstructured{unlabelled}), "apply", "-f", "-"); err != nil {
			t.Fatalf("create namespace unlabelled: %v\n%s%s", err, out, errOut)
		}
		bad.SetNamespace("unlabelled")
		if out, errOut, err := k.Kubectl(encodeObjects(t, []*unstructured.Unstructured{bad}), "apply", "--dry-run=server", "--warnings-as-errors", "-f", "-"); err != nil {
			t.Errorf("the same Deployment in an unlabelled namespace: got %v (%s%s), want it accepted silently", err, out, errOut)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// kubeObjectName is "Kind/name", for messages.
func kubeObjectName(o *unstructured.Unstructured) string {
	return fmt.Sprintf("%s/%s", o.GetKind(), o.GetName())
}
