package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// acceptedResponse is the JSON answer to an accepted message.
type acceptedResponse struct {
	ID        string         `json:"id"`
	Status    message.Status `json:"status"`
	StatusURL string         `json:"status_url"`
	// TraceID is the trace that follows the message to the inbox;
	// TraceURL is where to see it, when a Jaeger UI is configured and the
	// trace is recorded.
	TraceID  string `json:"trace_id,omitempty"`
	TraceURL string `json:"trace_url,omitempty"`
}

// statusResponse is the public JSON view of a message's delivery. It
// never carries the relay's reply (last_error in Postgres): that text
// names internal hosts and addresses, and anyone holding the id may read
// this view. Failure says what kind of failure it was instead.
type statusResponse struct {
	ID            string         `json:"id"`
	Status        message.Status `json:"status"`
	Attempts      int            `json:"attempts"`
	Failure       *failureView   `json:"failure"`
	CreatedAt     time.Time      `json:"created_at"`
	NextAttemptAt *time.Time     `json:"next_attempt_at"`
	SentAt        *time.Time     `json:"sent_at"`
}

func statusURL(id string) string { return "/api/messages/" + id }

// handleCreateMessage validates a submission and commits it. A 202 means
// the message is in Postgres: the outbox takes it from there.
// The request's trace context is stored with the row, so the delivery
// joins the request's trace.
func handleCreateMessage(log *slog.Logger, messages messageStore, relay notifier,
	tel *telemetry.Telemetry, accepted prometheus.Counter, jaegerURL string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, problems, aerr := decodeInput(w, r)
		if aerr != nil {
			respondError(w, r, log, aerr)
			return
		}
		in = in.Normalize()
		all := in.Validate()
		for field, code := range problems {
			all[field] = code // a decoding problem says more than validation
		}
		if len(all) > 0 {
			respondError(w, r, log, errInvalid(all))
			return
		}
		key, aerr := idempotencyKey(r)
		if aerr != nil {
			respondError(w, r, log, aerr)
			return
		}
		carrier := propagation.MapCarrier{}
		tel.Propagator.Inject(r.Context(), carrier)
		var e store.Email
		var replayed bool
		var err error
		if key == "" {
			e, err = messages.Insert(r.Context(), in, carrier.Get("traceparent"), carrier.Get("tracestate"))
		} else {
			e, replayed, err = messages.InsertOnce(r.Context(), key, fingerprint(in), in, carrier.Get("traceparent"), carrier.Get("tracestate"))
		}
		switch {
		case errors.Is(err, store.ErrKeyInFlight):
			respondError(w, r, log, errKeyInFlight)
			return
		case errors.Is(err, store.ErrKeyReused):
			respondError(w, r, log, errKeyReused)
			return
		case err != nil:
			respondError(w, r, log, storeError(r, log, err))
			return
		}
		// A replay answers as the first request was answered: queued, in
		// the first request's trace.
		res := acceptedResponse{ID: e.ID, Status: message.StatusQueued, StatusURL: statusURL(e.ID)}
		traceCtx := r.Context()
		if replayed {
			w.Header().Set("Idempotent-Replayed", "true")
			traceCtx = tel.Propagator.Extract(traceCtx, propagation.MapCarrier{"traceparent": e.Traceparent})
			log.InfoContext(r.Context(), "message replayed", "message_id", e.ID)
		} else {
			relay.Notify()
			accepted.Inc()
			log.InfoContext(r.Context(), "message accepted", "message_id", e.ID)
		}
		if sc := trace.SpanContextFromContext(traceCtx); sc.IsValid() {
			res.TraceID = sc.TraceID().String()
			// Only a recorded trace is linked: an unrecorded one is in no
			// Jaeger.
			if jaegerURL != "" && sc.IsSampled() {
				res.TraceURL = strings.TrimRight(jaegerURL, "/") + "/trace/" + res.TraceID
			}
		}
		e.Status = res.Status
		w.Header().Set("Location", res.StatusURL)
		if wantsJSON(r) {
			respondJSON(w, http.StatusAccepted, res)
			return
		}
		respondHTML(w, log, http.StatusAccepted, "accepted.html", pageData{Email: &e, StatusURL: res.StatusURL,
			TraceID: res.TraceID, TraceURL: res.TraceURL})
	})
}

// handleGetMessage reports where a message is on its way.
func handleGetMessage(log *slog.Logger, messages messageStore) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e, err := messages.Get(r.Context(), r.PathValue("id"))
		if err != nil {
			respondError(w, r, log, storeError(r, log, err))
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if prefersHTML(r) {
			respondHTML(w, log, http.StatusOK, "status.html", pageData{Email: &e, StatusURL: statusURL(e.ID), Failure: failureOf(e)})
			return
		}
		res := statusResponse{ID: e.ID, Status: e.Status, Attempts: e.Attempts, Failure: failureOf(e),
			CreatedAt: e.CreatedAt, NextAttemptAt: e.NextAttemptAt, SentAt: e.SentAt}
		respondJSON(w, http.StatusOK, res)
	})
}

func handleNotFound(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		respondError(w, r, log, errNoRoute)
	})
}

// storeError turns a store failure into the answer a client should get.
func storeError(r *http.Request, log *slog.Logger, err error) *apiError {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errNotFound
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads this answer.
		log.InfoContext(r.Context(), "request cancelled by the client", "err", err)
		return errClientGone
	case errors.Is(err, store.ErrOutcomeUnknown):
		log.ErrorContext(r.Context(), "commit outcome unknown", "err", err)
		return errOutcomeUnknown
	case store.Unavailable(err):
		log.WarnContext(r.Context(), "database unavailable", "err", err)
		return errUnavailable
	default:
		log.ErrorContext(r.Context(), "database error", "err", err)
		return errInternal
	}
}
