// Command standinenv prepares `make up STANDINS=1`: carteiro's compose stack
// on the compose test's stand-in images (package composetest), for a machine
// that reaches no image registry. It builds every stand-in whose image is
// missing, as `make test-compose` does (the Debian base needs root and
// debootstrap, the stand-ins a Debian mirror), and prints, one per line, the
// environment the Makefile gives compose:
//
//	COMPOSE_PROJECT_NAME=carteiro-standins
//	ALERTMANAGER_IMAGE=carteiro-standin/alertmanager:<hash>
//	...
//
// Each *_IMAGE is the exact image this tree's inputs give
// (composetest.StandinImages, through which the compose test gets its
// images too), never another tag of the same repository.
//
//	standinenv [-project-only | -base]
//
// -project-only prints COMPOSE_PROJECT_NAME alone and builds nothing (make
// down and logs). -base builds the Debian base image alone and prints
// nothing: the one step that needs root, so that it can run as root (`sudo
// bin/standinenv -base`, on the engine of root's docker configuration) and
// make up as the user; it refuses when not root. Otherwise it runs from the
// repository root; BIN_DIR (default bin)
// holds mailpit, jaeger, otelcol, prometheus and, under docker-config, the
// docker-compose and docker-buildx plugins the builds run with (make tools
// jaeger otelcol docker-tools). The engine is the one of the caller's docker
// configuration (composetest.EngineEnv). Progress goes to standard error.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Geteuid(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "standinenv:", err)
		os.Exit(1)
	}
}
