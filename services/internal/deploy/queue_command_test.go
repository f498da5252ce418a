package deploy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// queuePasswords are the secrets TestQueueCommand gives the queue: each
// has a space, a quote and a backslash, which Redis' configuration syntax
// needs escaped.
var queuePasswords = map[string]string{
	"redis_password":          `pa ss"wo\rd`,
	"redis_exporter_password": `ex"po\rter pw`,
}

// TestQueueCommand runs the queue's command from each compose file, as its
// container does (sh -c, the secrets as files), on the machine's
// redis-server: Redis requires the password; the overlay's exporter user
// logs in with its own, reads the stream and may not write; the settings
// of the command line hold; and neither password is in an argument
// redis-server was given, nor in its environment.
func TestQueueCommand(t *testing.T) {
	server, err := exec.LookPath("redis-server")
	if err != nil {
		testenv.Missing(t, "redis-server: %v", err)
	}
	for label, p := range projects(t) {
		t.Run(label, func(t *testing.T) {
			dir := t.TempDir()
			secrets, bin := filepath.Join(dir, "secrets"), filepath.Join(dir, "bin")
			for _, d := range []string{secrets, bin} {
				if err := os.Mkdir(d, 0o700); err != nil {
					t.Fatal(err)
				}
			}
			for name, pw := range queuePasswords {
				if err := os.WriteFile(filepath.Join(secrets, name), []byte(pw), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			// In front of the real redis-server: records the arguments it
			// is given, then runs it on a free loopback port in dir.
			port := testenv.FreePort(t)
			argsFile := filepath.Join(dir, "args")
			shim := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\nexec %s \"$@\" --port %d --bind 127.0.0.1 --dir %s\n",
				argsFile, server, port, dir)
			if err := os.WriteFile(filepath.Join(bin, "redis-server"), []byte(shim), 0o700); err != nil {
				t.Fatal(err)
			}
			script := strings.ReplaceAll(queueScript(t, p), "/run/secrets/", secrets+"/")
			cmd := exec.Command("sh", "-c", script)
			cmd.Env = []string{"PATH=" + bin + ":" + os.Getenv("PATH")}
			var log bytes.Buffer
			cmd.Stdout, cmd.Stderr = &log, &log
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
			})

			addr := "127.0.0.1:" + strconv.Itoa(port)
			ctx := context.Background()
			admin := redis.NewClient(&redis.Options{Addr: addr, Password: queuePasswords["redis_password"], MaxRetries: -1})
			defer admin.Close()
			for i := 0; admin.Ping(ctx).Err() != nil; i++ {
				select {
				case err := <-exited:
					t.Fatalf("the queue's command exited: %v: %s", err, log.String())
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
			if label == "base+observability" {
				exporter := redis.NewClient(&redis.Options{Addr: addr, Username: "carteiro-exporter",
					Password: queuePasswords["redis_exporter_password"], MaxRetries: -1})
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
			for name, pw := range queuePasswords {
				if bytes.Contains(args, []byte(pw)) {
					t.Errorf("redis-server's arguments %q: hold %s", args, name)
				}
				if bytes.Contains(environ, []byte(pw)) {
					t.Errorf("redis-server's environment: holds %s", name)
				}
			}
		})
	}
}
