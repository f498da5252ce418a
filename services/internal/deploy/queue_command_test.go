package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	corev1 "k8s.io/api/core/v1"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// queueSecrets is one run's secret files (their content, as written) and
// the passwords Redis must then require (the content without its trailing
// CRs and newlines, as the services read it).
type queueSecrets struct {
	files, passwords map[string]string
}

// queueSecretCases are the secrets TestQueueCommand gives the queue: each
// holds what Redis' configuration syntax or the shell could take for
// syntax (a space, quote, backslash, newline, CR, `$`, backtick).
var queueSecretCases = map[string]queueSecrets{
	"space quote backslash": plainSecrets(`pa ss"wo\rd`, `ex"po\rter pw`),
	"newline":               plainSecrets("pass\nword", "ex\nporter\n\npw"),
	"carriage return":       plainSecrets("pass\rword", "\rexporter"),
	"dollar backtick":       plainSecrets("pa$(id)`id`${HOME}$", "ex$$`true`'pw'"),
	"all of them":           plainSecrets("a\r\n\"\\$`'\x00\xffz", "\\\"\n\rx"),
	"trailing CRLF dropped": {
		files:     map[string]string{"redis_password": "pa\nss\r\n", "redis_exporter_password": "exporter\n\n"},
		passwords: map[string]string{"redis_password": "pa\nss", "redis_exporter_password": "exporter"},
	},
}

// queueEmptySecrets are secret files that hold no password once their
// trailing CRs and newlines are dropped (an empty file, or line ends
// alone): the queue's command must refuse them, naming the file, rather
// than start Redis with requirepass "" (no authentication) or an exporter
// user without a password. exporter marks the exporter's secret, which
// only the scripts that define its user read.
var queueEmptySecrets = map[string]struct {
	files    map[string]string
	exporter bool
}{
	"redis_password empty":           {map[string]string{"redis_password": "", "redis_exporter_password": "exporter"}, false},
	"redis_password CRLF":            {map[string]string{"redis_password": "\r\n", "redis_exporter_password": "exporter"}, false},
	"redis_password newlines":        {map[string]string{"redis_password": "\n\n", "redis_exporter_password": "exporter"}, false},
	"redis_exporter_password empty":  {map[string]string{"redis_password": "pw", "redis_exporter_password": ""}, true},
	"redis_exporter_password CR":     {map[string]string{"redis_password": "pw", "redis_exporter_password": "\r"}, true},
	"redis_exporter_password absent": {map[string]string{"redis_password": "pw"}, true},
}

func plainSecrets(redisPassword, exporterPassword string) queueSecrets {
	pw := map[string]string{"redis_password": redisPassword, "redis_exporter_password": exporterPassword}
	return queueSecrets{files: pw, passwords: pw}
}

// queueScripts are one queue definition's shell scripts: its command
// (sh -c) and its healthchecks (compose's CMD-SHELL; Kubernetes' startup,
// readiness and liveness probes, sh -c), by name.
type queueScripts struct {
	command      string
	healthchecks map[string]string
}

// allQueueScripts are the queue's scripts of both compose files and the
// Kubernetes dev overlay (which defines the exporter user, as compose's
// overlay does), by label.
func allQueueScripts(t *testing.T) map[string]queueScripts {
	t.Helper()
	all := map[string]queueScripts{}
	for label, p := range projects(t) {
		hc := p.Services["queue"].HealthCheck
		if hc == nil || len(hc.Test) != 2 || hc.Test[0] != "CMD-SHELL" {
			t.Fatalf("%s queue healthcheck: got %+v, want CMD-SHELL <script>", label, hc)
		}
		all[label] = queueScripts{queueScript(t, p), map[string]string{"healthcheck": hc.Test[1]}}
	}
	q := loadManifest(t, "dev").workload(t, "queue").pod.Spec.Containers[0]
	shellScript := func(what string, cmd []string) string {
		if len(cmd) != 3 || cmd[0] != "sh" || cmd[1] != "-c" {
			t.Fatalf("kubernetes dev queue %s: got %q, want sh -c <script>", what, cmd)
		}
		return cmd[2]
	}
	k := queueScripts{shellScript("command", slices.Concat(q.Command, q.Args)), map[string]string{}}
	for name, probe := range map[string]*corev1.Probe{"startupProbe": q.StartupProbe, "readinessProbe": q.ReadinessProbe, "livenessProbe": q.LivenessProbe} {
		if probe == nil || probe.Exec == nil {
			t.Fatalf("kubernetes dev queue %s: got %+v, want an exec probe", name, probe)
		}
		k.healthchecks[name] = shellScript(name, probe.Exec.Command)
	}
	all["kubernetes dev"] = k
	return all
}

