package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
)

func TestRunStatusAndDownOfAnEmptyStack(t *testing.T) {
	env := []string{"DEV_DIR=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	var out, log bytes.Buffer
	if err := run(context.Background(), []string{"devstack", "status"}, env, &out, &log); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		f := strings.Fields(l)
		if len(f) != 2 || f[1] != "stopped" {
			t.Errorf("status line %q: want <name> stopped", l)
		}
		names = append(names, f[0])
	}
	if g, w := strings.Join(names, " "), "mailpit api worker nginx"; g != w {
		t.Errorf("status: got %s, want %s", g, w)
	}
	out.Reset()
	env = append(env, "OBS=1", "API_INSTANCES=2", "NGINX_EXPORTER_BIN=/bin/true")
	if err := run(context.Background(), []string{"devstack", "status"}, env, &out, &log); err != nil {
		t.Fatal(err)
	}
	// jaeger otelcol mailpit alertmanager prometheus api api-2 worker
	// nginx, and the nginx, Postgres and Redis exporters.
	if n := strings.Count(out.String(), "\n"); n != 12 {
		t.Errorf("status with OBS=1 and two apis: got %d lines, want 12\n%s", n, out.String())
	}
	if err := run(context.Background(), []string{"devstack", "down"}, env, &out, &log); err != nil {
		t.Errorf("down of an empty stack: %v", err)
	}
}

func TestRunErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"devstack"}, nil, "usage"},
		{[]string{"devstack", "restart"}, nil, "usage"},
		{[]string{"devstack", "status"}, []string{"OBS=maybe"}, "OBS"},
		{[]string{"devstack", "up"}, []string{"API_INSTANCES=1000"}, "API_INSTANCES"},
	} {
		err := run(context.Background(), c.args, append(c.env, "DEV_DIR="+t.TempDir()), &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v %v: got %v, want an error with %q", c.args, c.env, err, c.want)
		}
	}
}
