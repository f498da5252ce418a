package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/google/uuid"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/store"
)

// idList collects repeated --id flags.
type idList []string

func (l *idList) String() string { return strings.Join(*l, ",") }
func (l *idList) Set(v string) error {
	if _, err := uuid.Parse(v); err != nil {
		return fmt.Errorf("%q is not a message id", v)
	}
	*l = append(*l, v)
	return nil
}

// reprocess puts messages back in the queue from Postgres, where every
// message is kept for exactly this. The api's outbox relay publishes them.
func reprocess(ctx context.Context, cfg config.Worker, log *slog.Logger, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("reprocess", flag.ContinueOnError)
	fs.SetOutput(stdout)
	dead := fs.Bool("dead", false, "re-queue every dead message")
	failed := fs.Bool("failed", false, "re-queue every failed message now, without waiting for its backoff")
	var ids idList
	fs.Var(&ids, "id", "re-queue the message with this id (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var statuses []string
	if *dead {
		statuses = append(statuses, "dead")
	}
	if *failed {
		statuses = append(statuses, "failed")
	}
	if len(ids) == 0 && len(statuses) == 0 {
		return errors.New("reprocess: say which messages: --dead, --failed or --id ID")
	}
	if len(ids) > 0 && len(statuses) > 0 {
		return errors.New("reprocess: --id cannot be combined with --dead or --failed")
	}
	db, err := store.Open(ctx, cfg.Postgres, log)
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := db.Requeue(ctx, ids, statuses)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "re-queued %d message(s)\n", n)
	return nil
}
