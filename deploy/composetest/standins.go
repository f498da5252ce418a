package composetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// Standin is one image built here in place of an image that cannot be
// pulled; standins/<Name>/Dockerfile says what of the original it keeps.
type Standin struct {
	// Var is the .env variable whose image it replaces.
	Var string
	// Name is its folder under standins/ and the last part of its
	// repository (carteiro-standin/<Name>).
	Name string
	// Bins are files of BIN_DIR (built by the Makefile) put in its context
	// under the same name.
	Bins []string
	// Commands are main packages of this module built (static,
	// CGO_ENABLED=0) into its context: name → package path.
	Commands map[string]string
	// Host are files or folders of this machine put in its context: name →
	// path ("" names resolved by hostFiles).
	Host map[string]string
}

// Standins are the images of the compose files that the test builds. Not
// here, so not proven under the engine: GRAFANA_IMAGE and NGINX_OTEL_IMAGE
// (compose.test-override.yml says why) and K6_IMAGE (profile load, never
// started by the test).
var Standins = []Standin{
	{Var: "GO_IMAGE", Name: "golang", Host: map[string]string{"go": "GOROOT", "ca-certificates.crt": "CA_BUNDLE"}},
	{Var: "RUNTIME_IMAGE", Name: "distroless-static"},
	{Var: "POSTGRES_IMAGE", Name: "postgres"},
	{Var: "REDIS_IMAGE", Name: "redis"},
	{Var: "NGINX_IMAGE", Name: "nginx", Commands: map[string]string{"nginx-entrypoint": "./cmd/nginx-entrypoint"}},
	{Var: "MAILPIT_IMAGE", Name: "mailpit", Bins: []string{"mailpit"}},
	{Var: "JAEGER_IMAGE", Name: "jaeger", Bins: []string{"jaeger"}},
	{Var: "OTELCOL_IMAGE", Name: "otelcol", Bins: []string{"otelcol"}},
	{Var: "PROMETHEUS_IMAGE", Name: "prometheus", Bins: []string{"prometheus"}},
	{Var: "NGINX_EXPORTER_IMAGE", Name: "nginx-prometheus-exporter"},
	{Var: "ALERTMANAGER_IMAGE", Name: "alertmanager"},
	{Var: "POSTGRES_EXPORTER_IMAGE", Name: "postgres-exporter"},
	{Var: "REDIS_EXPORTER_IMAGE", Name: "redis-exporter"},
}

// BuildOptions says where the inputs of the images are.
type BuildOptions struct {
	RepoRoot string    // the repository (go.mod, deploy/composetest)
	BinDir   string    // bin/ with mailpit, jaeger, otelcol, prometheus
	Base     BaseImage // the Debian base
	GOROOT   string    // the Go toolchain copied into the golang stand-in
	CABundle string    // this machine's CA bundle (PEM)
	Parallel int       // builds at once (at least 1)
	Logf     func(string, ...any)
}

// HostBase is the base image of the stand-ins on every machine: Debian
// bookworm from deb.debian.org.
func HostBase() BaseImage {
	return BaseImage{Suite: "bookworm", Mirror: "http://deb.debian.org/debian"}
}

// HostBuildOptions are the BuildOptions of this machine, the same for the
// compose test and `make up STANDINS=1`: HostBase as the base, the Go
// toolchain `go env GOROOT` names, the CA bundle of getenv's SSL_CERT_FILE
// (default /etc/ssl/certs/ca-certificates.crt) and 3 builds at once.
func HostBuildOptions(ctx context.Context, getenv func(string) string, root, binDir string, logf func(string, ...any)) (BuildOptions, error) {
	goroot, err := exec.CommandContext(ctx, "go", "env", "GOROOT").Output()
	if err != nil {
		return BuildOptions{}, fmt.Errorf("go env GOROOT (the golang stand-in copies this Go toolchain): %w", err)
	}
	caBundle := getenv("SSL_CERT_FILE")
	if caBundle == "" {
		caBundle = "/etc/ssl/certs/ca-certificates.crt"
	}
	return BuildOptions{
		RepoRoot: root,
		BinDir:   binDir,
		Base:     HostBase(),
		GOROOT:   strings.TrimSpace(string(goroot)),
		CABundle: caBundle,
		Parallel: 3,
		Logf:     logf,
	}, nil
}

