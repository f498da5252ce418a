package store

import (
	"context"
	"fmt"
	"slices"
	"testing"
)

// ForgetExpiredKeys deletes the keys older than IdempotencyTTL, and only
// those, housekeepingBatch rows per statement at the most; their messages
// stay.
func TestForgetExpiredKeys(t *testing.T) {
	ctx := context.Background()
	hook := &statementHook{}
	s := open(t, hook.option)
	hook.set("DELETE FROM idempotency_keys", nil)
	id := newRow(t, s)
	expired := 2*housekeepingBatch + housekeepingBatch/2
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO idempotency_keys (key, fingerprint, email_id, created_at)
		SELECT 'old-' || i, '\x00', $1, now() - interval '24 hours 1 minute' - i * interval '1 second'
		FROM generate_series(1, $2) i`, id, expired); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO idempotency_keys (key, fingerprint, email_id, created_at) VALUES
		    ('young-23h59m', '\x00', $1, now() - interval '23 hours 59 minutes'),
		    ('young-now', '\x00', $1, now())`, id); err != nil {
		t.Fatal(err)
	}

	n, err := s.ForgetExpiredKeys(ctx)
	if err != nil || n != int64(expired) {
		t.Fatalf("forgot: got %d %v, want %d", n, err, expired)
	}
	want := []int64{housekeepingBatch, housekeepingBatch, housekeepingBatch / 2}
	if got := hook.touched(); !slices.Equal(got, want) {
		t.Errorf("rows per statement: got %v, want %v", got, want)
	}
	rows, err := s.pool.Query(ctx, `SELECT key FROM idempotency_keys ORDER BY key`)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for rows.Next() {
		var k string
		if err := rows.Scan(&k); err != nil {
			t.Fatal(err)
		}
		kept = append(kept, k)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(kept), "[young-23h59m young-now]"; got != want {
		t.Errorf("kept: got %v, want %v", got, want)
	}
	if _, err := s.Get(ctx, id); err != nil {
		t.Errorf("the keys' message: got %v, want it kept", err)
	}
	if n, err := s.ForgetExpiredKeys(ctx); err != nil || n != 0 {
		t.Errorf("again: got %d %v, want 0", n, err)
	}
}
