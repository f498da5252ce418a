package composetest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakePlugin is a docker CLI plugin named foo that prints who installed it.
func fakePlugin(t *testing.T, dir, owner string) {
	t.Helper()
	script := "#!/bin/sh\n" +
		"if [ \"$1\" = docker-cli-plugin-metadata ]; then\n" +
		"  echo '{\"SchemaVersion\":\"0.1.0\",\"Vendor\":\"carteiro test\",\"Version\":\"1.0.0\"}'; exit 0\n" +
		"fi\n" +
		"echo " + owner + "\n"
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "docker-foo"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestEngineEnv: docker commands run with EngineEnv use the plugins of the
// project's configuration directory, not the user's, and reach the engine
// the user's own configuration selects (a context made current, named by
// DOCKER_CONTEXT, or DOCKER_HOST), which the docker CLI itself resolves.
// No engine is needed: nothing is asked of it.
func TestEngineEnv(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("docker CLI: %v (CI=true: this test needs it)", err)
		}
		t.Skipf("docker CLI: %v (with CI=true this fails)", err)
	}
	ctx := context.Background()
	user := t.TempDir()
	project := PluginConfigDir(t.TempDir())
	fakePlugin(t, filepath.Join(user, "cli-plugins"), "the-users")
	fakePlugin(t, filepath.Join(project, "cli-plugins"), "the-projects")
	userEngine := &Engine{Env: []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "DOCKER_CONFIG=" + user}}
	for _, args := range [][]string{
		{"context", "create", "elsewhere", "--docker", "host=tcp://127.0.0.1:1"},
		{"context", "create", "current", "--docker", "host=tcp://127.0.0.1:2"},
		{"context", "use", "current"},
	} {
		if _, err := userEngine.Run(ctx, args...); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name string
		env  map[string]string
		host string
	}{
		{"current context", map[string]string{}, "tcp://127.0.0.1:2"},
		{"DOCKER_CONTEXT", map[string]string{"DOCKER_CONTEXT": "elsewhere"}, "tcp://127.0.0.1:1"},
		{"DOCKER_HOST", map[string]string{"DOCKER_HOST": "tcp://127.0.0.1:3", "DOCKER_CONFIG": t.TempDir()}, "tcp://127.0.0.1:3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			given := map[string]string{"PATH": os.Getenv("PATH"), "HOME": t.TempDir(), "DOCKER_CONFIG": user}
			for k, v := range c.env {
				given[k] = v
			}
			env, err := EngineEnv(ctx, func(k string) string { return given[k] }, project, map[string]string{"X": "y"})
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"DOCKER_CONFIG=" + project, "DOCKER_HOST=" + c.host, "X=y"} {
				if !slices.Contains(env, want) {
					t.Errorf("env: got %v, want it to contain %s", env, want)
				}
			}
			if i := slices.IndexFunc(env, func(e string) bool { return strings.HasPrefix(e, "DOCKER_CONTEXT=") }); i >= 0 {
				t.Errorf("env: got %s, want no DOCKER_CONTEXT (the project's configuration has no contexts)", env[i])
			}
			out, err := (&Engine{Env: env}).Run(ctx, "foo")
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(out); got != "the-projects" {
				t.Errorf("docker foo: got %q, want %q", got, "the-projects")
			}
		})
	}
}
