package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/carteiro/carteiro/internal/devstack"
)

// stack is one private native stack (package devstack, the launcher of
// make dev): its own DEV_DIR, free loopback ports, the bench database and
// redis-server, the binaries copied for this run.
type stack struct {
	dev   *devstack.Stack
	ports *devstack.Ports
	dir   string // DEV_DIR
	obs   bool
	addr  map[string]string // listen variable → host:port
}

// the listen addresses the stack takes, by variable; the OBS ones only with
// observability on.
var (
	stackAddrVars = []string{"NGINX_LISTEN", "API_HTTP_ADDR", "API_INTERNAL_ADDR",
		"WORKER_INTERNAL_ADDR", "MAILPIT_SMTP_ADDR", "MAILPIT_UI_ADDR", "NGINX_STATUS_ADDR"}
	obsAddrVars = []string{"JAEGER_OTLP_GRPC_ADDR", "JAEGER_OTLP_HTTP_ADDR", "JAEGER_QUERY_ADDR",
		"OTELCOL_OTLP_GRPC_ADDR", "OTELCOL_OTLP_HTTP_ADDR", "OTELCOL_METRICS_ADDR", "OTELCOL_HEALTH_ADDR",
		"OTELCOL_TELEMETRY_ADDR", "PROMETHEUS_LISTEN", "NGINX_EXPORTER_LISTEN", "ALERTMANAGER_LISTEN", "POSTGRES_EXPORTER_LISTEN",
		"REDIS_EXPORTER_LISTEN"}
)

// newStack prepares (does not start) a stack in dir with the programs of
// binDir; each port stays reserved until its process starts.
func newStack(repo, binDir, dir string, obs bool, redisAddr string, s settings, log io.Writer) (*stack, error) {
	vars := append([]string(nil), stackAddrVars...)
	if obs {
		vars = append(vars, obsAddrVars...)
	}
	st := &stack{ports: &devstack.Ports{}, dir: dir, obs: obs, addr: map[string]string{}}
	own := map[string]string{
		"DEV_DIR":          dir,
		"BIN_DIR":          binDir,
		"RATE_LIMIT":       "0",
		"OBS":              map[bool]string{false: "0", true: "1"}[obs],
		"DB_NAME":          s.DBName,
		"DB_HOST":          s.DBHost,
		"DB_PORT":          s.DBPort,
		"REDIS_ADDR":       redisAddr,
		"MAILPIT_ARGS":     strings.TrimSpace("--max 0 --quiet " + os.Getenv("MAILPIT_ARGS")),
		"READY_TIMEOUT":    "60",
		"STOP_TIMEOUT":     "60", // a worker finishes its sends in flight
		"DB_ADMIN_USER":    s.DBAdmin,
		"WORKER_NAME":      "", // the default: hostname-pid, new after each restart
		"JAEGER_UI_URL":    "",
		"SKIP_MAILPIT":     "0",
		"SKIP_DB_SETUP":    "0",
		"HTTP_ADDR":        "",
		"INTERNAL_ADDR":    "",
		"SMTP_HOST":        "",
		"SMTP_PORT":        "",
		"API_INSTANCES":    os.Getenv("API_INSTANCES"),
		"PPROF":            map[bool]string{true: "1", false: os.Getenv("PPROF")}[s.Profile],
		"WORKER_INSTANCES": os.Getenv("WORKER_INSTANCES"),
	}
	if obs {
		// Nothing connects to the query gRPC API: any free port.
		own["JAEGER_QUERY_GRPC_ADDR"] = "127.0.0.1:0"
	}
	for _, v := range vars {
		a, err := st.ports.Reserve()
		if err != nil {
			st.ports.Close()
			return nil, err
		}
		own[v] = a
		st.addr[v] = a
	}
	var env []string
	for _, k := range sortedKeys(own) {
		if own[k] != "" {
			env = append(env, k+"="+own[k])
		}
	}
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if _, ours := own[k]; ours || strings.HasPrefix(k, "OTEL_") || strings.HasPrefix(k, "JAEGER_") && k != "JAEGER_MAX_TRACES" || strings.HasPrefix(k, "OTELCOL_") {
			continue // the stack sets the OTEL_* variables itself with OBS=1
		}
		env = append(env, kv)
	}
	cfg, err := devstack.Load(repo, env)
	if err != nil {
		st.ports.Close()
		return nil, err
	}
	cfg.Supervisor = filepath.Join(binDir, "devstack")
	st.dev = devstack.New(cfg, log)
	st.dev.Ports = st.ports
	return st, nil
}

// up starts whatever is not running (the whole stack, or the workers
// after stopWorkers) and waits until it is ready.
func (st *stack) up(ctx context.Context) error { return st.dev.Up(ctx) }

// down stops everything this stack's DEV_DIR records, and returns its
// ports. It runs even when ctx is already cancelled.
func (st *stack) down() error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	defer st.ports.Close()
	return st.dev.Down(ctx)
}

// url of one of the stack's listeners.
func (st *stack) url(v, path string) string { return "http://" + st.addr[v] + path }

// procs are the running instances of kind (api or worker), by name.
func (st *stack) procs(kind string) map[string]devstack.Process { return st.dev.Instances(kind) }

// pids of the running instances of kind, by name.
func (st *stack) pids(kind string) map[string]int {
	m := map[string]int{}
	for name, p := range st.procs(kind) {
		m[name] = p.PID
	}
	return m
}

// stopWorkers stops every worker together (SIGTERM: each finishes its
// sends in flight; SIGKILL after STOP_TIMEOUT) and returns once each has
// exited.
func (st *stack) stopWorkers(ctx context.Context) error {
	procs := st.procs("worker")
	if len(procs) == 0 {
		return errors.New("no worker is running")
	}
	if err := st.dev.Stop(ctx, sortedKeys(procs)...); err != nil {
		return fmt.Errorf("stop the workers: %w", err)
	}
	// Their ports stay this stack's until they start again (up releases
	// them): the machine is shared, and a port left free is soon taken.
	for _, a := range st.dev.Config.WorkerInternalAddrs {
		if err := st.ports.Hold(a); err != nil {
			return fmt.Errorf("stop the workers: %w", err)
		}
	}
	return ctx.Err()
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

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
