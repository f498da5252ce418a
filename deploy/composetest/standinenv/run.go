package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
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
// progress goes to log. euid is the process's effective user ID (-base
// needs root).
func run(ctx context.Context, args []string, getenv func(string) string, euid int, stdout, log io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(log)
	projectOnly := fs.Bool("project-only", false, "print COMPOSE_PROJECT_NAME alone; build nothing")
	baseOnly := fs.Bool("base", false, "build the Debian base image alone, as root (debootstrap); print nothing")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (usage: standinenv [-project-only | -base])", fs.Args())
	}
	logf := func(format string, a ...any) { fmt.Fprintf(log, "standinenv: "+format+"\n", a...) }
	switch {
	case *projectOnly && *baseOnly:
		return errors.New("-project-only and -base exclude each other")
	case *projectOnly:
		return write(stdout, nil)
	case *baseOnly:
		return buildBase(ctx, getenv, euid, logf)
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

// buildBase builds the stand-ins' Debian base image (composetest.HostBase)
// alone, unless it exists, on the engine of the caller's own docker
// configuration: the one step of `make up STANDINS=1` that needs root, run
// once as root (sudo bin/standinenv -base) so that make up runs as the user
// and leaves nothing of root's in bin/ or .secrets/. It refuses, naming what
// is missing, before it does anything when euid is not root or debootstrap
// is not on PATH.
func buildBase(ctx context.Context, getenv func(string) string, euid int, logf func(string, ...any)) error {
	base := composetest.HostBase()
	if missing := composetest.BaseNeeds(euid, exec.LookPath); len(missing) > 0 {
		return fmt.Errorf("-base builds the base image %s and needs %s", base.Ref(), strings.Join(missing, " and "))
	}
	e := &composetest.Engine{Env: composetest.CommandEnv(getenv, nil)}
	if _, err := e.ServerVersion(ctx); err != nil {
		return fmt.Errorf("no Docker Engine to build on: %w", err)
	}
	ref, built, err := e.EnsureBase(ctx, base)
	if err != nil {
		return err
	}
	if built {
		logf("image %s: built", ref)
	} else {
		logf("image %s: there already", ref)
	}
	return nil
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
