// The modules whose CustomResourceDefinitions carteiro's Kubernetes manifests
// use. Nothing is built here: the manifest tests run `go mod download -json`
// in this directory and read the CRD files from the module cache (paths in
// services/internal/deploy/kubernetes_test.go), so the versions are pinned and
// checked against go.sum like any dependency, and no CRD is copied into the
// repository. A separate module from ../go.mod so that these modules'
// requirements cannot change the versions kube-apiserver is built with.
// Do not run `go mod tidy` here: with no Go code to import them, it would
// drop the requirements. go.sum holds exactly their two hashes each.
module github.com/carteiro/carteiro/scripts/tools/kubernetes/crds

go 1.26.8

require (
	// ScaledObject, TriggerAuthentication: config/crd/bases
	github.com/kedacore/keda/v2 v2.21.0
	// PodMonitor: example/prometheus-operator-crd
	github.com/prometheus-operator/prometheus-operator v0.85.0
	// HTTPRoute (standard channel): config/crd/standard
	sigs.k8s.io/gateway-api v1.6.3
)
