package health

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A failing probe makes /readyz answer 503 with the probe's name only: the
// error (here the text a pgx dial error carries) is logged, not answered.
func TestReadyzKeepsErrorsInTheLog(t *testing.T) {
	const secret = `failed to connect to user=carteiro database=carteiro: 10.0.0.7:5432 (db): dial error`
	var logged bytes.Buffer
	mux := http.NewServeMux()
	Register(mux, slog.New(slog.NewTextHandler(&logged, nil)),
		Probe{Name: "redis", Check: func(context.Context) error { return nil }},
		Probe{Name: "postgres", Check: func(context.Context) error { return errors.New(secret) }},
	)
	cases := []struct {
		path       string
		code       int
		body       string
		wantLogged bool
	}{
		{"/healthz", http.StatusOK, "ok\n", false},
		{"/readyz", http.StatusServiceUnavailable, "postgres: unavailable\n", true},
	}
	for _, c := range cases {
		logged.Reset()
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, c.path, nil))
		if rec.Code != c.code || rec.Body.String() != c.body {
			t.Errorf("GET %s: got %d %q, want %d %q", c.path, rec.Code, rec.Body.String(), c.code, c.body)
		}
		if got := strings.Contains(logged.String(), "10.0.0.7:5432"); got != c.wantLogged {
			t.Errorf("GET %s: error in the log: got %v, want %v (%s)", c.path, got, c.wantLogged, logged.String())
		}
	}
}

func TestReadyzReady(t *testing.T) {
	mux := http.NewServeMux()
	Register(mux, slog.New(slog.DiscardHandler), Probe{Name: "postgres", Check: func(context.Context) error { return nil }})
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "ready\n" {
		t.Errorf("got %d %q, want 200 %q", rec.Code, rec.Body.String(), "ready\n")
	}
}
