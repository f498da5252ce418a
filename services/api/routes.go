package main

import (
	"log/slog"
	"net/http"

	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// addRoutes is the api's whole public surface, in one place. Liveness,
// readiness and metrics are on the internal listener only (run).
func addRoutes(mux *http.ServeMux, log *slog.Logger, messages messageStore, relay notifier,
	tel *telemetry.Telemetry, metrics *httpMetrics, jaegerURL string) {
	create := handleCreateMessage(log, messages, relay, tel, metrics.accepted, jaegerURL)
	mux.Handle("POST /api", create) // the seed's route, kept for old forms
	mux.Handle("POST /api/messages", create)
	mux.Handle("GET /api/messages/{id}", handleGetMessage(log, messages))
	mux.Handle("/", handleNotFound(log))
}
