package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestLoadAPIDefaults(t *testing.T) {
	c, err := LoadAPI(env(nil))
	if err != nil {
		t.Fatalf("got %v, want nil", err)
	}
	if c.HTTPAddr != "127.0.0.1:8081" || c.InternalAddr != "127.0.0.1:9101" {
		t.Errorf("addrs: got %s %s, want loopback defaults", c.HTTPAddr, c.InternalAddr)
	}
	if c.Postgres.Name != "carteiro" || c.Postgres.QueryTimeout != 1500*time.Millisecond {
		t.Errorf("postgres: got %+v", c.Postgres)
	}
	if c.Redis.Stream != "carteiro:emails" {
		t.Errorf("stream: got %q, want carteiro:emails", c.Redis.Stream)
	}
}

func TestLoadNamesEveryBadVariable(t *testing.T) {
	_, err := LoadWorker(env(map[string]string{
		"DB_PORT":            "abc",
		"WORKER_CONCURRENCY": "0",
		"WORKER_LEASE":       "soon",
		"SMTP_TLS":           "maybe",
		"MAIL_TO":            "not an address",
		"LOG_LEVEL":          "loud",
	}))
	if err == nil {
		t.Fatal("got nil, want an error")
	}
	for _, name := range []string{"DB_PORT", "WORKER_CONCURRENCY", "WORKER_LEASE", "SMTP_TLS", "MAIL_TO", "LOG_LEVEL"} {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestSMTPTimeoutMustBeShorterThanLease(t *testing.T) {
	_, err := LoadWorker(env(map[string]string{"SMTP_TIMEOUT": "90s", "WORKER_LEASE": "60s"}))
	if err == nil || !strings.Contains(err.Error(), "SMTP_TIMEOUT") {
		t.Errorf("got %v, want an error naming SMTP_TIMEOUT", err)
	}
}

func TestSecretFromFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadAPI(env(map[string]string{"DB_PASSWORD": "ignored", "DB_PASSWORD_FILE": path, "REDIS_PASSWORD": "r"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Postgres.Password != "s3cret" || c.Redis.Password != "r" {
		t.Errorf("got %q %q, want s3cret r", c.Postgres.Password, c.Redis.Password)
	}
	if strings.Contains(c.Postgres.String(), "s3cret") {
		t.Errorf("String() leaks the password: %s", c.Postgres)
	}
	if !strings.Contains(c.Postgres.URL(), "s3cret") {
		t.Errorf("URL() lacks the password")
	}
	_, err = LoadAPI(env(map[string]string{"DB_PASSWORD_FILE": filepath.Join(t.TempDir(), "missing")}))
	if err == nil || !strings.Contains(err.Error(), "DB_PASSWORD_FILE") {
		t.Errorf("got %v, want an error naming DB_PASSWORD_FILE", err)
	}
}
