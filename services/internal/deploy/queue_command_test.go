package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

func plainSecrets(redisPassword, exporterPassword string) queueSecrets {
	pw := map[string]string{"redis_password": redisPassword, "redis_exporter_password": exporterPassword}
	return queueSecrets{files: pw, passwords: pw}
}

// queueScripts are the queue's sh -c scripts: both compose files' and the
// Kubernetes dev overlay's (which defines the exporter user, as compose's
// overlay does).
func queueScripts(t *testing.T) map[string]string {
	t.Helper()
	scripts := map[string]string{}
	for label, p := range projects(t) {
		scripts[label] = queueScript(t, p)
	}
	q := loadManifest(t, "dev").workload(t, "queue").pod.Spec.Containers[0]
	cmd := slices.Concat(q.Command, q.Args)
	if len(cmd) != 3 || cmd[0] != "sh" || cmd[1] != "-c" {
		t.Fatalf("kubernetes dev queue command: got %q, want sh -c <script>", cmd)
	}
	scripts["kubernetes dev"] = cmd[2]
	return scripts
}

// TestQueueCommand runs the queue's command from each compose file and the
// Kubernetes dev overlay, as its container does (sh -c, the secrets as
// files), on the machine's redis-server, under the machine's sh and under
// busybox's sh, od, tr and sed (the redis alpine image's), with each of
// queueSecretCases: Redis requires the password; the exporter user (compose
// overlay, Kubernetes dev) logs in with its own, reads the stream and may
// not write; the settings of the command line hold; and neither password is
// in an argument redis-server was given, nor in its environment.
func TestQueueCommand(t *testing.T) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Missing(t, "redis-server: %v", err)
	}
	scripts := queueScripts(t)
	for _, shell := range []string{"sh", "busybox"} {
		t.Run(shell, func(t *testing.T) {
			var busybox string
			if shell == "busybox" {
				if busybox, err = exec.LookPath("busybox"); err != nil {
					testenv.Missing(t, "busybox: %v (apt-get install busybox)", err)
				}
			}
			for _, label := range sortedKeys(scripts) {
				for _, name := range sortedKeys(queueSecretCases) {
					t.Run(label+"/"+name, func(t *testing.T) {
						runQueueCommand(t, server, busybox, scripts[label], label != "base", queueSecretCases[name])
					})
				}
			}
		})
	}
}

// runQueueCommand runs script with secrets, under busybox's sh, od, tr and
// sed when busybox is set, and checks the Redis it starts.
func runQueueCommand(t *testing.T, server, busybox, script string, withExporter bool, secrets queueSecrets) {
	dir := t.TempDir()
	secretsDir, bin := filepath.Join(dir, "secrets"), filepath.Join(dir, "bin")
	for _, d := range []string{secretsDir, bin} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for name, content := range secrets.files {
		if err := os.WriteFile(filepath.Join(secretsDir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	shell := []string{"sh"}
	if busybox != "" {
		shell = []string{busybox, "sh"}
		for _, applet := range []string{"od", "tr", "sed"} {
			if err := os.Symlink(busybox, filepath.Join(bin, applet)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// In front of the real redis-server: records the arguments it is
	// given, then runs it on a free loopback port in dir.
	port := testenv.FreePort(t)
	argsFile := filepath.Join(dir, "args")
	shim := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\nexec %s \"$@\" --port %d --bind 127.0.0.1 --dir %s\n",
		argsFile, server, port, dir)
	if err := os.WriteFile(filepath.Join(bin, "redis-server"), []byte(shim), 0o700); err != nil {
		t.Fatal(err)
	}
	script = strings.ReplaceAll(script, "/run/secrets/", secretsDir+"/")
	cmd := exec.Command(shell[0], append(shell[1:], "-c", script)...)
	cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed once the command has ended, with its error in
	// waitErr: the cleanup waits for it even after the loop below saw it.
	exited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: addr, Password: secrets.passwords["redis_password"], MaxRetries: -1})
	defer admin.Close()
	for i := 0; admin.Ping(ctx).Err() != nil; i++ {
		select {
		case <-exited:
			t.Fatalf("the queue's command exited: %v: %s", waitErr, log.String())
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

	args, err := os.ReadFile(argsFile)
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
}
