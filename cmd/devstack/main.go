// Command devstack starts, stops and lists carteiro's native stack (package
// internal/devstack): `make dev` is `devstack up`, `make dev-down` is
// `devstack down`, `make dev-status` is `devstack status`.
//
//	devstack up       start whatever is not running; wait until it is ready
//	devstack down     stop every process this DEV_DIR records
//	devstack status   one line per component
//
// Settings come from the environment (OBS=1, RATE_LIMIT=0, API_INSTANCES,
// listen addresses, ...: the README's "Configuration" section). It must run
// inside the repository (it finds nginx/, web/ and observability/ from the
// current directory up); DEV_DIR defaults to the repository's .dev/.
//
// `devstack supervise DIR NAME -- PROGRAM [ARG...]` is how `up` runs each
// component: this same binary, in a session of its own, records the
// program's pid and, when it ends, its exit status (devstack.Supervise).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/carteiro/carteiro/internal/devstack"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == devstack.SuperviseCommand {
		// No signal handling here: the supervisor passes signals on.
		if err := devstack.Supervise(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "devstack supervise:", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Environ(), os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "devstack:", err)
		os.Exit(1)
	}
}

const usage = "usage: devstack up|down|status"

// run runs one command with the environment given; progress goes to log,
// the status lines to stdout.
func run(ctx context.Context, args, environ []string, stdout, log io.Writer) error {
	if len(args) != 2 {
		return errors.New(usage)
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := devstack.FindRoot(wd)
	if err != nil {
		return err
	}
	cfg, err := devstack.Load(root, environ)
	if err != nil {
		return err
	}
	if cfg.Supervisor, err = os.Executable(); err != nil {
		return err
	}
	s := devstack.New(cfg, log)
	switch args[1] {
	case "up":
		if err := s.Up(ctx); err != nil {
			return err
		}
		_, err := io.WriteString(log, cfg.Banner())
		return err
	case "down":
		return s.Down(ctx)
	case "status":
		return s.Status(ctx, stdout)
	}
	return errors.New(usage)
}
