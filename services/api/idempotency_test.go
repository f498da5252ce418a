package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

func TestIdempotencyKey(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	post := func(key, body string) (*http.Response, acceptedResponse, string) {
		t.Helper()
		res, raw := api.post(t, "/api/messages", "application/json", body, "Idempotency-Key", key)
		var acc acceptedResponse
		if res.StatusCode == http.StatusAccepted {
			acc = decodeBody[acceptedResponse](t, raw)
		}
		return res, acc, raw
	}

	// Same key, same body: the original answer, one message.
	res1, first, _ := post(`"k-1"`, jsonBody("oi", "olá"))
	res2, second, _ := post(`"k-1"`, jsonBody("oi", "olá"))
	if res1.StatusCode != 202 || res2.StatusCode != 202 {
		t.Fatalf("statuses: got %d and %d, want 202 twice", res1.StatusCode, res2.StatusCode)
	}
	if second.ID != first.ID || second.Status != "queued" || second.TraceID != first.TraceID {
		t.Errorf("replay: got %+v, want the original %+v", second, first)
	}
	if res1.Header.Get("Idempotent-Replayed") != "" || res2.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed: got %q then %q, want none then true",
			res1.Header.Get("Idempotent-Replayed"), res2.Header.Get("Idempotent-Replayed"))
	}
	// The same content as a form is the same request.
	res, raw := api.post(t, "/api", "application/x-www-form-urlencoded",
		url.Values{"assunto": {"oi"}, "mensagem": {"olá"}}.Encode(), "Idempotency-Key", "k-1")
	if res.StatusCode != 202 || !strings.Contains(raw, first.ID) {
		t.Errorf("form replay: got %d, want 202 naming %s", res.StatusCode, first.ID)
	}

	// Same key, different body: 422, nothing stored.
	if res, _, raw := post("k-1", jsonBody("oi", "outra coisa")); res.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("reused key: got %d, want 422 (%s)", res.StatusCode, raw)
	}
	// A bad key: 400.
	for _, bad := range []string{`""`, "has space", strings.Repeat("k", 256), "é"} {
		if res, _, _ := post(bad, jsonBody("a", "b")); res.StatusCode != http.StatusBadRequest {
			t.Errorf("key %q: got %d, want 400", bad, res.StatusCode)
		}
	}
	if n := api.countRows(t); n != 1 {
		t.Errorf("rows: got %d, want 1", n)
	}

	// While a request with the key is in flight (its transaction holds the
	// key's lock), another gets 409.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, api.db.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('k-2', 0))`); err != nil {
		t.Fatal(err)
	}
	res, _, raw = post("k-2", jsonBody("a", "b"))
	if res.StatusCode != http.StatusConflict || res.Header.Get("Retry-After") == "" {
		t.Errorf("in flight: got %d (Retry-After %q), want 409 with Retry-After (%s)", res.StatusCode, res.Header.Get("Retry-After"), raw)
	}
	tx.Rollback(ctx)
	if res, _, _ := post("k-2", jsonBody("a", "b")); res.StatusCode != http.StatusAccepted {
		t.Errorf("after the first finished: got %d, want 202", res.StatusCode)
	}

	// After 24 hours a key is forgotten: the same key makes a new message.
	if _, err := conn.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'k-1'`); err != nil {
		t.Fatal(err)
	}
	_, third, _ := post("k-1", jsonBody("oi", "outra coisa"))
	if third.ID == "" || third.ID == first.ID {
		t.Errorf("expired key: got %q, want a new message", third.ID)
	}
	if n := api.countRows(t); n != 3 {
		t.Errorf("rows: got %d, want 3", n)
	}
}

// Two Idempotency-Key headers are ambiguous (which one would a replay
// match?): 400 naming the header, and nothing stored, neither a message
// nor a key.
func TestTwoIdempotencyKeys(t *testing.T) {
	api := startAPI(t, testenv.NewDatabase(t), testenv.StartRedis(t).Addr)
	req, err := http.NewRequest(http.MethodPost, api.URL+"/api/messages", strings.NewReader(jsonBody("oi", "olá")))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Add("Idempotency-Key", "k-1")
	req.Header.Add("Idempotency-Key", "k-2")
	res, raw := do(t, req)
	if res.StatusCode != http.StatusBadRequest {
		t.Errorf("status: got %d, want %d (%s)", res.StatusCode, http.StatusBadRequest, raw)
	}
	if got := decodeBody[errorResponse](t, raw).Error; !strings.Contains(got, "Idempotency-Key") {
		t.Errorf("error: got %q, want a message naming Idempotency-Key", got)
	}
	if n := api.countRows(t); n != 0 {
		t.Errorf("messages: got %d, want 0", n)
	}
	conn, err := pgx.Connect(context.Background(), api.db.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var keys int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM idempotency_keys").Scan(&keys); err != nil {
		t.Fatal(err)
	}
	if keys != 0 {
		t.Errorf("keys: got %d, want 0", keys)
	}
}
