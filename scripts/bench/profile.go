package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// BENCH_PROFILE=1 (which also sets PPROF=1 for the stack) keeps the
// worker's profiles of each drain in the run directory: a CPU profile of
// its first BENCH_PROFILE_SECONDS, then the block and mutex profiles
// (cumulative since the worker started, so the whole drain). Read them
// with `go tool pprof -top bin/worker FILE`.

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
	return func() []string {
		var errs []string
		if err := <-cpu; err != nil {
			errs = append(errs, err.Error())
		}
		for _, kind := range []string{"block", "mutex"} {
			if err := fetch(ctx, "http://"+addr+"/debug/pprof/"+kind, name(kind)); err != nil {
				errs = append(errs, err.Error())
			}
		}
		return errs
	}
}

func fetch(ctx context.Context, url, path string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}
