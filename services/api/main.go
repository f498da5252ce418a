// Command api is carteiro's HTTP API: it validates a contact message,
// commits it to Postgres and lets the outbox relay hand it to the workers.
//
// Usage:
//
//	api              serve (configuration from the environment)
//	api healthcheck  exit 0 when the running api is ready (for containers)
//	api migrate      apply the database migrations and exit (an init step;
//	                 several may run at once: they take turns on a lock)
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
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "api:", err)
		os.Exit(1)
	}
}
