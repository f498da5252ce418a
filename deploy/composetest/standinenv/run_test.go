package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/carteiro/carteiro/deploy/composetest"
)

// allStandins is an image for every stand-in, as StandinImages returns them.
func allStandins() map[string]string {
	vars := map[string]string{}
	for _, s := range composetest.Standins {
		vars[s.Var] = "carteiro-standin/" + s.Name + ":0123456789abcdef"
	}
	return vars
}

func with(vars map[string]string, k, v string) map[string]string {
	vars[k] = v
	return vars
}

func without(vars map[string]string, k string) map[string]string {
	delete(vars, k)
	return vars
}

func TestAssignments(t *testing.T) {
	project := "COMPOSE_PROJECT_NAME=carteiro-standins"
	var every []string
	for k, v := range allStandins() {
		every = append(every, k+"="+v)
	}
	slices.Sort(every)
	for _, tc := range []struct {
		name    string
		vars    map[string]string
		want    []string
		wantErr string // a part of the error; "" for none
	}{
		{"project only", nil, []string{project}, ""},
		{"every stand-in, sorted after the project", allStandins(), append([]string{project}, every...), ""},
		{"a digest reference is one word", with(allStandins(), "GO_IMAGE", "carteiro-standin/golang@sha256:0123"), nil, ""},
		{"a stand-in missing", without(allStandins(), "REDIS_IMAGE"), nil, "no image for REDIS_IMAGE (stand-in redis)"},
		{"empty but not nil", map[string]string{}, nil, "no image for GO_IMAGE"},
		{"not a stand-in", with(allStandins(), "GRAFANA_IMAGE", "grafana/grafana:12"), nil, "GRAFANA_IMAGE is no stand-in's variable"},
		{"a space", with(allStandins(), "NGINX_IMAGE", "carteiro-standin/nginx:a b"), nil, `NGINX_IMAGE="carteiro-standin/nginx:a b" is not one shell word`},
		{"a shell character", with(allStandins(), "NGINX_IMAGE", "x;rm -rf ."), nil, "NGINX_IMAGE"},
		{"a glob", with(allStandins(), "NGINX_IMAGE", "carteiro-standin/*"), nil, "NGINX_IMAGE"},
		{"empty value", with(allStandins(), "NGINX_IMAGE", ""), nil, `NGINX_IMAGE="" is not one shell word`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := assignments(tc.vars)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v, want an error containing %q", got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.want != nil && !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			if len(got) != len(tc.vars)+1 {
				t.Errorf("got %d lines, want %d (the project and each variable)", len(got), len(tc.vars)+1)
			}
		})
	}
}

// TestRun: the arguments, -project-only (no engine, no build), -base
// refused before anything else when not root (building the base as root
// is a root-only side effect: make test-compose does it), and the
// repository root it needs.
func TestRun(t *testing.T) {
	noEnv := func(string) string { return "" }
	const user = 1000
	base := composetest.HostBase().Ref()
	for _, tc := range []struct {
		name    string
		args    []string
		dir     string // working directory; "" for the repository root
		euid    int
		want    string
		wantErr string
	}{
		{"project only", []string{"standinenv", "-project-only"}, "", user, "COMPOSE_PROJECT_NAME=carteiro-standins\n", ""},
		{"project only, as root", []string{"standinenv", "-project-only"}, "", 0, "COMPOSE_PROJECT_NAME=carteiro-standins\n", ""},
		{"project only, anywhere", []string{"standinenv", "-project-only"}, t.TempDir(), user, "COMPOSE_PROJECT_NAME=carteiro-standins\n", ""},
		{"base, not root", []string{"standinenv", "-base"}, "", user, "", "-base builds the base image " + base + " and needs root (debootstrap"},
		{"base, not root, anywhere", []string{"standinenv", "-base"}, t.TempDir(), user, "", "needs root ("},
		{"base and project only", []string{"standinenv", "-base", "-project-only"}, "", 0, "", "-project-only and -base exclude each other"},
		{"unknown flag", []string{"standinenv", "-pull"}, "", user, "", "flag provided but not defined: -pull"},
		{"an argument", []string{"standinenv", "up"}, "", user, "", `unexpected arguments ["up"]`},
		{"an argument to base", []string{"standinenv", "-base", "up"}, "", 0, "", `unexpected arguments ["up"]`},
		{"outside the repository", []string{"standinenv"}, t.TempDir(), user, "", "run it from the repository root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.dir
			if dir == "" {
				dir = filepath.Join("..", "..", "..")
			}
			t.Chdir(dir)
			var stdout, log bytes.Buffer
			err := run(context.Background(), tc.args, noEnv, tc.euid, &stdout, &log)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tc.wantErr)
				}
				if stdout.Len() > 0 {
					t.Errorf("stdout: got %q, want nothing after an error", stdout.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := stdout.String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join("..", "..", "..", "go.mod")); err != nil {
		t.Fatalf("the repository root is not three levels up: %v", err)
	}
}
