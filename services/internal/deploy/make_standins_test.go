package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The compose files of make up, and with STANDINS=1 the compose test's
// override after them.
const (
	makeComposeFiles = "-f docker-compose.yml -f docker-compose.observability.yml"
	standinsFiles    = makeComposeFiles + " -f deploy/composetest/compose.test-override.yml"
)

// makeIn runs make in the repository with env and returns its output.
func makeIn(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	makeBin, err := exec.LookPath("make")
	if err != nil {
		t.Fatalf("make: %v", err)
	}
	cmd := exec.Command(makeBin, append([]string{"--no-print-directory", "-C", repoRoot(t)}, args...)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// composeLines are the lines of out that run docker compose.
func composeLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "docker compose ") {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	return lines
}

// TestMakeStandinsCommands: make up, down and logs with STANDINS=1 run
// compose with the environment bin/standinenv prints (up: the images, built
// first with the tools the stand-ins are made of; down and logs: the project
// name alone, nothing built) and the test's override file; with STANDINS=0
// or unset they are make up's commands as before; any other value stops make,
// and so does make load STANDINS=1 (k6 has no stand-in) (`make -n`: the
// commands are printed, not run).
func TestMakeStandinsCommands(t *testing.T) {
	dir := t.TempDir()
	fakeBin, binDir := fakePath(t, dir, map[string]string{"docker": fakeDocker}), filepath.Join(dir, "bin")
	env := []string{"PATH=" + fakeBin + ":" + os.Getenv("PATH"), "HOME=" + dir, "COMPOSE_OK=1"}
	standinenv := filepath.Join(binDir, "standinenv")
	prefix := func(args string) string {
		return "vars=$(BIN_DIR='" + binDir + "' " + standinenv + args + ") && env $vars docker compose " + standinsFiles
	}
	for _, tc := range []struct {
		target, standins string
		want             string   // the compose command
		wantBuilt        []string // lines that build what it needs, before it
		wantNot          []string // parts of lines it must not print
	}{
		{"up", "1", prefix("") + " up -d --build --wait",
			[]string{"go build -o " + standinenv + " ./deploy/composetest/standinenv",
				"-o " + filepath.Join(binDir, "mailpit") + " ", "-o " + filepath.Join(binDir, "docker-compose") + " ",
				"touch " + filepath.Join(binDir, "mailpit"), "touch " + filepath.Join(binDir, "jaeger"),
				"touch " + filepath.Join(binDir, "otelcol"), "touch " + filepath.Join(binDir, "prometheus"),
				filepath.Join(binDir, "docker-config", "cli-plugins", "docker-buildx")}, nil},
		{"down", "1", prefix(" -project-only") + " down",
			[]string{"go build -o " + standinenv + " ./deploy/composetest/standinenv"}, []string{"touch "}},
		{"logs", "1", prefix(" -project-only") + " logs -f --tail=100",
			[]string{"go build -o " + standinenv + " ./deploy/composetest/standinenv"}, []string{"touch "}},
		{"up", "0", "docker compose " + makeComposeFiles + " up -d --build --wait", nil, []string{"standinenv", "override"}},
		{"up", "", "docker compose " + makeComposeFiles + " up -d --build --wait", nil, []string{"standinenv", "override"}},
		{"down", "", "docker compose " + makeComposeFiles + " down", nil, []string{"standinenv", "override"}},
		{"logs", "0", "docker compose " + makeComposeFiles + " logs -f --tail=100", nil, []string{"standinenv", "override"}},
	} {
		t.Run(tc.target+" STANDINS="+tc.standins, func(t *testing.T) {
			args := []string{"-n", tc.target, "BIN_DIR=" + binDir}
			if tc.standins != "" {
				args = append(args, "STANDINS="+tc.standins)
			}
			out, err := makeIn(t, env, args...)
			if err != nil {
				t.Fatalf("make %v: %v: %s", args, err, out)
			}
			compose := composeLines(out)
			if len(compose) != 1 || compose[0] != tc.want {
				t.Fatalf("make %v: got compose commands %q, want [%q]", args, compose, tc.want)
			}
			// An absolute BIN_DIR is used as it is, never under the
			// repository: $(CURDIR)/$(BIN_DIR) printed <repo>//tmp/...
			if wrong := "/" + binDir; strings.Contains(out, wrong) {
				t.Errorf("make %v: got %q, want no %q", args, out, wrong)
			}
			before, _, _ := strings.Cut(out, compose[0])
			for _, b := range tc.wantBuilt {
				if !strings.Contains(before, b) {
					t.Errorf("make %v: got %q, want %q before the compose command", args, out, b)
				}
			}
			for _, n := range tc.wantNot {
				if strings.Contains(out, n) {
					t.Errorf("make %v: got %q, want no %q", args, out, n)
				}
			}
		})
	}
	if out, err := makeIn(t, env, "-n", "load", "BIN_DIR="+binDir, "STANDINS=1"); err == nil || !strings.Contains(out, "k6 has no stand-in") {
		t.Errorf("make -n load STANDINS=1: got %v: %s, want an error: k6 has no stand-in", err, out)
	}
	for _, v := range []string{"yes", "true", "2"} {
		out, err := makeIn(t, env, "-n", "up", "BIN_DIR="+binDir, "STANDINS="+v)
		if err == nil || !strings.Contains(out, "STANDINS="+v+": give 0") {
			t.Errorf("make -n up STANDINS=%s: got %v: %s, want an error naming STANDINS", v, err, out)
		}
	}
	// An empty STANDINS, exported or on the command line, is unset: make
	// help and plain make up still run.
	for _, c := range []struct {
		env, args []string
	}{
		{append(slices.Clone(env), "STANDINS="), nil},
		{env, []string{"STANDINS="}},
		{env, []string{"STANDINS= "}},
	} {
		if out, err := makeIn(t, c.env, append([]string{"help"}, c.args...)...); err != nil || !strings.Contains(out, "usage: make") {
			t.Errorf("make help, STANDINS empty (%q, %q): got %v: %s, want the help", c.env[len(c.env)-1], c.args, err, out)
		}
		out, err := makeIn(t, c.env, append([]string{"-n", "up", "BIN_DIR=" + binDir}, c.args...)...)
		want := "docker compose " + makeComposeFiles + " up -d --build --wait"
		if compose := composeLines(out); err != nil || !slices.Equal(compose, []string{want}) {
			t.Errorf("make -n up, STANDINS empty (%q, %q): got %v: %q, want [%q]", c.env[len(c.env)-1], c.args, err, compose, want)
		}
	}
}

// fakeGo is the go command for TestMakeStandinsRun: `go build -o FILE ...`
// writes a standinenv that prints $FAKE_PRINT and exits $FAKE_EXIT.
const fakeGo = `#!/bin/sh
[ "$1 $2" = "build -o" ] || { echo "fake go: $*" >&2; exit 1; }
mkdir -p "$(dirname "$3")"
printf '#!/bin/sh\nprintf "%%b" "$FAKE_PRINT"\nexit "${FAKE_EXIT:-0}"\n' > "$3"
chmod +x "$3"
`

// recordingDocker is a docker whose compose answers its version and
// records, for any other command, COMPOSE_PROJECT_NAME, GO_IMAGE and its
// arguments in $FAKE_LOG.
const recordingDocker = `#!/bin/sh
if [ "$1 $2" = "compose version" ]; then echo 'Docker Compose version v9.9.9'; exit 0; fi
echo "COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME GO_IMAGE=$GO_IMAGE args=$*" >> "$FAKE_LOG"
`

// TestMakeStandinsRun runs make down and logs with STANDINS=1 for real, on
// a go that builds a standinenv printing what it is told to and a docker
// that records what compose got: compose runs with the printed environment,
// and when standinenv fails, make fails and compose never runs (no fallback
// to the images of .env). make up shares the same glue (TestMakeStandinsCommands).
func TestMakeStandinsRun(t *testing.T) {
	dir := t.TempDir()
	fakeBin := fakePath(t, dir, map[string]string{"docker": recordingDocker, "go": fakeGo})
	binDir, log := filepath.Join(dir, "bin"), filepath.Join(dir, "docker.log")
	for _, tc := range []struct {
		name, print, exit string
		wantErr           bool
		want              string // docker.log
	}{
		{"the printed environment", `COMPOSE_PROJECT_NAME=carteiro-standins\nGO_IMAGE=carteiro-standin/golang:0123\n`, "0", false,
			"COMPOSE_PROJECT_NAME=carteiro-standins GO_IMAGE=carteiro-standin/golang:0123 args=compose " + standinsFiles + " "},
		{"standinenv fails", `COMPOSE_PROJECT_NAME=carteiro-standins\n`, "1", true, ""},
	} {
		for _, target := range []string{"down", "logs"} {
			t.Run(tc.name+" "+target, func(t *testing.T) {
				_ = os.Remove(log)
				env := []string{"PATH=" + fakeBin + ":" + os.Getenv("PATH"), "HOME=" + dir, "FAKE_LOG=" + log,
					"FAKE_PRINT=" + tc.print, "FAKE_EXIT=" + tc.exit}
				out, err := makeIn(t, env, target, "STANDINS=1", "BIN_DIR="+binDir, "GO="+filepath.Join(fakeBin, "go"))
				if tc.wantErr != (err != nil) {
					t.Fatalf("make %s STANDINS=1: got %v: %s, want an error: %v", target, err, out, tc.wantErr)
				}
				got, _ := os.ReadFile(log)
				if tc.want == "" {
					if len(got) > 0 {
						t.Errorf("docker: got %q, want no command run", got)
					}
					return
				}
				if !strings.HasPrefix(string(got), tc.want) || strings.Count(string(got), "\n") != 1 {
					t.Errorf("docker: got %q, want one command starting %q", got, tc.want)
				}
			})
		}
	}
}
