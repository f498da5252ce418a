package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/logging"
	"github.com/carteiro/carteiro/services/internal/telemetry"
)

// BenchmarkCreateMessage is the api's own cost of one accepted message
// in each way the page posts it (the bench's accept variants), over an
// in-memory store: routing, cross-origin check, trace ids, metrics with
// exemplars, decoding, validation, the log line (the real JSON logger,
// discarded) and the answer. The store's work (group commit, Postgres)
// and net/http's connection handling are not in it: make bench measures
// those. Read with -benchmem: allocations per request.
func BenchmarkCreateMessage(b *testing.B) {
	tel, err := telemetry.Setup(context.Background(), "bench", func(string) string { return "" })
	if err != nil {
		b.Fatal(err)
	}
	log := logging.New(io.Discard, "info").With("service", "carteiro-api")
	for _, v := range []struct {
		name, path, contentType, accept, body string
		key                                   bool
	}{
		{"json", "/api/messages", "application/json", "application/json",
			`{"assunto":"Olá, mundo","mensagem":"Uma mensagem de teste do bench, com acentuação."}`, false},
		{"json+key", "/api/messages", "application/json", "application/json",
			`{"assunto":"Olá, mundo","mensagem":"Uma mensagem de teste do bench, com acentuação."}`, true},
		{"form", "/api", "application/x-www-form-urlencoded", "text/html,application/xhtml+xml",
			"assunto=Ol%C3%A1%2C+mundo&mensagem=Uma+mensagem+de+teste+do+bench%2C+com+acentua%C3%A7%C3%A3o.", false},
		{"form+key", "/api", "application/x-www-form-urlencoded", "text/html,application/xhtml+xml",
			"assunto=Ol%C3%A1%2C+mundo&mensagem=Uma+mensagem+de+teste+do+bench%2C+com+acentua%C3%A7%C3%A3o.", true},
	} {
		b.Run(v.name, func(b *testing.B) {
			tel := *tel
			tel.Registry = newRegistry()
			h := NewServer(log, &memStore{}, nopNotifier{}, &tel, "", config.TraceContextLink)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				req := httptest.NewRequest(http.MethodPost, v.path, strings.NewReader(v.body))
				req.Header.Set("Content-Type", v.contentType)
				req.Header.Set("Accept", v.accept)
				if v.key {
					req.Header.Set("Idempotency-Key", `"bench-`+strconv.Itoa(i)+`"`)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusAccepted {
					b.Fatalf("status %d: %s", rec.Code, rec.Body)
				}
			}
		})
	}
}
