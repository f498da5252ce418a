package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/carteiro/carteiro/deploy/composetest"
)

// Project is the compose project name of the stack on stand-ins: its own
// containers, networks and volumes, beside a `make up` stack's (carteiro).
const Project = "carteiro-standins"

// run prints the environment for compose on stdout (see the package doc);
// progress goes to log.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, log io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(log)
	projectOnly := fs.Bool("project-only", false, "print COMPOSE_PROJECT_NAME alone; build nothing")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (usage: standinenv [-project-only])", fs.Args())
	}
	if *projectOnly {
		return write(stdout, nil)
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "deploy", "composetest", "standins")); err != nil {
		return fmt.Errorf("run it from the repository root (make up STANDINS=1 does): %w", err)
	}
	binDir := getenv("BIN_DIR")
	if binDir == "" {
		binDir = "bin"
	}
	if binDir, err = filepath.Abs(binDir); err != nil {
		return err
	}
	env, err := composetest.EngineEnv(ctx, getenv, composetest.PluginConfigDir(binDir), nil)
	if err != nil {
		return err
	}
	e := &composetest.Engine{Dir: root, Env: env}
	if _, err := e.ServerVersion(ctx); err != nil {
		return fmt.Errorf("no Docker Engine to build on: %w", err)
	}
	logf := func(format string, a ...any) { fmt.Fprintf(log, "standinenv: "+format+"\n", a...) }
	opts, err := composetest.HostBuildOptions(ctx, getenv, root, binDir, logf)
	if err != nil {
		return err
	}
	vars, err := composetest.StandinImages(ctx, e, opts)
	if err != nil {
		return err
	}
	return write(stdout, vars)
}

// write prints COMPOSE_PROJECT_NAME, then vars, one NAME=value per line.
func write(w io.Writer, vars map[string]string) error {
	lines, err := assignments(vars)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, strings.Join(lines, "\n")+"\n")
	return err
}

// shellWord is a value the Makefile can pass as one word, unquoted (`env
// $vars`): no space, quote, glob or shell character.
var shellWord = regexp.MustCompile(`^[A-Za-z0-9._/:@-]+$`)

// assignments are the lines standinenv prints: COMPOSE_PROJECT_NAME=Project,
// then every image variable sorted by name. vars is nil (the project name
// alone) or holds exactly the Var of every composetest.Standins entry; a
// missing or unknown variable, or a value that is not one shell word, is an
// error naming it.
func assignments(vars map[string]string) ([]string, error) {
	lines := []string{"COMPOSE_PROJECT_NAME=" + Project}
	if vars == nil {
		return lines, nil
	}
	var errs []error
	want := map[string]bool{}
	for _, s := range composetest.Standins {
		want[s.Var] = true
		if _, ok := vars[s.Var]; !ok {
			errs = append(errs, fmt.Errorf("no image for %s (stand-in %s)", s.Var, s.Name))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		switch v := vars[k]; {
		case !want[k]:
			errs = append(errs, fmt.Errorf("%s is no stand-in's variable", k))
		case !shellWord.MatchString(v):
			errs = append(errs, fmt.Errorf("%s=%q is not one shell word", k, v))
		default:
			lines = append(lines, k+"="+v)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return lines, nil
}
