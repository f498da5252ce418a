package main

import (
	"log/slog"
	"net/http"

	"github.com/carteiro/carteiro/services/internal/health"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// addRoutes is the api's whole surface, in one place.
func addRoutes(mux *http.ServeMux, log *slog.Logger, messages messageStore, relay notifier,
	tel *telemetry.Telemetry, metrics *httpMetrics, jaegerURL string) {
	create := handleCreateMessage(log, messages, relay, tel, metrics.accepted, jaegerURL)
	mux.Handle("POST /api", create) // the seed's route, kept for old forms
	mux.Handle("POST /api/messages", create)
	mux.Handle("GET /api/messages/{id}", handleGetMessage(log, messages))
	health.Register(mux, health.Probe{Name: "postgres", Check: messages.Ping})
	mux.Handle("/", handleNotFound(log))
}