// queueTools are the programs the queue's scripts are run with:
// redis-server and redis-cli, and busybox (for its sh, od, tr, sed and
// grep, the redis alpine image's) or "" for the machine's own.
type queueTools struct {
	server, cli, busybox string
}

// TestQueueCommand runs the queue's command from each compose file and the
// Kubernetes dev overlay, as its container does (sh -c, the secrets as
// files), on the machine's redis-server, under the machine's sh and under
// busybox's sh, od, tr and sed (the redis alpine image's), with each of
// queueSecretCases: Redis requires the password; the exporter user (compose
// overlay, Kubernetes dev) logs in with its own, reads the stream and may
// not write; the settings of the command line hold; neither password is
// in an argument redis-server was given, nor in its environment; and each
// healthcheck (compose's, the Kubernetes probes) passes, giving redis-cli
// the password in no argument and not in its environment, then fails once
// the secret holds another password. With each of queueEmptySecrets the
// command exits with an error naming the secret and never starts
// redis-server.
func TestQueueCommand(t *testing.T) {
	var tools queueTools
	var err error
	if tools.server, err = exec.LookPath("redis-server"); err != nil {
		testenv.Missing(t, "redis-server: %v", err)
	}
	if tools.cli, err = exec.LookPath("redis-cli"); err != nil {
		testenv.Missing(t, "redis-cli: %v", err)
	}
	scripts := allQueueScripts(t)
	for _, shell := range []string{"sh", "busybox"} {
		t.Run(shell, func(t *testing.T) {
			tools := tools
			if shell == "busybox" {
				if tools.busybox, err = exec.LookPath("busybox"); err != nil {
					testenv.Missing(t, "busybox: %v (apt-get install busybox)", err)
				}
			}
			for _, label := range sortedKeys(scripts) {
				for _, name := range sortedKeys(queueSecretCases) {
					t.Run(label+"/"+name, func(t *testing.T) {
						runQueueCommand(t, tools, scripts[label], label != "base", queueSecretCases[name])
					})
				}
				for _, name := range sortedKeys(queueEmptySecrets) {
					c := queueEmptySecrets[name]
					if c.exporter && label == "base" {
						continue
					}
					t.Run(label+"/"+name, func(t *testing.T) {
						refuseQueueCommand(t, tools, scripts[label].command, c.files)
					})
				}
			}
		})
	}
}

