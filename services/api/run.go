package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/health"
	"github.com/carteiro/carteiro/services/internal/logging"
	"github.com/carteiro/carteiro/services/internal/outbox"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// run is the whole program; main only wires it to the process. It returns
// when ctx is cancelled (SIGINT/SIGTERM) and everything has stopped.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, telemetryOpts ...telemetry.Option) error {
	cfg, err := config.LoadAPI(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if len(args) > 1 {
		switch args[1] {
		case "healthcheck":
			return health.Check(ctx, cfg.InternalAddr)
		case "migrate":
			return migrate(ctx, cfg, logging.New(stdout, cfg.LogLevel).With("service", "carteiro-api"))
		default:
			return fmt.Errorf("unknown command %q (want: healthcheck, migrate)", args[1])
		}
	}
	log := logging.New(stdout, cfg.LogLevel).With("service", "carteiro-api")
	tel, err := telemetry.Setup(ctx, "carteiro-api", getenv, telemetryOpts...)
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	defer tel.Close(ctx, log)

	db, err := store.Open(ctx, cfg.Postgres, log, tel.PgxOption())
	if err != nil {
		return err
	}
	defer db.Close()
	// Also run by `api migrate` (a Kubernetes init container); applying
	// them again here is a no-op, and keeps `make dev` and compose simple.
	if err := db.Migrate(ctx); err != nil {
		return fmt.Errorf("%w (database %s)", err, cfg.Postgres)
	}
	if err := tel.RecordPoolStats(db.Pool()); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	if cfg.GroupCommit.Flushers > 0 {
		gcCtx, stopGroupCommit := context.WithCancel(context.WithoutCancel(ctx))
		defer stopGroupCommit() // after the servers stop: no insert is waiting then
		db.EnableGroupCommit(gcCtx, cfg.GroupCommit.Flushers, cfg.GroupCommit.MaxBatch, tel.Tracer("carteiro/store"))
	}

	rdb := queue.NewClient(cfg.Redis, 0)
	defer rdb.Close()
	// The relay's housekeeping and the depth gauges poll Redis; tracing
	// them would make a root span every second.
	if err := tel.InstrumentRedis(rdb, func(cmd string) bool {
		switch cmd {
		case "get", "setnx", "set", "xlen", "xinfo", "xrange", "ping":
			return true
		}
		return false
	}); err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	q := queue.New(rdb, cfg.Redis.Stream, cfg.Redis.Group)
	published := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "carteiro_outbox_published_total",
		Help: "Messages put on the stream by the outbox relay.",
	})
	tel.Registry.MustRegister(published, outbox.NewDepthCollector(db, q, log))
	relay := outbox.New(outbox.Deps{
		Store: db, Queue: q, Log: log, Config: cfg.Outbox,
		Tracer: tel.Tracer("carteiro/outbox"), Propagator: tel.Propagator, Published: published,
	})

	stop := newDrain()
	public := &http.Server{
		Handler:           stop.handler(NewServer(log, db, relay, tel, cfg.JaegerURL, cfg.IncomingTraceContext)),
		ConnState:         stop.connState,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      config.WriteTimeout,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	internalMux := http.NewServeMux()
	health.Register(internalMux, log, health.Probe{Name: "api", Check: stop.ready},
		health.Probe{Name: "postgres", Check: db.Ping})
	internalMux.Handle("GET /metrics", tel.MetricsHandler())
	if cfg.PProf {
		health.RegisterPProf(internalMux)
	}
	internal := &http.Server{
		Handler:           internalMux,
		ReadHeaderTimeout: 5 * time.Second,
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	var publicLn net.Listener
	for _, s := range []struct {
		name string
		addr string
		srv  *http.Server
	}{{"public", cfg.HTTPAddr, public}, {"internal", cfg.InternalAddr, internal}} {
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("listen %s (%s): %w", s.addr, s.name, err)
		}
		if s.srv == public {
			publicLn = ln
		}
		log.Info("listening", "listener", s.name, "addr", ln.Addr().String())
		wg.Go(func() {
			err := s.srv.Serve(ln)
			if errors.Is(err, http.ErrServerClosed) || (errors.Is(err, net.ErrClosed) && stop.draining.Load()) {
				return
			}
			errs <- fmt.Errorf("%s server: %w", s.name, err)
		})
	}
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { relay.Run(relayCtx) })

	select {
	case <-ctx.Done():
		err = nil
	case err = <-errs:
	}
	// The order matters behind a proxy: see drain.go.
	log.Info("shutting down", "delay", cfg.ShutdownDelay.String(), "drain", cfg.ShutdownDrain.String())
	stop.begin()
	time.Sleep(cfg.ShutdownDelay)
	_ = publicLn.Close()
	log.Info("listener closed", "listener", "public")
	left := stop.wait(cfg.ShutdownDrain)
	log.Info("drained", "connections_left", left)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), config.APIShutdownTimeout)
	defer cancel()
	_ = public.Shutdown(shutdownCtx)
	_ = internal.Shutdown(shutdownCtx)
	stopRelay()
	wg.Wait()
	return err
}

// migrate brings the schema up to date and returns: `api migrate`, for an
// init container or a job that runs before the api serves. Several may run
// at once (Store.Migrate takes an advisory lock).
func migrate(ctx context.Context, cfg config.API, log *slog.Logger) error {
	db, err := store.Open(ctx, cfg.Postgres, log)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		return fmt.Errorf("%w (database %s)", err, cfg.Postgres)
	}
	log.InfoContext(ctx, "schema up to date", "database", cfg.Postgres.String())
	return nil
}
