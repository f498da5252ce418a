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
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// run is the whole program; main only wires it to the process. On
// SIGTERM it stops reading, finishes the sends in flight (bounded by
// WORKER_SHUTDOWN_TIMEOUT) and returns nil.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, telemetryOpts ...telemetry.Option) error {
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

	tel, err := telemetry.Setup(ctx, "carteiro-worker", getenv, telemetryOpts...)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer tel.Close(ctx, log)

	db, err := store.Open(ctx, cfg.Postgres, log, tel.PgxOption(), store.GenericPlans())
	if err != nil {
		return err
	}
	defer db.Close()
	if err := tel.RecordPoolStats(db.Pool()); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	rdb := queue.NewClient(cfg.Redis, cfg.Concurrency+4)
	defer rdb.Close()
	// The blocking read and the reclaim scan poll all the time; a span per
	// poll would be a root span per second of nothing.
	if err := tel.InstrumentRedis(rdb, func(cmd string) bool {
		switch cmd {
		case "xreadgroup", "xpending", "xclaim", "xgroup", "ping":
			return true
		}
		return false
	}); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	sender, err := mail.NewSender(cfg.SMTP, cfg.From, cfg.To, cfg.Concurrency, tel.Tracer("carteiro/mail"))
	if err != nil {
		return err
	}
	defer sender.Close()

	mux := http.NewServeMux()
	mux.Handle("GET /metrics", tel.MetricsHandler())
	if cfg.PProf {
		health.RegisterPProf(mux)
	}
	health.Register(mux, log,
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
		Tracer: tel.Tracer("carteiro/delivery"), Propagator: tel.Propagator,
		Metrics: delivery.NewMetrics(tel.Registry),
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
		log.Warn("shutdown deadline passed: sends in flight were interrupted; their messages are queued again, or recovered after the lease", "err", err)
	}
	log.Info("stopped")
	return nil
}
