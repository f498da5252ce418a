package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/config"
)

// AdminURL is the superuser connection to the machine's Postgres that
// creates and drops test databases (TEST_POSTGRES_ADMIN_URL overrides it).
func AdminURL() string {
	if v := os.Getenv("TEST_POSTGRES_ADMIN_URL"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// NewDatabase creates an empty database on the machine's Postgres for t,
// drops it when t ends, and returns its configuration.
func NewDatabase(t testing.TB) config.Postgres {
	t.Helper()
	return newDatabase(t, AdminURL(), "127.0.0.1", 5432)
}

func newDatabase(t testing.TB, adminURL, host string, port int) config.Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		Missing(t, "postgres at %s: %v", adminURL, err)
	}
	defer admin.Close(context.Background())
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "carteiro_test_" + hex.EncodeToString(b)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Logf("drop database %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop database %s: %v", name, err)
		}
	})
	cfg := config.Postgres{
		Host: host, Port: port, Name: name, User: "postgres", SSLMode: "disable",
		ConnectTimeout: 2 * time.Second, QueryTimeout: 1500 * time.Millisecond,
	}
	return cfg
}

// Postgres is a private Postgres server, for tests that stop it.
type Postgres struct {
	t       testing.TB
	dir     string
	port    int
	asUser  []string
	Config  config.Postgres
	started bool
}

// StartPostgres runs initdb in a temporary folder and starts a server on a
// free port, with one empty database for the test. It is stopped when t
// ends.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin, err := pgBin()
	if err != nil {
		Missing(t, "%v", err)
	}
	p := &Postgres{t: t, port: FreePort(t)}
	p.dir, err = os.MkdirTemp("", "carteiro-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(p.dir) })
	if os.Geteuid() == 0 {
		// initdb refuses to run as root; the machine's postgres user runs it.
		p.asUser = []string{"runuser", "-u", "postgres", "--"}
		if err := exec.Command("chown", "postgres", p.dir).Run(); err != nil {
			t.Fatalf("chown %s: %v", p.dir, err)
		}
	}
	data := filepath.Join(p.dir, "data")
	p.cmd(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
	p.Start()
	t.Cleanup(p.Stop)
	p.Config = newDatabase(t, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.port), "127.0.0.1", p.port)
	return p
}

// Start starts the server (again) and waits until it accepts connections.
func (p *Postgres) Start() {
	p.t.Helper()
	bin, _ := pgBin()
	data := filepath.Join(p.dir, "data")
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", p.port, p.dir)
	p.cmd(filepath.Join(bin, "pg_ctl"), "-D", data, "-o", opts, "-l", filepath.Join(p.dir, "log"), "-w", "-t", "30", "start")
	p.started = true
}

// Stop stops the server immediately (fast shutdown), as a crash would.
func (p *Postgres) Stop() {
	if !p.started {
		return
	}
	bin, _ := pgBin()
	p.cmd(filepath.Join(bin, "pg_ctl"), "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "-w", "stop")
	p.started = false
}

// Port is the server's port.
func (p *Postgres) Port() int { return p.port }

func (p *Postgres) cmd(name string, args ...string) {
	p.t.Helper()
	argv := append(append([]string{}, p.asUser...), name)
	argv = append(argv, args...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// pgBin finds the folder with initdb and pg_ctl.
func pgBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if _, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) == 0 {
		return "", fmt.Errorf("initdb and pg_ctl not found (install postgresql)")
	}
	return filepath.Dir(matches[len(matches)-1]), nil
}
