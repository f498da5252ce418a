package store

import (
	"context"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// claimWrites are the columns a claim changes (ClaimBatch). None may be
// covered by an index, in its key, its expressions or its predicate, or no
// claim could be a heap-only tuple update.
var claimWrites = []string{"status", "attempts", "fencing_token", "sending_since", "lease_expires_at", "message_id", "updated_at"}

// TestNoIndexCoversAClaimsColumns reads the catalog: every index of emails
// and the columns it depends on.
func TestNoIndexCoversAClaimsColumns(t *testing.T) {
	s := open(t)
	rows, err := s.pool.Query(context.Background(), `
		SELECT i.indexrelid::regclass::text, a.attname
		FROM pg_index i
		JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = i.indexrelid
		     AND d.refclassid = 'pg_class'::regclass AND d.refobjid = i.indrelid
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = d.refobjsubid
		WHERE i.indrelid = 'emails'::regclass AND a.attname = ANY($1)
		UNION
		SELECT i.indexrelid::regclass::text, a.attname
		FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
		WHERE i.indrelid = 'emails'::regclass AND a.attname = ANY($1)`, claimWrites)
	if err != nil {
		t.Fatal(err)
	}
	var covered []string
	for rows.Next() {
		var index, column string
		if err := rows.Scan(&index, &column); err != nil {
			t.Fatal(err)
		}
		covered = append(covered, index+" covers "+column)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(covered) > 0 {
		t.Errorf("got %s, want no index on a column a claim writes", strings.Join(covered, ", "))
	}
}

// TestClaimsAreHOTUpdates: a claim is a heap-only tuple update
// (pg_stat_user_tables.n_tup_hot_upd) when its page has room, which the
// fillfactor keeps on every page: here a third of the rows of each page,
// stored as the relay leaves them, are claimed. None was HOT before
// migration 00005 (status in two indexes, pages filled to the brim). The
// outcomes after the claims still find every row.
func TestClaimsAreHOTUpdates(t *testing.T) {
	db := testenv.NewDatabase(t)
	// One connection: pg_stat_force_next_flush acts on the backend that
	// made the updates.
	db.MaxConns = 1
	s := openWith(t, db, 5*time.Second, testenv.Logger(t))
	ctx := context.Background()
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO emails (id, assunto, mensagem, traceparent, published_at, publish_count)
		SELECT gen_random_uuid(), repeat('a', 100), repeat('m', 250),
		       '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', now(), 1
		FROM generate_series(1, 900)`); err != nil {
		t.Fatal(err)
	}
	var ids []string
	rows, err := s.pool.Query(ctx, `SELECT id::text FROM emails ORDER BY ctid`)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; rows.Next(); i++ {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		if i%3 == 0 {
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	n := int64(len(ids))

	updates := func() (upd, hot int64) {
		t.Helper()
		if _, err := s.pool.Exec(ctx, `SELECT pg_stat_force_next_flush()`); err != nil {
			t.Fatal(err)
		}
		if err := s.pool.QueryRow(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relid = 'emails'::regclass`).
			Scan(&upd, &hot); err != nil {
			t.Fatal(err)
		}
		return upd, hot
	}
	upd0, hot0 := updates()
	var claims []Claim
	for batch := range slices.Chunk(ids, 30) {
		var reqs []ClaimRequest
		for _, id := range batch {
			reqs = append(reqs, ClaimRequest{ID: id, MessageID: id + "@example.test"})
		}
		c, err := s.ClaimBatch(ctx, reqs, time.Minute, 5)
		if err != nil {
			t.Fatal(err)
		}
		claims = append(claims, c...)
	}
	if int64(len(claims)) != n {
		t.Fatalf("got %d claims, want %d", len(claims), n)
	}
	upd1, hot1 := updates()
	if upd1-upd0 != n || hot1-hot0 != n {
		t.Errorf("claims: got %d updates, %d of them HOT, want %d, all HOT", upd1-upd0, hot1-hot0, n)
	}

	var outcomes []Outcome
	for _, c := range claims {
		outcomes = append(outcomes, Outcome{Lease: Lease{c.ID, c.Token}, Kind: OutcomeSent})
	}
	res, err := s.RecordOutcomes(ctx, outcomes)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil || r.FoundDone {
			t.Fatalf("outcome %d: got %+v, want applied", i, r)
		}
	}
	d, err := s.Depth(ctx)
	if err != nil || d.Queued != 900-n || d.Sending != 0 || d.Failed != 0 || d.Unpublished != 0 {
		t.Errorf("depth after the outcomes: got %+v (%v), want the %d unclaimed queued, none sending", d, err, 900-n)
	}
}

// Requeue by status (worker reprocess --dead, --failed) reads only the
// rows of its statuses' partial indexes, never the whole table: with
// sequential scans priced out, its plan has none. And it requeues just
// those statuses.
func TestRequeueByStatusReadsThePartialIndexes(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	for _, statuses := range [][]string{{"dead"}, {"failed"}, {"dead", "failed"}} {
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off`); err != nil {
			t.Fatal(err)
		}
		rows, err := tx.Query(ctx, `EXPLAIN `+requeueSet+requeueWhere(statuses), statuses)
		if err != nil {
			t.Fatal(err)
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		_ = tx.Rollback(ctx)
		if p := strings.Join(plan, "\n"); strings.Contains(p, "Seq Scan") {
			t.Errorf("requeue %v: got a sequential scan, want the partial indexes:\n%s", statuses, p)
		}
	}

	byStatus := map[string]string{}
	for _, status := range []string{"queued", "sending", "failed", "sent", "dead"} {
		id := newRow(t, s)
		set(t, s, id, "status = $2, lease_expires_at = now() + interval '1 hour'", status)
		byStatus[status] = id
	}
	if n, err := s.Requeue(ctx, nil, []string{"dead", "failed"}); err != nil || n != 2 {
		t.Fatalf("requeue dead and failed: got %d %v, want 2", n, err)
	}
	for status, id := range byStatus {
		want := status
		if status == "dead" || status == "failed" {
			want = "queued"
		}
		if got, err := s.Get(ctx, id); err != nil || string(got.Status) != want {
			t.Errorf("%s row after requeue: got %q %v, want %q", status, got.Status, err, want)
		}
	}
	if n, err := s.Requeue(ctx, nil, nil); err != nil || n != 0 {
		t.Errorf("requeue nothing: got %d %v, want 0", n, err)
	}
}

// Migration 00005 rewrites emails (a stored generated column): on a table
// of any size it takes longer than a request's statement_timeout, which
// migrations do not have. Here statement_timeout is 4 ms and the table
// holds 50,000 messages.
func TestMigrationRewritesALargeTable(t *testing.T) {
	db := testenv.NewDatabase(t)
	s := openWith(t, db, 5*time.Second, testenv.Logger(t))
	ctx := context.Background()
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	p, err := goose.NewProvider(goose.DialectPostgres, stdlib.OpenDBFromPool(s.pool), sub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.DownTo(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO emails (id, assunto, mensagem, status)
		SELECT gen_random_uuid(), 'a', 'm', CASE WHEN g % 10 = 0 THEN 'dead' ELSE 'sent' END
		FROM generate_series(1, 50000) g`); err != nil {
		t.Fatal(err)
	}
	db.QueryTimeout = time.Millisecond
	short, err := Open(ctx, db, testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if err := short.Migrate(ctx); err != nil {
		t.Fatalf("migrate a table of 50,000 messages: %v", err)
	}
	if n, err := s.DeadCount(ctx); err != nil || n != 5000 {
		t.Errorf("dead after the migration: got %d %v, want 5000", n, err)
	}
}
