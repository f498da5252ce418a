package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// A stop without 5xx behind nginx. Open-source nginx has no active health
// checks, and never sends a POST it already sent to another api
// (proxy_next_upstream error timeout, without non_idempotent): only a
// request that never reached this api may go to the other one. So a
// stopping api must never close a connection nginx may be writing a
// request on. HTTP/1.1 has no GOAWAY: the server closing an idle
// keep-alive connection races with the proxy sending on it (what
// http.Server.Shutdown does to idle connections). On SIGTERM the api
// therefore
//
//  1. fails its readiness and answers every request with
//     "Connection: close", so the proxy puts no connection back in its pool;
//  2. closes its listener: a new connection is refused, which nginx retries
//     on the other api (the request was never sent). With SHUTDOWN_DELAY it
//     first keeps accepting that long, for a load balancer that learns of
//     the stop on its own (Kubernetes waits before SIGTERM instead: the
//     manifests' preStop sleep, with SHUTDOWN_DELAY 0);
//  3. waits until the proxy has closed its idle connections (nginx's
//     upstream keepalive_timeout, shorter than SHUTDOWN_DRAIN) or used
//     them once more, at most SHUTDOWN_DRAIN;
//  4. only then calls Shutdown, which finishes the requests in flight.
//
// What is left: a connection nginx opened in the microseconds before the
// listener closed, still in the kernel's accept queue, is reset with it.

// errDraining is the readiness answer of a stopping api.
var errDraining = errors.New("shutting down")

// drain tracks the public listener's connections and the stop's state.
type drain struct {
	draining atomic.Bool
	mu       sync.Mutex
	conns    int
	idle     chan struct{} // closed once draining with no connection left
}

func newDrain() *drain { return &drain{idle: make(chan struct{})} }

// connState is the public server's ConnState hook.
func (d *drain) connState(_ net.Conn, s http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch s {
	case http.StateNew:
		d.conns++
	case http.StateClosed, http.StateHijacked:
		d.conns--
		d.closeIfIdle()
	}
}

func (d *drain) closeIfIdle() {
	if d.conns == 0 && d.draining.Load() {
		select {
		case <-d.idle:
		default:
			close(d.idle)
		}
	}
}

// handler closes each connection after its answer once the stop began.
func (d *drain) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d.draining.Load() {
			w.Header().Set("Connection", "close")
		}
		next.ServeHTTP(w, r)
	})
}

// ready is a readiness probe: it fails once the stop began.
func (d *drain) ready(context.Context) error {
	if d.draining.Load() {
		return errDraining
	}
	return nil
}

// begin starts the stop: readiness fails, answers close their connection.
func (d *drain) begin() {
	d.draining.Store(true)
	d.mu.Lock()
	d.closeIfIdle()
	d.mu.Unlock()
}

// wait returns once no connection is left, or after max.
func (d *drain) wait(max time.Duration) (left int) {
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-d.idle:
	case <-t.C:
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns
}
