package composetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os/exec"
	"path/filepath"
	"strings"
)

// Engine runs the docker CLI, and through it the compose and buildx
// plugins, against the local Docker Engine.
type Engine struct {
	// Env is the whole environment of every docker command (CommandEnv).
	Env []string
	// Dir is the working directory of every docker command.
	Dir string
}

// passedThrough are the variables of the caller's environment that docker
// commands keep: what the CLI needs to find the engine, its configuration
// and its plugins. Nothing else reaches compose's variable interpolation, so
// a variable exported in a developer's shell cannot change what is tested.
var passedThrough = []string{"PATH", "HOME", "TMPDIR", "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"}

// CommandEnv is the environment for docker commands: the passedThrough
// variables that getenv has, then extra (which wins).
func CommandEnv(getenv func(string) string, extra map[string]string) []string {
	var env []string
	for _, k := range passedThrough {
		if _, set := extra[k]; set {
			continue
		}
		if v := getenv(k); v != "" {
			env = append(env, k+"="+v)
		}
	}
	for _, k := range sortedKeys(extra) {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// PluginConfigDir is the Docker configuration directory under binDir (the
// Makefile's BIN_DIR) whose cli-plugins hold the project's own Compose and
// buildx (`make docker-tools` installs them there). The docker commands of
// the tests read it as DOCKER_CONFIG (EngineEnv), so that the user's
// ~/.docker, its plugins included, is neither used nor written.
func PluginConfigDir(binDir string) string { return filepath.Join(binDir, "docker-config") }

// EngineEnv is CommandEnv for a docker CLI that reads configDir
// (PluginConfigDir) as its configuration, against the engine the caller's
// own configuration selects. configDir has no contexts, so that engine,
// from the caller's DOCKER_CONTEXT, DOCKER_HOST or current context (`docker
// context inspect`, run with the caller's configuration), is given as
// DOCKER_HOST, and DOCKER_CONTEXT is dropped. A context's TLS material is
// not carried over: for an engine behind TLS, set DOCKER_HOST,
// DOCKER_TLS_VERIFY and DOCKER_CERT_PATH, which pass through.
func EngineEnv(ctx context.Context, getenv func(string) string, configDir string, extra map[string]string) ([]string, error) {
	own := &Engine{Env: CommandEnv(getenv, nil)}
	out, err := own.Run(ctx, "context", "inspect", "--format", "{{.Endpoints.docker.Host}}")
	if err != nil {
		return nil, fmt.Errorf("the engine of your docker configuration: %w", err)
	}
	host := strings.TrimSpace(out)
	if host == "" {
		return nil, errors.New("the engine of your docker configuration: `docker context inspect` names no docker endpoint")
	}
	all := map[string]string{"DOCKER_CONFIG": configDir, "DOCKER_HOST": host}
	maps.Copy(all, extra)
	withoutContext := func(k string) string {
		if k == "DOCKER_CONTEXT" {
			return ""
		}
		return getenv(k)
	}
	return CommandEnv(withoutContext, all), nil
}

// Run runs `docker args...` and returns its standard output. A failure's
// error names the command and carries its standard error.
func (e *Engine) Run(ctx context.Context, args ...string) (string, error) {
	return e.RunInput(ctx, nil, args...)
}

// RunInput is Run with stdin as the command's standard input.
func (e *Engine) RunInput(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Env = e.Env
	cmd.Dir = e.Dir
	cmd.Stdin = stdin
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &CommandError{Args: args, Err: err, Stderr: stderr.String()}
	}
	return stdout.String(), nil
}

// CommandError is a docker command that failed.
type CommandError struct {
	Args   []string
	Err    error
	Stderr string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("docker %s: %v: %s", strings.Join(e.Args, " "), e.Err, tail(e.Stderr, 40))
}

func (e *CommandError) Unwrap() error { return e.Err }

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"…"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// ServerVersion is the engine's version: an error means there is no engine
// to talk to.
func (e *Engine) ServerVersion(ctx context.Context) (string, error) {
	out, err := e.Run(ctx, "version", "--format", "{{.Server.Version}}")
	return strings.TrimSpace(out), err
}

// ImageID is the ID of the local image ref, "" when there is none.
func (e *Engine) ImageID(ctx context.Context, ref string) (string, error) {
	out, err := e.Run(ctx, "image", "inspect", "--format", "{{.Id}}", ref)
	var ce *CommandError
	if errors.As(err, &ce) && strings.Contains(strings.ToLower(ce.Stderr), "no such image") {
		return "", nil
	}
	return strings.TrimSpace(out), err
}
