package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BENCH_PROFILE=1 (which also sets PPROF=1 for the stack) keeps the
// worker's profiles of each drain in the run directory: a CPU profile of
// its first BENCH_PROFILE_SECONDS, then the block and mutex profiles
// (cumulative since the worker started, so the whole drain). Read them
// with `go tool pprof -top bin/worker FILE`. Beside them, an execution
// trace of the drain's second and third seconds (worker-trace-r<round>.out:
// where each goroutine waits, `go tool trace` or its -pprof=sched|net|sync
// views). It also keeps the api's CPU
// profile of each accept run (its first BENCH_PROFILE_SECONDS, at most the
// run's length less a second) and the api's heap profile near the end of
// phase 4.

// profileDrain starts the CPU profile of the worker at addr (its internal
// listener); the returned function waits for it and fetches the others.
func profileDrain(ctx context.Context, addr, dir string, round int, seconds int) func() []string {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return func() []string { return []string{err.Error()} }
	}
	name := func(kind string) string { return filepath.Join(dir, fmt.Sprintf("worker-%s-r%d.pprof", kind, round)) }
	cpu := make(chan error, 1)
	go func() {
		cpu <- fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds), name("cpu"))
	}()
	trace := make(chan error, 1)
	go func() {
		if err := sleep(ctx, traceAfter); err != nil {
			trace <- err
			return
		}
		trace <- fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/trace?seconds=%d", addr, traceSeconds),
			filepath.Join(dir, fmt.Sprintf("worker-trace-r%d.out", round)))
	}()
	return func() []string {
		var errs []string
		for _, c := range []chan error{cpu, trace} {
			if err := <-c; err != nil {
				errs = append(errs, err.Error())
			}
		}
		for _, kind := range []string{"block", "mutex"} {
			if err := fetch(ctx, "http://"+addr+"/debug/pprof/"+kind, name(kind)); err != nil {
				errs = append(errs, err.Error())
			}
		}
		return errs
	}
}

// The drain's execution trace starts traceAfter into it (past the
// first claims) and lasts traceSeconds: a drain of BENCH_N=10,000 lasts
// about 5 s on two cores.
const (
	traceAfter   = time.Second
	traceSeconds = 2
)

func fetch(ctx context.Context, url, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := get(ctx, http.DefaultClient, url, func(r io.Reader) error {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(f, r)
		return err
	}); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	return nil
}

// profileAccept starts a CPU profile of the api at addr (its internal
// listener) for the first seconds of an accept run, kept as
// api-cpu-<variant>-c<conns>-r<round>.pprof in dir; the returned function
// waits for it. Read with `go tool pprof -top bin/api FILE`; the on and off
// modes' profiles of the same variant compare the tracing's cost.
func profileAccept(ctx context.Context, addr, dir, variant string, conns, round, seconds int) func() error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return func() error { return err }
	}
	path := filepath.Join(dir, fmt.Sprintf("api-cpu-%s-c%d-r%d.pprof", strings.ReplaceAll(variant, "+", "-"), conns, round))
	done := make(chan error, 1)
	go func() {
		done <- fetch(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, seconds), path)
	}()
	return func() error { return <-done }
}

// profileHeap keeps the api's heap profile (in use and allocated since it
// started) as api-heap-<what>.pprof in dir, after waiting for delay: phase
// 4 takes it near the end of its load, when the backlog is deepest.
func profileHeap(ctx context.Context, addr, dir, what string, delay time.Duration) func() error {
	done := make(chan error, 1)
	go func() {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			done <- err
			return
		}
		if sleep(ctx, delay) != nil {
			done <- ctx.Err()
			return
		}
		done <- fetch(ctx, "http://"+addr+"/debug/pprof/heap", filepath.Join(dir, "api-heap-"+what+".pprof"))
	}()
	return func() error { return <-done }
}
