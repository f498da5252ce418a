package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/delivery"
	"github.com/carteiro/carteiro/services/internal/health"
	"github.com/carteiro/carteiro/services/internal/logging"
	"github.com/carteiro/carteiro/services/internal/mail"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/store"
)

// run is the whole program; main only wires it to the process. On
// SIGTERM it stops reading, finishes the sends in flight (bounded by
// WORKER_SHUTDOWN_TIMEOUT) and returns nil.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.LoadWorker(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := logging.New(stdout, cfg.LogLevel).With("service", "carteiro-worker")
	if len(args) > 1 {
		switch args[1] {
		case "healthcheck":
			return health.Check(ctx, cfg.InternalAddr)
		case "reprocess":
			return reprocess(ctx, cfg, log, args[2:], stdout)
		default:
			return fmt.Errorf("unknown command %q (want: healthcheck, reprocess)", args[1])
		}
	}

	db, err := store.Open(ctx, cfg.Postgres, log)
	if err != nil {
		return err
	}
	defer db.Close()
	rdb := queue.NewClient(cfg.Redis, cfg.Concurrency+4)
	defer rdb.Close()
	sender, err := mail.NewSender(cfg.SMTP, cfg.From, cfg.To, cfg.Concurrency)
	if err != nil {
		return err
	}
	defer sender.Close()

	mux := http.NewServeMux()
	health.Register(mux,
		health.Probe{Name: "postgres", Check: db.Ping},
		health.Probe{Name: "redis", Check: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
	)
	internal := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", cfg.InternalAddr)
	if err != nil {
		return fmt.Errorf("listen %s (internal): %w", cfg.InternalAddr, err)
	}
	log.Info("listening", "listener", "internal", "addr", ln.Addr().String())
	go func() {
		if err := internal.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("internal server", "err", err)
		}
	}()
	defer internal.Close()

	pool := delivery.NewPool(delivery.Deps{
		Store: db, Queue: queue.New(rdb, cfg.Redis.Stream, cfg.Redis.Group),
		Sender: sender, Log: log, Config: cfg,
	})
	done := make(chan error, 1)
	go func() { done <- pool.Run(context.WithoutCancel(ctx)) }()
	log.Info("worker started", "consumer", cfg.Name, "concurrency", cfg.Concurrency, "smtp", sender.Addr())

	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: finishing the sends in flight", "timeout", cfg.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := pool.Shutdown(shutdownCtx); err != nil {
		log.Warn("shutdown deadline passed; unfinished messages will be recovered after the lease", "err", err)
	}
	log.Info("stopped")
	return nil
}