// runQueueCommand runs scripts' command with secrets, with tools, and
// checks the Redis it starts, then the healthchecks.
func runQueueCommand(t *testing.T, tools queueTools, scripts queueScripts, withExporter bool, secrets queueSecrets) {
	q := startQueueCommand(t, tools, scripts.command, secrets.files)
	cmd, port := q.cmd, q.port
	log := &q.log

	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: addr, Password: secrets.passwords["redis_password"], MaxRetries: -1})
	defer admin.Close()
	for i := 0; admin.Ping(ctx).Err() != nil; i++ {
		select {
		case <-q.exited:
			t.Fatalf("the queue's command exited: %v: %s", q.waitErr, log.String())
		default:
		}
		if i == 200 {
			t.Fatalf("redis-server did not answer with the password: %v: %s", admin.Ping(ctx).Err(), log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	anonymous := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer anonymous.Close()
	if err := anonymous.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
		t.Errorf("PING without the password: got %v, want NOAUTH", err)
	}
	for setting, want := range map[string]string{"appendonly": "yes", "maxmemory-policy": "noeviction", "maxmemory": "268435456"} {
		if got, err := admin.ConfigGet(ctx, setting).Result(); err != nil || got[setting] != want {
			t.Errorf("CONFIG GET %s: got %v (%v), want %s", setting, got, err, want)
		}
	}
	if err := admin.XAdd(ctx, &redis.XAddArgs{Stream: "carteiro:emails", Values: []string{"id", "x"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if withExporter {
		exporter := redis.NewClient(&redis.Options{Addr: addr, Username: "carteiro-exporter",
			Password: secrets.passwords["redis_exporter_password"], MaxRetries: -1})
		defer exporter.Close()
		if n, err := exporter.XInfoStream(ctx, "carteiro:emails").Result(); err != nil || n.Length != 1 {
			t.Errorf("XINFO STREAM as carteiro-exporter: got %+v (%v), want the stream", n, err)
		}
		if err := exporter.Set(ctx, "carteiro:x", "1", 0).Err(); err == nil || !strings.Contains(err.Error(), "NOPERM") {
			t.Errorf("SET as carteiro-exporter: got %v, want NOPERM", err)
		}
	}

	args, err := os.ReadFile(q.argsFile)
	if err != nil {
		t.Fatal(err)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for name, pw := range secrets.passwords {
		if bytes.Contains(args, []byte(pw)) {
			t.Errorf("redis-server's arguments %q: hold %s", args, name)
		}
		if bytes.Contains(environ, []byte(pw)) {
			t.Errorf("redis-server's environment: holds %s", name)
		}
	}
	q.checkHealth(t, scripts, secrets.passwords["redis_password"])
}

// refuseQueueCommand runs script with files as the secrets, as
// runQueueCommand does, and checks that it exits with an error naming a
// secret that holds no password, before redis-server was started.
func refuseQueueCommand(t *testing.T, tools queueTools, script string, files map[string]string) {
	q := startQueueCommand(t, tools, script, files)
	// A command that starts redis-server instead never exits by itself:
	// its arguments file says so at once. (A minute bounds a stuck test,
	// it is not a timing assertion.)
	for i := 0; ; i++ {
		select {
		case <-q.exited:
		case <-time.After(50 * time.Millisecond):
			if _, err := os.Stat(q.argsFile); err == nil || i == 1200 {
				t.Fatalf("the queue's command started redis-server (or hung), want it refused: %s", q.argsFile)
			}
			continue
		}
		break
	}
	var empty []string
	for _, name := range []string{"redis_password", "redis_exporter_password"} {
		if content, ok := files[name]; !ok || strings.TrimRight(content, "\r\n") == "" {
			empty = append(empty, q.secretsDir+"/"+name+" is empty")
		}
	}
	if q.waitErr == nil || !slices.ContainsFunc(empty, func(e string) bool { return strings.Contains(q.log.String(), e) }) {
		t.Errorf("the queue's command: got %v, output %q; want it to fail naming one of %q", q.waitErr, q.log.String(), empty)
	}
	if _, err := os.Stat(q.argsFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("redis-server: got started (%v), want never started", err)
	}
}

// queueRun is the queue's command as startQueueCommand started it.
type queueRun struct {
	cmd *exec.Cmd
	// exited is closed once the command has ended, with its error in
	// waitErr and its output in log.
	exited  chan struct{}
	waitErr error
	log     bytes.Buffer
	// port is redis-server's; argsFile, once it started, holds its
	// arguments, one a line; cliFile, each redis-cli's arguments and
	// environment (a healthcheck's), appended; secretsDir holds the secret
	// files.
	port                          int
	argsFile, cliFile, secretsDir string
	// shell and env run a script as the container does.
	shell, env []string
}

// startQueueCommand starts script as the queue's container does (sh -c,
// files as the secrets in /run/secrets), with tools, in front of the real
// redis-server (a shim that records its arguments, then runs it on a free
// loopback port; redis-cli's shim adds that port). The test's cleanup kills
// it.
func startQueueCommand(t *testing.T, tools queueTools, script string, files map[string]string) *queueRun {
	t.Helper()
	dir := t.TempDir()
	q := &queueRun{exited: make(chan struct{}), port: testenv.FreePort(t),
		argsFile: filepath.Join(dir, "args"), cliFile: filepath.Join(dir, "cli"), secretsDir: filepath.Join(dir, "secrets")}
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{q.secretsDir, bin} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(q.secretsDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	q.shell = []string{"sh"}
	if tools.busybox != "" {
		q.shell = []string{tools.busybox, "sh"}
		for _, applet := range []string{"od", "tr", "sed", "grep"} {
			if err := os.Symlink(tools.busybox, filepath.Join(bin, applet)); err != nil {
				t.Fatal(err)
			}
		}
	}
	shims := map[string]string{
		"redis-server": fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\nexec %s \"$@\" --port %d --bind 127.0.0.1 --dir %s\n",
			q.argsFile, tools.server, q.port, dir),
		"redis-cli": fmt.Sprintf("#!/bin/sh\n{ printf '%%s\\n' \"$@\"; env; } >> %s\nexec %s -p %d \"$@\"\n", q.cliFile, tools.cli, q.port),
	}
	for name, shim := range shims {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(shim), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	q.env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	q.cmd = q.script(script)
	q.cmd.Stdout, q.cmd.Stderr = &q.log, &q.log
	if err := q.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { q.waitErr = q.cmd.Wait(); close(q.exited) }()
	// The cleanup waits for the command to end even after a caller saw it.
	t.Cleanup(func() {
		_ = q.cmd.Process.Kill()
		<-q.exited
	})
	return q
}

// script is a command running script as the queue's container would: under
// q's shell and PATH, its /run/secrets/ q's secrets.
func (q *queueRun) script(script string) *exec.Cmd {
	script = strings.ReplaceAll(script, "/run/secrets/", q.secretsDir+"/")
	cmd := exec.Command(q.shell[0], append(q.shell[1:], "-c", script)...)
	cmd.Env = q.env
	return cmd
}

// checkHealth runs each healthcheck of scripts against q's Redis: each
// passes with the secret q was started with, never giving redis-cli
// password (as read, or \xHH-encoded as the scripts encode it) in an
// argument or its environment (REDISCLI_AUTH), and fails once the secret
// holds another password (Redis, started, keeps the one it read).
func (q *queueRun) checkHealth(t *testing.T, scripts queueScripts, password string) {
	t.Helper()
	var encoded strings.Builder
	for _, b := range []byte(password) {
		fmt.Fprintf(&encoded, `\x%02x`, b)
	}
	for _, name := range sortedKeys(scripts.healthchecks) {
		_ = os.Remove(q.cliFile)
		if out, err := q.script(scripts.healthchecks[name]).CombinedOutput(); err != nil {
			t.Errorf("%s: got %v (%q), want it to pass", name, err, out)
		}
		cli, err := os.ReadFile(q.cliFile)
		if err != nil {
			t.Errorf("%s: redis-cli never ran: %v", name, err)
			continue
		}
		if bytes.Contains(cli, []byte(password)) || bytes.Contains(cli, []byte(encoded.String())) {
			t.Errorf("%s: redis-cli's arguments or environment hold the password: %q", name, cli)
		}
	}
	path := filepath.Join(q.secretsDir, "redis_password")
	pw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append([]byte("other"), pw...), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.WriteFile(path, pw, 0o600)
	for _, name := range sortedKeys(scripts.healthchecks) {
		if out, err := q.script(scripts.healthchecks[name]).CombinedOutput(); err == nil {
			t.Errorf("%s with another password in the secret: passed (%q), want it to fail", name, out)
		}
	}
}
