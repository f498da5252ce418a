package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/internal/devstack"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// TestDevCommand runs what `make dev`, `make dev-status` and `make
// dev-down` run: the bin/devstack command, on free ports and a new role and
// database (created by the command, as for a developer), with a private
// Redis. The processes outlive `devstack up`, a message goes through them,
// and `devstack down` stops every one.
func TestDevCommand(t *testing.T) {
	bin := os.Getenv("BIN_DIR")
	if bin == "" {
		bin = filepath.Join(repoRoot(t), "bin")
	}
	for _, b := range []string{"devstack", "api", "worker", "mailpit"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			testenv.Missing(t, "%s (run make build tools): %v", filepath.Join(bin, b), err)
		}
	}
	redis := testenv.StartRedis(t)
	b := make([]byte, 6)
	rand.Read(b)
	name := "carteiro_dev_" + hex.EncodeToString(b)
	admin, err := pgx.Connect(context.Background(), testenv.AdminURL())
	if err != nil {
		testenv.Missing(t, "postgres: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Exec(ctx, "DROP ROLE IF EXISTS "+name)
		admin.Close(ctx)
	})

	// Free ports, released for the command (it takes no reservation).
	var ports devstack.Ports
	addr := func() string {
		a, err := ports.Reserve()
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	dir := t.TempDir()
	nginx, ui := addr(), addr()
	env := append(os.Environ(), "DEV_DIR="+dir, "BIN_DIR="+bin, "DB_USER="+name, "DB_NAME="+name,
		"DB_SSLMODE=disable", "REDIS_ADDR="+redis.Addr, "NGINX_LISTEN="+nginx, "MAILPIT_UI_ADDR="+ui,
		"NGINX_STATUS_ADDR="+addr(), "API_HTTP_ADDR="+addr(), "API_INTERNAL_ADDR="+addr(),
		"WORKER_INTERNAL_ADDR="+addr(), "MAILPIT_SMTP_ADDR="+addr(), "OBS=0", "RATE_LIMIT=0",
		"OUTBOX_SWEEP_INTERVAL=100ms")
	ports.Close()
	devstackCmd := func(arg string) (string, error) {
		cmd := exec.Command(filepath.Join(bin, "devstack"), arg)
		cmd.Dir = repoRoot(t)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		if out, err := devstackCmd("down"); err != nil {
			t.Errorf("devstack down: %v\n%s", err, out)
		}
	})

	out, err := devstackCmd("up")
	if err != nil {
		t.Fatalf("devstack up: %v\n%s", err, out)
	}
	if !strings.Contains(out, "stack is up: http://"+nginx+"/") {
		t.Errorf("devstack up: got %q, want it to say where the stack is", out)
	}

	// `up` has exited; every component runs and is ready.
	out, err = devstackCmd("status")
	if err != nil {
		t.Fatalf("devstack status: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	running := regexp.MustCompile(`^(\S+)\s+running  pid \d+\s+ready\s+http://\S+$`)
	var names []string
	for _, l := range lines {
		m := running.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("status line %q: want running and ready", l)
			continue
		}
		names = append(names, m[1])
	}
	if g, w := strings.Join(names, " "), "mailpit api worker nginx"; g != w {
		t.Errorf("status: got components %q, want %q\n%s", g, w, out)
	}

	// A message goes through them, into Mailpit.
	res, err := http.Post("http://"+nginx+"/api/messages", "application/json",
		strings.NewReader(`{"assunto":"make dev","mensagem":"pelo devstack"}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: got %d, want 202", res.StatusCode)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var list struct{ Messages []struct{ Subject string } }
		if res, err := http.Get("http://" + ui + "/api/v1/messages"); err == nil {
			json.NewDecoder(res.Body).Decode(&list)
			res.Body.Close()
		}
		if len(list.Messages) == 1 && list.Messages[0].Subject == "make dev" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Mailpit: got %+v, want the message", list.Messages)
		}
		time.Sleep(100 * time.Millisecond)
	}

	if out, err := devstackCmd("down"); err != nil {
		t.Fatalf("devstack down: %v\n%s", err, out)
	}
	out, _ = devstackCmd("status")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.Contains(l, " stopped  (last exit status ") {
			t.Errorf("status after down: %q, want stopped with its exit status", l)
		}
	}
}
