package store

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// keyedResult is one InsertOnce's answer.
type keyedResult struct {
	email    Email
	replayed bool
	err      error
}

// oneBatch runs the calls as one group-commit batch: the only flusher is
// held by a "gate 1" row's COMMIT while they queue up, in order.
func oneBatch(t *testing.T, s *Store, db config.Postgres, calls ...func() keyedResult) []keyedResult {
	t.Helper()
	testenv.StallCommits(t, db)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s.EnableGroupCommit(ctx, 1, 64, noop.NewTracerProvider().Tracer(""))
	gate := testenv.CloseGate(t, db, 1)
	blocker := make(chan error, 1)
	go func() {
		_, err := s.Insert(ctx, message.Input{Assunto: "gate 1", Mensagem: "m"}, "", "")
		blocker <- err
	}()
	gate.WaitBlocked()
	results := make([]keyedResult, len(calls))
	var wg sync.WaitGroup
	for i, call := range calls {
		wg.Go(func() { results[i] = call() })
		for len(s.group.queue) < i+1 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	gate.Open()
	wg.Wait()
	if err := <-blocker; err != nil {
		t.Fatalf("the gate row: %v", err)
	}
	return results
}

func callOnce(s *Store, key, assunto string) func() keyedResult {
	return func() keyedResult {
		e, replayed, err := s.InsertOnce(context.Background(), key, []byte(assunto), message.Input{Assunto: assunto, Mensagem: "m"}, "", "")
		return keyedResult{e, replayed, err}
	}
}

func callPlain(s *Store, assunto string) func() keyedResult {
	return func() keyedResult {
		e, err := s.Insert(context.Background(), message.Input{Assunto: assunto, Mensagem: "m"}, "", "")
		return keyedResult{email: e, err: err}
	}
}

// keyOwner is the message a key names, "" if none.
func keyOwner(t *testing.T, s *Store, key string) string {
	t.Helper()
	var id string
	err := s.pool.QueryRow(context.Background(), `SELECT email_id::text FROM idempotency_keys WHERE key = $1`, key).Scan(&id)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return id
}

// The same key twice in one batch: the first is stored, the second is in
// flight (409) and stores nothing.
func TestGroupCommitSameKeyTwiceInABatch(t *testing.T) {
	db := testenv.NewDatabase(t)
	s := openWith(t, db, 5*time.Second, testenv.Logger(t))
	got := oneBatch(t, s, db, callOnce(s, "k", "twice"), callOnce(s, "k", "twice"))
	if got[0].err != nil || got[0].replayed {
		t.Errorf("first: got %v (replayed %v), want stored", got[0].err, got[0].replayed)
	}
	if !errors.Is(got[1].err, ErrKeyInFlight) {
		t.Errorf("second: got %v, want ErrKeyInFlight", got[1].err)
	}
	if n := rowCount(t, s, "twice"); n != 1 {
		t.Errorf("rows: got %d, want 1", n)
	}
	if id := keyOwner(t, s, "k"); id != got[0].email.ID {
		t.Errorf("key names %q, want the first message %q", id, got[0].email.ID)
	}
}

// One batch holding every case a key can be in: a replay, a reused key,
// a new key, an expired key (replaced), a key another transaction holds
// (another api instance's request in flight), and a row without a key.
func TestGroupCommitMixedKeysInABatch(t *testing.T) {
	db := testenv.NewDatabase(t)
	s := openWith(t, db, 5*time.Second, testenv.Logger(t))
	ctx := context.Background()
	first := map[string]Email{}
	for _, key := range []string{"replay", "reused", "expired"} {
		e, _, err := s.InsertOnce(ctx, key, []byte("first "+key), message.Input{Assunto: "first " + key, Mensagem: "m"}, "", "")
		if err != nil {
			t.Fatal(err)
		}
		first[key] = e
	}
	if _, err := s.pool.Exec(ctx, `UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = 'expired'`); err != nil {
		t.Fatal(err)
	}
	// The other instance: a transaction holding the key's lock.
	other, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Rollback(ctx)
	if _, err := other.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('busy', 0))`); err != nil {
		t.Fatal(err)
	}

	got := oneBatch(t, s, db,
		callOnce(s, "replay", "first replay"),
		callOnce(s, "reused", "something else"),
		callOnce(s, "new", "new"),
		callOnce(s, "expired", "after expiry"),
		callOnce(s, "busy", "busy"),
		callPlain(s, "plain"),
	)
	replay, reused, fresh, expired, busy, plain := got[0], got[1], got[2], got[3], got[4], got[5]
	if replay.err != nil || !replay.replayed || replay.email.ID != first["replay"].ID || replay.email.Assunto != "first replay" {
		t.Errorf("replay: got %+v, want the first message %s, replayed", replay, first["replay"].ID)
	}
	if !errors.Is(reused.err, ErrKeyReused) {
		t.Errorf("reused: got %v, want ErrKeyReused", reused.err)
	}
	if !errors.Is(busy.err, ErrKeyInFlight) {
		t.Errorf("busy: got %v, want ErrKeyInFlight", busy.err)
	}
	for name, r := range map[string]keyedResult{"new": fresh, "expired": expired, "plain": plain} {
		if r.err != nil || r.replayed || r.email.ID == "" || r.email.CreatedAt.IsZero() {
			t.Errorf("%s: got %+v, want a new message", name, r)
		}
	}
	if expired.email.ID == first["expired"].ID {
		t.Errorf("expired: got the first message, want a new one")
	}
	for key, want := range map[string]string{"replay": first["replay"].ID, "reused": first["reused"].ID,
		"new": fresh.email.ID, "expired": expired.email.ID, "busy": ""} {
		if id := keyOwner(t, s, key); id != want {
			t.Errorf("key %s names %q, want %q", key, id, want)
		}
	}
	for assunto, want := range map[string]int{"first replay": 1, "something else": 0, "new": 1, "after expiry": 1, "busy": 0, "plain": 1} {
		if n := rowCount(t, s, assunto); n != want {
			t.Errorf("rows %q: got %d, want %d", assunto, n, want)
		}
	}
	if !fresh.email.CreatedAt.Equal(plain.email.CreatedAt) || !fresh.email.CreatedAt.Equal(expired.email.CreatedAt) {
		t.Errorf("created_at: got %v, %v, %v, want one transaction's", fresh.email.CreatedAt, expired.email.CreatedAt, plain.email.CreatedAt)
	}
}

// A row the database refuses fails alone, keys included: its batch-mates
// are stored with their keys, and its key is not remembered.
func TestGroupCommitIsolatesABadKeyedRow(t *testing.T) {
	db := testenv.NewDatabase(t)
	s := openWith(t, db, 5*time.Second, testenv.Logger(t))
	bad := strings.Repeat("a", 101) // over varchar(100): only validation keeps it out normally
	got := oneBatch(t, s, db,
		callOnce(s, "good 1", "good 1"),
		callOnce(s, "bad", bad),
		callPlain(s, "good 2"),
		callOnce(s, "good 3", "good 3"),
	)
	for i, r := range got {
		if (r.err != nil) != (i == 1) {
			t.Errorf("row %d: got error %v", i, r.err)
		}
	}
	for key, want := range map[string]string{"good 1": got[0].email.ID, "good 3": got[3].email.ID, "bad": ""} {
		if id := keyOwner(t, s, key); id != want {
			t.Errorf("key %s names %q, want %q", key, id, want)
		}
	}
	var n int
	s.pool.QueryRow(context.Background(), `SELECT count(*) FROM emails WHERE assunto LIKE 'good %'`).Scan(&n)
	if n != 3 {
		t.Errorf("rows: got %d, want 3", n)
	}
}

// Two api instances (two stores, each with its own flushers) sending the
// same key at once store one message: every answer is it or in flight.
func TestGroupCommitSameKeyFromTwoInstances(t *testing.T) {
	db := testenv.NewDatabase(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stores []*Store
	for range 2 {
		s := openWith(t, db, 5*time.Second, testenv.Logger(t))
		s.EnableGroupCommit(ctx, 2, 16, noop.NewTracerProvider().Tracer(""))
		stores = append(stores, s)
	}
	const perStore = 20
	results := make([]keyedResult, 2*perStore)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() { results[i] = callOnce(stores[i%2], "shared", "shared")() })
	}
	wg.Wait()
	if n := rowCount(t, stores[0], "shared"); n != 1 {
		t.Fatalf("rows: got %d, want 1", n)
	}
	id := keyOwner(t, stores[0], "shared")
	for i, r := range results {
		if r.err == nil && r.email.ID != id || r.err != nil && !errors.Is(r.err, ErrKeyInFlight) {
			t.Errorf("call %d: got %s %v, want %s or ErrKeyInFlight", i, r.email.ID, r.err, id)
		}
	}
}

// A keyed batch runs its statements on generic plans (genericPlans), and a
// generic plan is made once per connection and kept until the tables'
// statistics change, also when it was made while the tables were empty (a
// fresh deployment) or small. The key look-up's generic plan must read
// both tables by primary key whatever their size: a hash join over a
// sequential scan of emails, or a scan of every key within the TTL through
// idempotency_keys_created_idx, would be kept while the tables grow.
func TestKeyLookupPlan(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	simple := pgx.QueryExecModeSimpleProtocol
	plan := func(t *testing.T) string {
		t.Helper()
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		for _, sql := range []string{genericPlans, `PREPARE key_lookup(text[], float8) AS ` + lookupKeys} {
			if _, err := tx.Exec(ctx, sql, simple); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		rows, err := tx.Query(ctx, `EXPLAIN EXECUTE key_lookup('{a,b,c,d}', 86400)`, simple)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		// A prepared statement outlives the transaction: the session's.
		if _, err := tx.Exec(ctx, `DEALLOCATE key_lookup`, simple); err != nil {
			t.Fatal(err)
		}
		return strings.Join(lines, "\n")
	}
	check := func(t *testing.T, tables string) {
		p := plan(t)
		if strings.Contains(p, "Seq Scan") || strings.Contains(p, "Hash") || strings.Contains(p, "created_idx") ||
			!strings.Contains(p, "idempotency_keys_pkey") || !strings.Contains(p, "emails_pkey") {
			t.Errorf("generic plan of the key look-up, %s: got\n%s\nwant both tables read by their primary keys only", tables, p)
		}
	}
	check(t, "empty tables")
	if _, err := s.pool.Exec(ctx, `
		WITH e AS (INSERT INTO emails (id, assunto, mensagem)
			SELECT gen_random_uuid(), 'a', 'b' FROM generate_series(1, 2000) RETURNING id)
		INSERT INTO idempotency_keys (key, fingerprint, email_id)
			SELECT 'plan-' || id, '\x00', id FROM e`); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"emails", "idempotency_keys"} {
		if _, err := s.pool.Exec(ctx, "ANALYZE "+table); err != nil {
			t.Fatal(err)
		}
	}
	check(t, "2,000 keys within the TTL")
}
