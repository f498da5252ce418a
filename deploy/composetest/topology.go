package composetest

import (
	"context"
	"path/filepath"
	"slices"
	"sort"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// Topology is what the compose files say about the services the test
// starts: the networks each joins, which networks are internal, and the
// secrets each mounts. The segmentation test derives from it which pairs of
// containers may talk.
type Topology struct {
	// Networks: service → the networks it joins (names in the files), sorted.
	Networks map[string][]string
	// Internal: network → whether it is internal (no route out).
	Internal map[string]bool
	// Secrets: service → the compose secrets it mounts (/run/secrets/<name>).
	Secrets map[string][]string
	// SecretFiles: secret → its file on this machine.
	SecretFiles map[string]string
}

// LoadTopology loads the compose files the way `docker compose` does for
// the test (dir as project directory, its .env, env overriding .env, no
// profile active) and extracts the topology of the services that would start.
func LoadTopology(ctx context.Context, dir string, files []string, env map[string]string) (Topology, error) {
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = filepath.Join(dir, f)
	}
	var envList []string
	for _, k := range sortedKeys(env) {
		envList = append(envList, k+"="+env[k])
	}
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(dir),
		cli.WithEnv(envList),
		cli.WithEnvFiles(filepath.Join(dir, ".env")),
		cli.WithDotEnv,
	)
	if err != nil {
		return Topology{}, err
	}
	p, err := opts.LoadProject(ctx)
	if err != nil {
		return Topology{}, err
	}
	return topologyOf(p), nil
}

func topologyOf(p *types.Project) Topology {
	t := Topology{
		Networks:    map[string][]string{},
		Internal:    map[string]bool{},
		Secrets:     map[string][]string{},
		SecretFiles: map[string]string{},
	}
	for name, svc := range p.Services {
		t.Networks[name] = sortedKeys(svc.Networks)
		for _, s := range svc.Secrets {
			t.Secrets[name] = append(t.Secrets[name], s.Source)
		}
		sort.Strings(t.Secrets[name])
	}
	for name, n := range p.Networks {
		t.Internal[name] = n.Internal
	}
	for name, s := range p.Secrets {
		t.SecretFiles[name] = s.File
	}
	return t
}

// Services are the services that start, sorted.
func (t Topology) Services() []string { return sortedKeys(t.Networks) }

// Shared is the networks that services a and b both join.
func (t Topology) Shared(a, b string) []string {
	var shared []string
	for _, n := range t.Networks[a] {
		if slices.Contains(t.Networks[b], n) {
			shared = append(shared, n)
		}
	}
	return shared
}

// OnlyInternal reports whether every network of service joins is internal,
// so that nothing may route out of its containers.
func (t Topology) OnlyInternal(service string) bool {
	for _, n := range t.Networks[service] {
		if !t.Internal[n] {
			return false
		}
	}
	return true
}
