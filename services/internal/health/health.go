package health

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Probe is one dependency that must answer for the process to be ready.
type Probe struct {
	Name  string
	Check func(context.Context) error
}

// Register adds GET /healthz (the process is alive) and GET /readyz (every
// probe answers within two seconds) to mux. Register them on an internal
// port only: never on a listener the public reaches.
//
// The bodies are terse ("ok", "ready", "<probe>: unavailable"): a probe's
// error, which may carry addresses, user and database names, goes to log
// (level WARN), never into the answer.
func Register(mux *http.ServeMux, log *slog.Logger, probes ...Probe) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		for _, p := range probes {
			if err := p.Check(ctx); err != nil {
				log.WarnContext(ctx, "readiness probe failed", "probe", p.Name, "err", err)
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "%s: unavailable\n", p.Name)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
}

// Check asks the process listening on addr whether it is ready, and
// returns an error unless it says so. An addr without a host (":9101")
// means this machine.
func Check(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck address %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/readyz", nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("not ready: %w", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("not ready: %s", res.Status)
	}
	return nil
}
