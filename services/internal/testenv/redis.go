package testenv

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a private redis-server, for tests that stop, restart or flush
// it. It keeps nothing on disk, so a restart loses everything, as a Redis
// without persistence does.
type Redis struct {
	t    testing.TB
	Addr string
	cmd  *exec.Cmd
	dir  string
}

// StartRedis starts a redis-server on a free port; it is stopped when t
// ends. Like compose's queue it is capped at 256 MiB and refuses writes
// when full (maxmemory-policy noeviction) rather than evict queued entries.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		Missing(t, "redis-server: %v", err)
	}
	r := &Redis{t: t, Addr: fmt.Sprintf("127.0.0.1:%d", FreePort(t)), dir: t.TempDir()}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Start starts the server (again) and waits until it answers.
func (r *Redis) Start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.Addr)
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port,
		"--save", "", "--appendonly", "no", "--dir", r.dir,
		"--maxmemory", "256mb", "--maxmemory-policy", "noeviction")
	r.cmd.Stdout, r.cmd.Stderr = nil, nil
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(context.Background()).Err() == nil {
			return
		}
		if i == 100 {
			r.t.Fatalf("redis-server on %s did not answer", r.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server; whatever it held is lost.
func (r *Redis) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Client returns a client for the server, closed when t ends.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	r.t.Cleanup(func() { c.Close() })
	return c
}
