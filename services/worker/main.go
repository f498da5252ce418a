// Command worker delivers carteiro's messages: it reads ids from the Redis
// stream as part of a consumer group, claims each message in Postgres and
// sends it by SMTP.
//
// Usage:
//
//	worker                          run (configuration from the environment)
//	worker healthcheck              exit 0 when the running worker is ready
//	worker reprocess --dead         send every dead message again
//	worker reprocess --failed       send every failed message again, now
//	worker reprocess --id ID ...    send these messages again
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
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(1)
	}
}
