package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// execCall records what run would have executed.
type execCall struct {
	path string
	argv []string
	env  []string
}

func fakeExec(c *execCall) execFunc {
	return func(path string, argv, env []string) error {
		*c = execCall{path, argv, env}
		return nil
	}
}

// fakeNginx puts an executable named nginx in a new folder, for PATH.
func fakeNginx(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nginx"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRunRendersThenExecsNginx(t *testing.T) {
	bin, tmpl, out := fakeNginx(t), t.TempDir(), t.TempDir()
	if err := os.MkdirAll(filepath.Join(tmpl, "conf.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(tmpl, "conf.d", "a.conf.template"), []byte("listen ${PORT}; $host ${OTHER}\n"), 0o644)
	env := []string{"PATH=" + bin, "NGINX_ENVSUBST_TEMPLATE_DIR=" + tmpl, "NGINX_ENVSUBST_OUTPUT_DIR=" + out,
		"NGINX_ENVSUBST_FILTER=^PORT$", "PORT=8080", "OTHER=x"}
	var c execCall
	var log bytes.Buffer
	args := []string{"/nginx-entrypoint", "nginx", "-g", "daemon off;"}
	if err := run(args, env, &log, fakeExec(&c)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(out, "conf.d", "a.conf"))
	if err != nil || string(b) != "listen 8080; $host ${OTHER}\n" {
		t.Errorf("conf.d/a.conf: got %q (%v), want the filtered rendering", b, err)
	}
	if c.path != filepath.Join(bin, "nginx") || !slices.Equal(c.argv, args[1:]) || !slices.Equal(c.env, env) {
		t.Errorf("exec: got %+v, want %s/nginx with %q and the same environment", c, bin, args[1:])
	}
	want := "20-envsubst-on-templates.sh: Running envsubst on " + filepath.Join(tmpl, "conf.d", "a.conf.template") +
		" to " + filepath.Join(out, "conf.d", "a.conf")
	if !strings.Contains(log.String(), want) {
		t.Errorf("log: got %q, want a line %q", log.String(), want)
	}

	// Quiet logs.
	log.Reset()
	if err := run(args, append(env, "NGINX_ENTRYPOINT_QUIET_LOGS=1"), &log, fakeExec(&c)); err != nil || log.Len() != 0 {
		t.Errorf("quiet: got %v and log %q, want no error and no log", err, log.String())
	}
}

func TestRunOtherCommandsAreNotRendered(t *testing.T) {
	tmpl, out := t.TempDir(), t.TempDir()
	os.WriteFile(filepath.Join(tmpl, "a.conf.template"), []byte("x"), 0o644)
	var c execCall
	env := []string{"NGINX_ENVSUBST_TEMPLATE_DIR=" + tmpl, "NGINX_ENVSUBST_OUTPUT_DIR=" + out}
	if err := run([]string{"/e", "/bin/true", "arg"}, env, &bytes.Buffer{}, fakeExec(&c)); err != nil {
		t.Fatal(err)
	}
	if c.path != "/bin/true" || !slices.Equal(c.argv, []string{"/bin/true", "arg"}) {
		t.Errorf("exec: got %+v, want /bin/true arg", c)
	}
	if entries, _ := os.ReadDir(out); len(entries) != 0 {
		t.Errorf("output folder: got %d entries, want none (only nginx renders)", len(entries))
	}
}

// TestRunOutputNotWritable: as in the image, an ERROR line and nginx still
// runs.
func TestRunOutputNotWritable(t *testing.T) {
	bin, tmpl := fakeNginx(t), t.TempDir()
	os.WriteFile(filepath.Join(tmpl, "a.conf.template"), []byte("x"), 0o644)
	missing := filepath.Join(t.TempDir(), "missing")
	var c execCall
	var log bytes.Buffer
	env := []string{"PATH=" + bin, "NGINX_ENVSUBST_TEMPLATE_DIR=" + tmpl, "NGINX_ENVSUBST_OUTPUT_DIR=" + missing}
	if err := run([]string{"/e", "nginx"}, env, &log, fakeExec(&c)); err != nil {
		t.Fatal(err)
	}
	if want := "ERROR: " + tmpl + " exists, but " + missing + " is not writable"; !strings.Contains(log.String(), want) {
		t.Errorf("log: got %q, want %q", log.String(), want)
	}
	if c.path != filepath.Join(bin, "nginx") {
		t.Errorf("exec: got %q, want nginx from PATH", c.path)
	}
}

func TestRunErrors(t *testing.T) {
	var c execCall
	if err := run([]string{"/e"}, nil, &bytes.Buffer{}, fakeExec(&c)); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("no command: got %v, want a usage error", err)
	}
	if err := run([]string{"/e", "no-such-program"}, []string{"PATH=" + t.TempDir()}, &bytes.Buffer{}, fakeExec(&c)); err == nil ||
		!strings.Contains(err.Error(), "no-such-program") {
		t.Errorf("unknown command: got %v, want an error naming it", err)
	}
}
