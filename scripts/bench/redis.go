package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/carteiro/carteiro/internal/devstack"
)

// redisServer is the bench's private redis-server: a free loopback port,
// no persistence, its own process group.
type redisServer struct {
	Addr string
	cmd  *exec.Cmd
}

func startRedis(ctx context.Context, dir string, logf *os.File) (*redisServer, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("redis-server not found: %w", err)
	}
	// Reserved until just before redis-server binds it.
	var ports devstack.Ports
	defer ports.Close()
	addr, err := ports.Reserve()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	r := &redisServer{Addr: addr}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", port,
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	ports.Release(addr)
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	for i := 0; ; i++ {
		if c.Ping(ctx).Err() == nil {
			return r, nil
		}
		if i == 100 || ctx.Err() != nil {
			r.Stop()
			return nil, fmt.Errorf("redis-server on %s did not answer", r.Addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Flush empties it between modes.
func (r *redisServer) Flush(ctx context.Context) error {
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	return c.FlushAll(ctx).Err()
}

// Stop ends the server and waits for it.
func (r *redisServer) Stop() {
	if r == nil || r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = r.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-done
	}
	r.cmd = nil
}
