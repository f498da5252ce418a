package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stack is one private native stack started with scripts/dev.sh: its own
// DEV_DIR, free loopback ports, the bench database and redis-server.
type stack struct {
	repo   string
	dir    string // DEV_DIR
	obs    bool
	env    []string
	log    io.Writer
	addr   map[string]string // role → host:port
	dbName string
}

// the listen addresses dev.sh takes, by variable; the OBS ones only with
// observability on.
var (
	stackAddrVars = []string{"NGINX_LISTEN", "API_HTTP_ADDR", "API_INTERNAL_ADDR",
		"WORKER_INTERNAL_ADDR", "MAILPIT_SMTP_ADDR", "MAILPIT_UI_ADDR", "NGINX_STATUS_ADDR"}
	obsAddrVars = []string{"JAEGER_OTLP_GRPC_ADDR", "JAEGER_OTLP_HTTP_ADDR", "JAEGER_QUERY_ADDR",
		"PROMETHEUS_LISTEN", "NGINX_EXPORTER_LISTEN"}
)

// newStack prepares (does not start) a stack in dir.
func newStack(repo, binDir, dir string, obs bool, redisAddr string, s settings, log io.Writer) (*stack, error) {
	vars := append([]string(nil), stackAddrVars...)
	if obs {
		vars = append(vars, obsAddrVars...)
	}
	ports, err := freePorts(len(vars))
	if err != nil {
		return nil, err
	}
	st := &stack{repo: repo, dir: dir, obs: obs, log: log, addr: map[string]string{}, dbName: s.DBName}
	own := map[string]string{
		"DEV_DIR":          dir,
		"BIN_DIR":          filepath.Join(repo, "bin"),
		"RATE_LIMIT":       "0",
		"OBS":              map[bool]string{false: "0", true: "1"}[obs],
		"DB_NAME":          s.DBName,
		"DB_HOST":          s.DBHost,
		"DB_PORT":          s.DBPort,
		"REDIS_ADDR":       redisAddr,
		"MAILPIT_ARGS":     strings.TrimSpace("--max 0 --quiet " + os.Getenv("MAILPIT_ARGS")),
		"READY_TIMEOUT":    "60",
		"DB_ADMIN_USER":    s.DBAdmin,
		"WORKER_NAME":      "", // dev.sh's default: hostname-pid, new after each restart
		"JAEGER_UI_URL":    "",
		"SKIP_MAILPIT":     "0",
		"SKIP_DB_SETUP":    "0",
		"HTTP_ADDR":        "",
		"INTERNAL_ADDR":    "",
		"SMTP_HOST":        "",
		"SMTP_PORT":        "",
		"API_INSTANCES":    os.Getenv("API_INSTANCES"),
		"WORKER_INSTANCES": os.Getenv("WORKER_INSTANCES"),
	}
	if obs {
		// Nothing connects to the query gRPC API: any free port.
		own["JAEGER_QUERY_GRPC_ADDR"] = "127.0.0.1:0"
	}
	for i, v := range vars {
		a := fmt.Sprintf("127.0.0.1:%d", ports[i])
		own[v] = a
		st.addr[v] = a
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := own[k]; ours || strings.HasPrefix(k, "OTEL_") || strings.HasPrefix(k, "JAEGER_") && k != "JAEGER_MAX_TRACES" {
			continue // dev.sh sets the OTEL_* variables itself with OBS=1
		}
		st.env = append(st.env, kv)
	}
	keys := make([]string, 0, len(own))
	for k := range own {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if own[k] != "" {
			st.env = append(st.env, k+"="+own[k])
		}
	}
	return st, nil
}

// freePorts returns n distinct loopback ports that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (st *stack) devsh(ctx context.Context, arg string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(st.repo, "scripts", "dev.sh"), arg)
	cmd.Dir = st.repo
	cmd.Env = st.env
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, st.log)
	cmd.Stderr = cmd.Stdout
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("scripts/dev.sh %s: %w\n%s", arg, err, indent(tail(out.String(), 60)))
	}
	return nil
}

// up starts whatever is not running (the whole stack, or the worker after
// stopWorkers) and waits until it is ready.
func (st *stack) up(ctx context.Context) error { return st.devsh(ctx, "up") }

// down stops everything this stack's DEV_DIR records. It runs even when
// ctx is already cancelled.
func (st *stack) down() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return st.devsh(ctx, "down")
}

// url of one of the stack's listeners.
func (st *stack) url(v, path string) string { return "http://" + st.addr[v] + path }

// pids of the running instances of kind (api or worker), by name.
func (st *stack) pids(kind string) map[string]int {
	m := map[string]int{}
	files, _ := filepath.Glob(filepath.Join(st.dir, kind+"*.pid"))
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".pid")
		if name != kind && !strings.HasPrefix(name, kind+"-") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || !runs(pid, kind) {
			continue
		}
		m[name] = pid
	}
	return m
}

// runs reports whether pid is alive and runs the program named kind, so a
// recycled pid is never signalled.
func runs(pid int, kind string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(b) == 0 {
		return false
	}
	argv0, _, _ := bytes.Cut(b, []byte{0})
	return filepath.Base(string(argv0)) == kind
}

// stopWorkers stops every worker (SIGTERM: it finishes its sends in
// flight) and waits until each has exited.
func (st *stack) stopWorkers(ctx context.Context) error {
	pids := st.pids("worker")
	if len(pids) == 0 {
		return errors.New("no worker is running")
	}
	for name, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			return fmt.Errorf("stop %s (pid %d): %w", name, pid, err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for name, pid := range pids {
		for runs(pid, "worker") {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				return fmt.Errorf("%s (pid %d) did not stop within 60s after SIGTERM", name, pid)
			}
			if err := sleep(ctx, 50*time.Millisecond); err != nil {
				return err
			}
		}
		os.Remove(filepath.Join(st.dir, name+".pid"))
		os.Remove(filepath.Join(st.dir, name+".url"))
	}
	return nil
}

// startTime is when process pid started, from /proc (10 ms resolution).
func startTime(pid int) (time.Time, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return time.Time{}, err
	}
	// Fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return time.Time{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ticks, err := strconv.ParseInt(f[19], 10, 64) // field 22: starttime
	if err != nil {
		return time.Time{}, err
	}
	btime := bootTime()
	if btime == 0 {
		return time.Time{}, errors.New("no btime in /proc/stat")
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Unix(btime, 0).Add(time.Duration(ticks) * time.Second / clkTck), nil
}

func bootTime() int64 {
	for line := range strings.SplitSeq(readFile("/proc/stat"), "\n") {
		if v, ok := strings.CutPrefix(line, "btime "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

func indent(s string) string { return "    " + strings.ReplaceAll(s, "\n", "\n    ") }
