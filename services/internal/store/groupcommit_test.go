package store

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace/noop"

	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

func TestGroupCommitStoresEveryRow(t *testing.T) {
	s := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.EnableGroupCommit(ctx, 2, 16, noop.NewTracerProvider().Tracer(""))

	const n = 200
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			e, err := s.Insert(ctx, message.Input{Assunto: "grupo", Mensagem: strings.Repeat("x", i%250+1)}, "", "")
			ids[i], errs[i] = e.ID, err
			if err == nil && e.CreatedAt.IsZero() {
				t.Errorf("row %d: no created_at", i)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("insert %d: %v", i, errs[i])
		}
		if seen[ids[i]] {
			t.Fatalf("duplicate id %s", ids[i])
		}
		seen[ids[i]] = true
		got, err := s.Get(ctx, ids[i])
		if err != nil {
			t.Fatalf("get %s: %v", ids[i], err)
		}
		if want := strings.Repeat("x", i%250+1); got.Mensagem != want || got.Status != message.StatusQueued {
			t.Fatalf("row %d: got %q %s, want its own body, queued", i, got.Mensagem, got.Status)
		}
	}
	var batches int
	if err := s.pool.QueryRow(ctx, `SELECT count(DISTINCT created_at) FROM emails`).Scan(&batches); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d rows in %d transactions", n, batches)
	if batches >= n {
		t.Errorf("transactions: got %d for %d concurrent rows, want fewer (batched)", batches, n)
	}
}

// A row the database refuses fails alone: its batch-mates are stored.
func TestGroupCommitIsolatesABadRow(t *testing.T) {
	s := open(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.EnableGroupCommit(ctx, 1, 64, noop.NewTracerProvider().Tracer(""))
	var wg sync.WaitGroup
	results := make([]error, 20)
	for i := range 20 {
		wg.Go(func() {
			assunto := "ok"
			if i == 7 {
				assunto = strings.Repeat("a", 101) // over varchar(100): only validation keeps it out normally
			}
			_, results[i] = s.Insert(ctx, message.Input{Assunto: assunto, Mensagem: "b"}, "", "")
		})
	}
	wg.Wait()
	for i, err := range results {
		if (err != nil) != (i == 7) {
			t.Errorf("row %d: got error %v", i, err)
		}
	}
	var n int
	s.pool.QueryRow(ctx, `SELECT count(*) FROM emails`).Scan(&n)
	if n != 19 {
		t.Errorf("rows: got %d, want 19", n)
	}
}

// With the database gone, inserts, with an Idempotency-Key or without,
// fail as unavailable and nothing that failed is stored once it comes
// back: no message, no key.
func TestGroupCommitWithDatabaseDown(t *testing.T) {
	pg := testenv.StartPostgres(t)
	s, err := Open(context.Background(), pg.Config, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.EnableGroupCommit(ctx, 2, 16, noop.NewTracerProvider().Tracer(""))
	pg.Stop()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			in := message.Input{Assunto: "a", Mensagem: "b"}
			var err error
			if i%2 == 0 {
				_, err = s.Insert(ctx, in, "", "")
			} else {
				_, _, err = s.InsertOnce(ctx, fmt.Sprint("key ", i), []byte("a"), in, "", "")
			}
			if err == nil || !Unavailable(err) {
				t.Errorf("insert with the database down: got %v, want an unavailable error", err)
			}
		})
	}
	wg.Wait()
	pg.Start()
	var n int
	for range 50 {
		if err = s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM emails) + (SELECT count(*) FROM idempotency_keys)`).Scan(&n); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil || n != 0 {
		t.Errorf("rows after failed inserts: got %d (%v), want 0", n, err)
	}
}
