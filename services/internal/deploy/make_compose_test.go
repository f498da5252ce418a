package deploy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeDocker is a docker in front of PATH for TestMakeComposeCommand:
// `docker compose version` answers when COMPOSE_OK is set, and `docker
// context inspect` names the engine of FAKE_HOST.
const fakeDocker = `#!/bin/sh
case "$1 $2" in
"compose version") [ -n "$COMPOSE_OK" ] && echo 'Docker Compose version v9.9.9' && exit 0
	echo "docker: 'compose' is not a docker command." >&2; exit 1 ;;
"context inspect") echo "$FAKE_HOST" ;;
*) echo "fake docker: $*" >&2; exit 1 ;;
esac
`

// fakePath writes scripts (name → text) as executables into dir/path and
// returns that folder, to put in front of PATH.
func fakePath(t *testing.T, dir string, scripts map[string]string) string {
	t.Helper()
	path := filepath.Join(dir, "path")
	if err := os.MkdirAll(path, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, text := range scripts {
		if err := os.WriteFile(filepath.Join(path, name), []byte(text), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// TestMakeComposeCommand: make up, down, logs and load run the user's own
// `docker compose` when their docker has one; else the plugin make
// docker-tools builds, under the project's DOCKER_CONFIG and on the engine of
// the user's context; with neither, make stops with an error naming make
// docker-tools, except make up STANDINS=1, which builds the plugin first and
// so runs it (`make -n`: the commands are printed, not run).
func TestMakeComposeCommand(t *testing.T) {
	dir := t.TempDir()
	fakeBin, binDir := fakePath(t, dir, map[string]string{"docker": fakeDocker}), filepath.Join(dir, "bin")
	plugin := filepath.Join(binDir, "docker-config", "cli-plugins", "docker-compose")
	const host = "ssh://user@engine.example"
	projectCompose := "DOCKER_HOST='" + host + "' DOCKER_CONTEXT= DOCKER_CONFIG='" + filepath.Join(binDir, "docker-config") + "' docker compose "
	for _, tc := range []struct {
		name        string
		userHas     bool
		pluginBuilt bool
		want        string // the prefix of every compose command; "" for the error
	}{
		{"user's compose", true, false, "docker compose "},
		{"user's compose before the project's", true, true, "docker compose "},
		{"project's plugin", false, true, projectCompose},
		{"neither", false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.RemoveAll(binDir)
			if tc.pluginBuilt {
				if err := os.MkdirAll(filepath.Dir(plugin), 0o700); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(plugin, []byte("#!/bin/sh\n"), 0o700); err != nil {
					t.Fatal(err)
				}
			}
			env := []string{"PATH=" + fakeBin + ":" + os.Getenv("PATH"), "HOME=" + dir, "FAKE_HOST=" + host}
			if tc.userHas {
				env = append(env, "COMPOSE_OK=1")
			}
			for _, target := range []string{"up", "down", "logs", "load"} {
				out, err := makeIn(t, env, "-n", target, "BIN_DIR="+binDir)
				if tc.want == "" {
					if err == nil || !strings.Contains(out, "run `make docker-tools`") {
						t.Errorf("make -n %s: got %v: %s, want an error naming make docker-tools", target, err, out)
					}
					continue
				}
				if err != nil {
					t.Fatalf("make -n %s: %v: %s", target, err, out)
				}
				compose := composeLines(out)
				if len(compose) == 0 {
					t.Errorf("make -n %s: got %q, want a docker compose command", target, out)
				}
				for _, l := range compose {
					if !strings.HasPrefix(l, tc.want) {
						t.Errorf("make -n %s: got %q, want it to start with %q", target, l, tc.want)
					}
				}
			}
			// make up STANDINS=1 builds docker-tools before compose runs:
			// with no compose of the user's, its dry run prints the plugin's
			// build, then compose run as that plugin.
			out, err := makeIn(t, env, "-n", "up", "STANDINS=1", "BIN_DIR="+binDir)
			if err != nil {
				t.Fatalf("make -n up STANDINS=1: %v: %s", err, out)
			}
			want := tc.want
			if want == "" {
				want = projectCompose
			}
			compose := composeLines(out)
			if len(compose) != 1 || !strings.Contains(compose[0], " && env $vars "+want) {
				t.Fatalf("make -n up STANDINS=1: got compose commands %q, want one running %q", compose, want)
			}
			if before, _, _ := strings.Cut(out, compose[0]); !tc.pluginBuilt && !strings.Contains(before, "install -D -m 0755 "+filepath.Join(binDir, "docker-compose")+" "+plugin) {
				t.Errorf("make -n up STANDINS=1: got %q, want the plugin's install before the compose command", out)
			}
		})
	}
}
