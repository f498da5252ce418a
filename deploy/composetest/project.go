package composetest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Project is one compose project under test: its files, its own name, and
// the engine (whose Env holds the variables compose interpolates).
type Project struct {
	Engine *Engine
	// Dir is the project directory (the repository root: relative paths in
	// the files, .env and .secrets/ are resolved there).
	Dir string
	// Files are the compose files, in order, relative to Dir.
	Files []string
	// Name is the compose project name (-p), which prefixes every
	// container, network and volume.
	Name string
}

// Compose runs `docker compose` on the project.
func (p *Project) Compose(ctx context.Context, args ...string) (string, error) {
	full := []string{"compose", "--project-directory", p.Dir, "-p", p.Name}
	for _, f := range p.Files {
		full = append(full, "-f", f)
	}
	return p.Engine.Run(ctx, append(full, args...)...)
}

// Container is the part of `docker inspect` the test reads.
type Container struct {
	ID     string
	Name   string
	Config struct {
		User   string
		Env    []string
		Labels map[string]string
	}
	State struct {
		Status     string
		Running    bool
		Pid        int
		StartedAt  time.Time
		Health     *struct{ Status string }
		Restarting bool
		ExitCode   int
	}
	HostConfig struct {
		ReadonlyRootfs bool
		CapDrop        []string
		CapAdd         []string
		SecurityOpt    []string
		Privileged     bool
	}
	NetworkSettings struct {
		Ports    map[string][]PortBinding
		Networks map[string]struct {
			IPAddress string
			NetworkID string
		}
	}
	Mounts []struct {
		Type        string
		Source      string
		Destination string
		RW          bool
	}
}

// PortBinding is one published port of a container.
type PortBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string
}

// Service is the compose service the container belongs to.
func (c Container) Service() string { return c.Config.Labels["com.docker.compose.service"] }

// Containers inspects the project's containers (running or not) and
// returns them by service. A service with more than one container is an
// error: the test runs one of each.
func (p *Project) Containers(ctx context.Context) (map[string]Container, error) {
	out, err := p.Engine.Run(ctx, "ps", "-a", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project="+p.Name)
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(out)
	if len(ids) == 0 {
		return map[string]Container{}, nil
	}
	var list []Container
	if err := p.inspect(ctx, "container", ids, &list); err != nil {
		return nil, err
	}
	byService := map[string]Container{}
	for _, c := range list {
		svc := c.Service()
		if _, dup := byService[svc]; dup {
			return nil, fmt.Errorf("service %s has more than one container", svc)
		}
		byService[svc] = c
	}
	return byService, nil
}

// Network is the part of `docker network inspect` the test reads.
type Network struct {
	ID       string `json:"Id"`
	Name     string
	Internal bool
	Options  map[string]string
	IPAM     struct {
		Config []struct {
			Subnet  string
			Gateway string
		}
	}
	Labels map[string]string
}

// Bridge is the host interface of a bridge network: the
// com.docker.network.bridge.name option, else br-<first 12 of its ID>.
func (n Network) Bridge() string {
	if b := n.Options["com.docker.network.bridge.name"]; b != "" {
		return b
	}
	if len(n.ID) < 12 {
		return ""
	}
	return "br-" + n.ID[:12]
}

// Networks inspects the project's networks, by their name in the compose
// files (the com.docker.compose.network label).
func (p *Project) Networks(ctx context.Context) (map[string]Network, error) {
	out, err := p.Engine.Run(ctx, "network", "ls", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project="+p.Name)
	if err != nil {
		return nil, err
	}
	ids := strings.Fields(out)
	byName := map[string]Network{}
	if len(ids) == 0 {
		return byName, nil
	}
	var list []Network
	if err := p.inspect(ctx, "network", ids, &list); err != nil {
		return nil, err
	}
	for _, n := range list {
		byName[n.Labels["com.docker.compose.network"]] = n
	}
	return byName, nil
}

// Leftovers lists what of the project the engine still has: containers,
// networks and volumes labelled with its name.
func (p *Project) Leftovers(ctx context.Context) ([]string, error) {
	var left []string
	filter := "label=com.docker.compose.project=" + p.Name
	for _, kind := range [][]string{
		{"ps", "-a", "--format", "container {{.Names}}", "--filter", filter},
		{"network", "ls", "--format", "network {{.Name}}", "--filter", filter},
		{"volume", "ls", "--format", "volume {{.Name}}", "--filter", filter},
	} {
		out, err := p.Engine.Run(ctx, kind...)
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line != "" {
				left = append(left, line)
			}
		}
	}
	return left, nil
}

func (p *Project) inspect(ctx context.Context, kind string, ids []string, v any) error {
	out, err := p.Engine.Run(ctx, append([]string{kind, "inspect"}, ids...)...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("%s inspect: %w", kind, err)
	}
	return nil
}

// Processes lists a container's processes as the engine sees them (`docker
// top`), with host pids and numeric uid and gid.
func (p *Project) Processes(ctx context.Context, id string) ([]Process, error) {
	out, err := p.Engine.Run(ctx, "top", id, "-eo", "pid,uid,gid,args")
	if err != nil {
		return nil, err
	}
	var procs []Process
	for i, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 4 {
			continue
		}
		procs = append(procs, Process{PID: f[0], UID: f[1], GID: f[2], Args: strings.Join(f[3:], " ")})
	}
	return procs, nil
}

// Process is one line of `docker top`.
type Process struct {
	PID, UID, GID, Args string
}