// StandinImages builds the base and every stand-in, reusing any whose
// inputs have not changed, and returns the image variables for compose:
// each Standins entry's Var → the reference of the image its inputs give
// (carteiro-standin/<Name>:<hash>). `make up STANDINS=1` and the compose
// test get their images here, through cmd deploy/composetest/standinenv.
func StandinImages(ctx context.Context, e *Engine, o BuildOptions) (map[string]string, error) {
	base, built, err := e.EnsureBase(ctx, o.Base)
	if err != nil {
		return nil, err
	}
	o.Logf("image %s: %s", base, builtOrReused(built))
	baseID, err := e.ImageID(ctx, base)
	if err != nil {
		return nil, err
	}

	bins, err := os.MkdirTemp("", "carteiro-composetest-bin-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(bins)

	specs := map[string]BuildSpec{}
	for _, s := range Standins {
		spec := BuildSpec{
			Repo:   "carteiro-standin/" + s.Name,
			Dir:    filepath.Join(o.RepoRoot, "deploy", "composetest", "standins", s.Name),
			Extra:  map[string]string{},
			Args:   map[string]string{"BASE_IMAGE": base},
			Inputs: []string{"base " + baseID},
		}
		for _, b := range s.Bins {
			p := filepath.Join(o.BinDir, b)
			if _, err := os.Stat(p); err != nil {
				return nil, fmt.Errorf("stand-in %s needs %s (make tools jaeger otelcol docker-tools): %w", s.Name, p, err)
			}
			spec.Extra[b] = p
		}
		for name, pkg := range s.Commands {
			out := filepath.Join(bins, name)
			if err := goBuild(ctx, o.RepoRoot, pkg, out); err != nil {
				return nil, err
			}
			spec.Extra[name] = out
		}
		for name, what := range s.Host {
			switch what {
			case "GOROOT":
				spec.Extra[name] = o.GOROOT
			case "CA_BUNDLE":
				spec.Extra[name] = o.CABundle
			default:
				spec.Extra[name] = what
			}
		}
		specs[s.Var] = spec
	}
	return buildAll(ctx, e, specs, o)
}

// ProbeImage builds the compose test's probe image (cmd probe/), unless
// one with the same inputs exists, and returns its reference.
func ProbeImage(ctx context.Context, e *Engine, o BuildOptions) (string, error) {
	bins, err := os.MkdirTemp("", "carteiro-composetest-bin-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(bins)
	probeBin := filepath.Join(bins, "probe")
	if err := goBuild(ctx, o.RepoRoot, "./deploy/composetest/probe", probeBin); err != nil {
		return "", err
	}
	refs, err := buildAll(ctx, e, map[string]BuildSpec{"probe": {
		Repo:  "carteiro-composetest/probe",
		Dir:   filepath.Join(o.RepoRoot, "deploy", "composetest", "probe", "image"),
		Extra: map[string]string{"probe": probeBin},
	}}, o)
	return refs["probe"], err
}

// buildAll builds specs, o.Parallel at once, and returns their references
// by the same keys; any failure fails the whole.
func buildAll(ctx context.Context, e *Engine, specs map[string]BuildSpec, o BuildOptions) (map[string]string, error) {
	refs := map[string]string{}
	var (
		mu   sync.Mutex
		wg   sync.WaitGroup
		errs []error
		sem  = make(chan struct{}, max(1, o.Parallel))
	)
	for _, key := range sortedKeys(specs) {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ref, built, err := e.Build(ctx, specs[key])
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			o.Logf("image %s: %s", ref, builtOrReused(built))
			refs[key] = ref
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return nil, fmt.Errorf("%d image(s) failed: %v", len(errs), errs)
	}
	return refs, nil
}

func builtOrReused(built bool) string {
	if built {
		return "built"
	}
	return "reused (same inputs)"
}

// goBuild builds a main package of this module into out: static, without
// VCS stamping, so the same source gives the same file (and image key).
func goBuild(ctx context.Context, root, pkg, out string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v: %s", pkg, err, strings.TrimSpace(string(b)))
	}
	return nil
}
