package main

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/store"
)

// messageStore is what the handlers need from the store.
type messageStore interface {
	Insert(ctx context.Context, in message.Input, traceparent, tracestate string) (store.Email, error)
	Get(ctx context.Context, id string) (store.Email, error)
	Ping(ctx context.Context) error
}

// notifier is woken after each commit (the outbox relay).
type notifier interface{ Notify() }

// NewServer returns the api's public handler: the routes, behind the
// cross-origin protection that rejects cross-site POSTs.
func NewServer(log *slog.Logger, messages messageStore, relay notifier) http.Handler {
	mux := http.NewServeMux()
	addRoutes(mux, log, messages, relay)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		respondError(w, r, log, errForbiddenCrossSite)
	}))
	return cop.Handler(mux)
}
