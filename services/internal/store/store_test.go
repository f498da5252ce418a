package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

func open(t *testing.T, opts ...Option) *Store {
	t.Helper()
	s, err := Open(context.Background(), testenv.NewDatabase(t), testenv.Logger(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Migrating twice is a no-op.
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	return s
}

// set forces a row into a state, as earlier attempts would have left it.
func set(t *testing.T, s *Store, id, sql string, args ...any) {
	t.Helper()
	if _, err := s.pool.Exec(context.Background(), "UPDATE emails SET "+sql+" WHERE id = $1", append([]any{id}, args...)...); err != nil {
		t.Fatal(err)
	}
}

// newRow stores a new message and returns its id.
func newRow(t *testing.T, s *Store) string {
	t.Helper()
	e, err := s.Insert(context.Background(), message.Input{Assunto: "a", Mensagem: "b"}, "", "")
	if err != nil {
		t.Fatal(err)
	}
	return e.ID
}

// claim claims id for a minute and fails the test if it cannot.
func claim(t *testing.T, s *Store, id string) Claim {
	t.Helper()
	c, ok, err := s.Claim(context.Background(), id, id+"@example.test", time.Minute, 5)
	if err != nil || !ok {
		t.Fatalf("claim %s: ok %v, err %v", id, ok, err)
	}
	return c
}

// expire ends a row's lease now, as if its worker had died a while ago.
func expire(t *testing.T, s *Store, id string) {
	t.Helper()
	set(t, s, id, "lease_expires_at = now() - interval '1 second'")
}

func TestClaimTransitions(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	tests := []struct {
		name         string
		state        string // SET clause
		wantOK       bool
		wantTookOver bool
	}{
		{"queued", "status = 'queued'", true, false},
		{"failed and due", "status = 'failed', next_attempt_at = now() - interval '1 second'", true, false},
		{"failed not yet due", "status = 'failed', next_attempt_at = now() + interval '1 hour'", false, false},
		{"sending within the lease", "status = 'sending', lease_expires_at = now() + interval '1 second'", false, false},
		{"sending past the lease", "status = 'sending', lease_expires_at = now() - interval '1 second'", true, true},
		{"sending past the lease, last attempt", "status = 'sending', attempts = 5, lease_expires_at = now() - interval '1 second'", false, false},
		{"sent", "status = 'sent', sent_at = now()", false, false},
		{"dead", "status = 'dead'", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := newRow(t, s)
			set(t, s, id, tt.state)
			before, _ := s.Get(ctx, id)
			got, ok, err := s.Claim(ctx, id, id+"@example.test", time.Minute, 5)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK {
				t.Fatalf("claim: got %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				return
			}
			if got.Status != message.StatusSending || got.Attempts != before.Attempts+1 || got.MessageID != id+"@example.test" {
				t.Errorf("claimed row: got %+v", got)
			}
			if got.Token != before.Token+1 || got.TookOver != tt.wantTookOver {
				t.Errorf("token %d took over %v, want %d and %v", got.Token, got.TookOver, before.Token+1, tt.wantTookOver)
			}
		})
	}
	if _, ok, err := s.Claim(ctx, "0193a1b2-0000-7000-8000-000000000000", "x@example.test", time.Minute, 5); ok || err != nil {
		t.Errorf("claim of a missing row: got %v %v, want false, nil", ok, err)
	}
}

// The lease and the next attempt are measured on Postgres' clock: the
// statement's now(), never the worker's time.
func TestOneClock(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	id := newRow(t, s)
	c, ok, err := s.Claim(ctx, id, "mid", 7*time.Second, 5)
	if err != nil || !ok {
		t.Fatalf("claim: %v %v", ok, err)
	}
	var lease, backoff time.Duration
	var fromPostgres bool
	if err := s.pool.QueryRow(ctx, `SELECT lease_expires_at - sending_since, lease_expires_at - now() BETWEEN interval '0' AND interval '7 seconds' FROM emails WHERE id = $1`, id).Scan(&lease, &fromPostgres); err != nil {
		t.Fatal(err)
	}
	if lease != 7*time.Second || !fromPostgres {
		t.Errorf("lease: got %s (from now(): %v), want 7s from Postgres' now()", lease, fromPostgres)
	}
	if err := s.MarkFailed(ctx, id, c.Token, "451", 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := s.pool.QueryRow(ctx, `SELECT next_attempt_at - updated_at FROM emails WHERE id = $1`, id).Scan(&backoff); err != nil {
		t.Fatal(err)
	}
	if backoff != 90*time.Second {
		t.Errorf("next_attempt_at: got %s after the write, want 90s", backoff)
	}
}

func TestOutcomes(t *testing.T) {
	s := open(t)
	ctx := context.Background()

	id := newRow(t, s)
	c := claim(t, s, id)
	if err := s.MarkSent(ctx, id, c.Token); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, id); got.Status != message.StatusSent || got.SentAt == nil {
		t.Errorf("sent: got %+v", got)
	}

	id = newRow(t, s)
	c = claim(t, s, id)
	if err := s.MarkFailed(ctx, id, c.Token, "451 later", time.Hour); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, id)
	if got.Status != message.StatusFailed || got.LastError != "451 later" || got.NextAttemptAt == nil {
		t.Errorf("failed: got %+v", got)
	}
	// A failed row goes back to the outbox, but only once it is due.
	n, err := s.PublishPending(ctx, 10, func(context.Context, []Pending) error { return nil })
	if err != nil || n != 0 {
		t.Errorf("publish before due: got %d %v, want 0", n, err)
	}
	set(t, s, id, "next_attempt_at = now()")
	n, err = s.PublishPending(ctx, 10, func(_ context.Context, p []Pending) error {
		if len(p) != 1 || p[0].ID != id {
			t.Errorf("published: got %+v, want %s", p, id)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Errorf("publish when due: got %d %v, want 1", n, err)
	}

	id = newRow(t, s)
	c = claim(t, s, id)
	if err := s.MarkDead(ctx, id, c.Token, "550 no such user"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, id); got.Status != message.StatusDead || got.LastError != "550 no such user" {
		t.Errorf("dead: got %+v", got)
	}
	// Reprocessing brings it back with attempts starting over; the
	// fencing token goes on growing.
	if n, err := s.Requeue(ctx, nil, []string{"dead"}); err != nil || n != 1 {
		t.Fatalf("requeue: got %d %v, want 1", n, err)
	}
	if got, _ := s.Get(ctx, id); got.Status != message.StatusQueued || got.Attempts != 0 || got.LastError == "" {
		t.Errorf("requeued: got %+v, want queued, 0 attempts, last error kept", got)
	}
	if again := claim(t, s, id); again.Attempts != 1 || again.Token != c.Token+1 {
		t.Errorf("claim after requeue: attempts %d token %d, want 1 and %d", again.Attempts, again.Token, c.Token+1)
	}

	// Release: the attempt is given back, uncounted, and the row goes
	// back to the outbox at once.
	id = newRow(t, s)
	if _, err := s.PublishPending(ctx, 10, func(context.Context, []Pending) error { return nil }); err != nil {
		t.Fatal(err)
	}
	c = claim(t, s, id)
	if err := s.Release(ctx, id, c.Token, "interrupted: worker shutting down"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, id); got.Status != message.StatusQueued || got.Attempts != 0 || got.Token != c.Token {
		t.Errorf("released: got %+v, want queued, 0 attempts, token %d", got, c.Token)
	}
	n, _ = s.PublishPending(ctx, 10, func(context.Context, []Pending) error { return nil })
	if n != 1 {
		t.Errorf("publish after release: got %d, want 1", n)
	}
}

// Fencing: once another worker claimed the row (the first claim's lease
// expired), every outcome write of the first attempt is refused, says
// which tokens differ, and the newer outcome stands.
func TestStaleWritesAreRefused(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	writes := map[string]func(id string, token int64) error{
		"sent":    func(id string, token int64) error { return s.MarkSent(ctx, id, token) },
		"failed":  func(id string, token int64) error { return s.MarkFailed(ctx, id, token, "451", time.Minute) },
		"dead":    func(id string, token int64) error { return s.MarkDead(ctx, id, token, "550") },
		"release": func(id string, token int64) error { return s.Release(ctx, id, token, "interrupted") },
	}
	newer := map[string]message.Status{"sent": message.StatusSent, "failed": message.StatusFailed, "dead": message.StatusDead, "release": message.StatusQueued}
	for newName, newWrite := range writes {
		for staleName, staleWrite := range writes {
			t.Run(staleName+" after "+newName, func(t *testing.T) {
				id := newRow(t, s)
				old := claim(t, s, id)
				expire(t, s, id)
				cur := claim(t, s, id)
				if !cur.TookOver || cur.Token != old.Token+1 {
					t.Fatalf("takeover: got token %d took over %v, want %d and true", cur.Token, cur.TookOver, old.Token+1)
				}
				// Before the newer attempt finishes, and after.
				for _, when := range []string{"while the newer attempt runs", "after the newer outcome"} {
					if when == "after the newer outcome" {
						if err := newWrite(id, cur.Token); err != nil {
							t.Fatalf("newer %s: %v", newName, err)
						}
					}
					err := staleWrite(id, old.Token)
					var se *StaleError
					if !errors.As(err, &se) || !errors.Is(err, ErrStale) {
						t.Fatalf("%s: stale %s: got %v, want a *StaleError", when, staleName, err)
					}
					if se.Token != old.Token || se.Current != cur.Token {
						t.Errorf("%s: stale error names tokens %d and %d, want %d and %d", when, se.Token, se.Current, old.Token, cur.Token)
					}
				}
				got, _ := s.Get(ctx, id)
				if got.Status != newer[newName] || got.Token != cur.Token {
					t.Errorf("row: got %s under token %d, want %s under %d", got.Status, got.Token, newer[newName], cur.Token)
				}
				if got.Attempts > 2 {
					t.Errorf("attempts: got %d, want at most 2", got.Attempts)
				}
			})
		}
	}
	// A write for a row that is gone is stale too.
	err := s.MarkSent(ctx, "0193a1b2-0000-7000-8000-000000000000", 1)
	if !errors.Is(err, ErrStale) {
		t.Errorf("write for a missing row: got %v, want ErrStale", err)
	}
	// A write for a finished row is refused, even with its own token.
	id := newRow(t, s)
	c := claim(t, s, id)
	if err := s.MarkSent(ctx, id, c.Token); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkFailed(ctx, id, c.Token, "late", time.Minute); !errors.Is(err, ErrStale) {
		t.Errorf("second outcome of one attempt: got %v, want ErrStale", err)
	}
}

func TestRenewLeases(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	a, b, c := newRow(t, s), newRow(t, s), newRow(t, s)
	ca, cb, cc := claim(t, s, a), claim(t, s, b), claim(t, s, c)
	// b's lease expired and another worker took it over; c is finished.
	expire(t, s, a)
	expire(t, s, b)
	claim(t, s, b)
	if err := s.MarkSent(ctx, c, cc.Token); err != nil {
		t.Fatal(err)
	}
	lost, err := s.RenewLeases(ctx, []Lease{{a, ca.Token}, {b, cb.Token}, {c, cc.Token}}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(lost) != 2 || lost[0].ID != b || lost[1].ID != c {
		t.Errorf("lost: got %+v, want b and c", lost)
	}
	// a's expired lease was renewed: nobody had taken it, so it is held.
	var live bool
	if err := s.pool.QueryRow(ctx, `SELECT lease_expires_at > now() + interval '50 seconds' FROM emails WHERE id = $1`, a).Scan(&live); err != nil || !live {
		t.Errorf("a's lease after renewal: live %v (%v), want about a minute", live, err)
	}
	if _, ok, _ := s.Claim(ctx, a, "mid", time.Minute, 5); ok {
		t.Errorf("claim of a renewed lease: got true, want false")
	}
	if lost, err := s.RenewLeases(ctx, nil, time.Minute); err != nil || lost != nil {
		t.Errorf("renew nothing: got %v %v", lost, err)
	}
}

func TestPublishPendingFailureKeepsRowsPending(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	for range 3 {
		if _, err := s.Insert(ctx, message.Input{Assunto: "a", Mensagem: "b"}, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", ""); err != nil {
			t.Fatal(err)
		}
	}
	boom := context.DeadlineExceeded
	if _, err := s.PublishPending(ctx, 10, func(context.Context, []Pending) error { return boom }); err == nil {
		t.Fatal("got nil, want the publish error")
	}
	var got []Pending
	n, err := s.PublishPending(ctx, 2, func(_ context.Context, p []Pending) error { got = p; return nil })
	if err != nil || n != 2 || len(got) != 2 || got[0].Traceparent == "" {
		t.Fatalf("second try: got %d %v %+v, want 2 rows with their trace context", n, err, got)
	}
	n, _ = s.PublishPending(ctx, 10, func(context.Context, []Pending) error { return nil })
	if n != 1 {
		t.Errorf("third try: got %d, want the 1 left", n)
	}
	// Lost stream: everything undelivered goes back.
	if n, err := s.RepublishAll(ctx); err != nil || n != 3 {
		t.Errorf("republish all: got %d %v, want 3", n, err)
	}
}

func TestReleaseExpired(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	id := newRow(t, s)
	s.PublishPending(ctx, 10, func(context.Context, []Pending) error { return nil })
	c := claim(t, s, id)
	if n, d, _ := s.ReleaseExpired(ctx, 5); n != 0 || d != 0 {
		t.Errorf("within the lease: got %d released, %d dead, want 0", n, d)
	}
	expire(t, s, id)
	if n, d, _ := s.ReleaseExpired(ctx, 5); n != 1 || d != 0 {
		t.Errorf("past the lease: got %d released, %d dead, want 1 released", n, d)
	}
	var published []Pending
	s.PublishPending(ctx, 10, func(_ context.Context, p []Pending) error { published = p; return nil })
	if len(published) != 1 || published[0].ID != id {
		t.Errorf("after release: got %+v published, want %s", published, id)
	}
	if again := claim(t, s, id); !again.TookOver || again.Token != c.Token+1 {
		t.Errorf("claim after release: got %+v, want a takeover", again)
	}

	// The last allowed attempt's lease expired: no claim may follow, so
	// the row is dead, with the reason.
	id = newRow(t, s)
	set(t, s, id, "attempts = 4")
	last := claim(t, s, id)
	expire(t, s, id)
	if n, d, _ := s.ReleaseExpired(ctx, 5); n != 0 || d != 1 {
		t.Errorf("last attempt expired: got %d released, %d dead, want 1 dead", n, d)
	}
	got, _ := s.Get(ctx, id)
	if got.Status != message.StatusDead || got.Attempts != 5 || !strings.Contains(got.LastError, "attempt 5 of 5") {
		t.Errorf("row: got %s, attempts %d, last_error %q", got.Status, got.Attempts, got.LastError)
	}
	// Should that attempt still learn the relay accepted the message, the
	// truth wins over the sweep's presumption.
	if err := s.MarkSent(ctx, id, last.Token); err != nil {
		t.Errorf("sent after a presumed dead, same token: got %v, want nil", err)
	}
	if got, _ := s.Get(ctx, id); got.Status != message.StatusSent {
		t.Errorf("row: got %s, want sent", got.Status)
	}
}

func TestDeadLetter(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		state string
		want  bool
	}{
		{"queued", "status = 'queued'", true},
		{"failed", "status = 'failed', next_attempt_at = now() + interval '1 hour'", true},
		{"sending, lease expired", "status = 'sending', lease_expires_at = now() - interval '1 second'", true},
		{"sending, live claim", "status = 'sending', lease_expires_at = now() + interval '1 minute'", false},
		{"sent", "status = 'sent'", false},
	}
	for _, tt := range tests {
		id := newRow(t, s)
		set(t, s, id, tt.state)
		got, err := s.DeadLetter(ctx, id, "poison")
		if err != nil || got != tt.want {
			t.Errorf("%s: got %v %v, want %v", tt.name, got, err, tt.want)
		}
		if e, _ := s.Get(ctx, id); tt.want && (e.Status != message.StatusDead || e.LastError != "poison") {
			t.Errorf("%s: row %s %q, want dead with the reason", tt.name, e.Status, e.LastError)
		}
	}
	if got, err := s.DeadLetter(ctx, "0193a1b2-0000-7000-8000-000000000000", "poison"); got || err != nil {
		t.Errorf("missing row: got %v %v, want false, nil", got, err)
	}
}

func TestUnavailable(t *testing.T) {
	if Unavailable(nil) {
		t.Error("nil: got true, want false")
	}
	if !Unavailable(context.DeadlineExceeded) {
		t.Error("deadline: got false, want true")
	}
	if !Unavailable(fmt.Errorf("insert message: %w", io.ErrUnexpectedEOF)) {
		t.Error("connection dropped: got false, want true")
	}
	if Unavailable(ErrNotFound) {
		t.Error("not found: got true, want false")
	}
}

// One statement claims every claimable row of a batch and leaves the
// others; a repeated id is claimed once.
func TestClaimBatch(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	queued, due, notDue, live, sent := newRow(t, s), newRow(t, s), newRow(t, s), newRow(t, s), newRow(t, s)
	set(t, s, due, "status = 'failed', next_attempt_at = now() - interval '1 second'")
	set(t, s, notDue, "status = 'failed', next_attempt_at = now() + interval '1 hour'")
	set(t, s, live, "status = 'sending', lease_expires_at = now() + interval '1 minute'")
	set(t, s, sent, "status = 'sent', sent_at = now()")
	var reqs []ClaimRequest
	for _, id := range []string{queued, due, notDue, live, sent, queued, "0193a1b2-0000-7000-8000-000000000000"} {
		reqs = append(reqs, ClaimRequest{ID: id, MessageID: id + "@example.test"})
	}
	claims, err := s.ClaimBatch(ctx, reqs, time.Minute, 5)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Claim{}
	for _, c := range claims {
		got[c.ID] = c
	}
	if len(claims) != 2 || got[queued].Token != 1 || got[due].Token != 1 {
		t.Fatalf("claims: got %+v, want %s and %s under token 1", claims, queued, due)
	}
	for _, id := range []string{queued, due} {
		if c := got[id]; c.Status != message.StatusSending || c.MessageID != id+"@example.test" || c.Attempts != 1 {
			t.Errorf("claim %s: got %+v", id, c)
		}
	}
	if e, _ := s.Get(ctx, notDue); e.Status != message.StatusFailed || e.Token != 0 {
		t.Errorf("not-due row: got %s under token %d, want failed under 0", e.Status, e.Token)
	}
}

// One statement records several outcomes; each stale one is refused alone
// and named, the others apply.
func TestRecordOutcomes(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	a, b, c, d := newRow(t, s), newRow(t, s), newRow(t, s), newRow(t, s)
	ca, cb, cc, cd := claim(t, s, a), claim(t, s, b), claim(t, s, c), claim(t, s, d)
	// d was taken over by another worker: d's outcome is stale.
	expire(t, s, d)
	newer := claim(t, s, d)
	res, err := s.RecordOutcomes(ctx, []Outcome{
		{Lease: Lease{a, ca.Token}, Kind: OutcomeSent},
		{Lease: Lease{b, cb.Token}, Kind: OutcomeFailed, Reason: "451", Delay: time.Hour},
		{Lease: Lease{c, cc.Token}, Kind: OutcomeDead, Reason: "550"},
		{Lease: Lease{d, cd.Token}, Kind: OutcomeSent},
	})
	if err != nil {
		t.Fatal(err)
	}
	var se *StaleError
	if res[0] != (Result{}) || res[1] != (Result{}) || res[2] != (Result{}) || !errors.As(res[3].Err, &se) || se.Current != newer.Token || se.Status != "sending" || res[3].FoundDone {
		t.Fatalf("results: got %v, want three applied and a stale error naming token %d", res, newer.Token)
	}
	for id, want := range map[string]message.Status{a: message.StatusSent, b: message.StatusFailed, c: message.StatusDead, d: message.StatusSending} {
		if e, _ := s.Get(ctx, id); e.Status != want {
			t.Errorf("%s: got %s, want %s", id, e.Status, want)
		}
	}
	if e, _ := s.Get(ctx, b); e.LastError != "451" || e.NextAttemptAt == nil || time.Until(*e.NextAttemptAt) < 50*time.Minute {
		t.Errorf("failed row: got %+v, want last_error 451 and next attempt in an hour", e)
	}
	if _, err := s.RecordOutcomes(ctx, []Outcome{{Lease: Lease{a, ca.Token}, Kind: "maybe"}}); err == nil {
		t.Error("unknown outcome kind: got no error")
	}
}

// An outcome write is idempotent under its token: written again after it
// applied, as a retry after a lost answer writes it, it is reported
// applied, found done, and changes nothing. Under its token after a newer claim it is
// stale and names the newer claim, also once that claim ended in the
// write's own status.
func TestRecordOutcomesFoundDone(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	for _, c := range []struct {
		kind string
		want message.Status
	}{
		{OutcomeSent, message.StatusSent},
		{OutcomeFailed, message.StatusFailed},
		{OutcomeDead, message.StatusDead},
		{OutcomeReleased, message.StatusQueued},
	} {
		t.Run(c.kind, func(t *testing.T) {
			id := newRow(t, s)
			first := claim(t, s, id)
			write := func(token int64) Result {
				t.Helper()
				res, err := s.RecordOutcomes(ctx, []Outcome{{Lease: Lease{id, token}, Kind: c.kind, Reason: "451", Delay: time.Hour}})
				if err != nil {
					t.Fatal(err)
				}
				return res[0]
			}
			if r := write(first.Token); r != (Result{}) {
				t.Fatalf("first write: got %+v, want applied", r)
			}
			done := rowImage(t, s, id)
			if r := write(first.Token); r != (Result{FoundDone: true}) {
				t.Errorf("the same write again: got %+v, want found done", r)
			}
			if again := rowImage(t, s, id); again != done {
				t.Errorf("row after the write again: got %s, want it unchanged: %s", again, done)
			}

			if _, err := s.Requeue(ctx, []string{id}, nil); err != nil {
				t.Fatal(err)
			}
			newer := claim(t, s, id)
			for _, newerStatus := range []message.Status{message.StatusSending, c.want} {
				if newerStatus == c.want {
					if r := write(newer.Token); r != (Result{}) {
						t.Fatalf("newer %s: got %+v, want applied", c.kind, r)
					}
				}
				var se *StaleError
				if r := write(first.Token); !errors.As(r.Err, &se) || r.FoundDone || se.Token != first.Token || se.Current != newer.Token || se.Status != string(newerStatus) {
					t.Errorf("older token, row %s under the newer claim: got %+v, want a *StaleError naming token %d, %s", newerStatus, r, newer.Token, newerStatus)
				}
			}
		})
	}
}

// A sweep's verdict under the claim's token is the attempt's own when it
// is the same (dead; queued after an operator's requeue, for a release),
// and ends the claim when it is not. A dead applies over a sweep's dead:
// the row gets the attempt's reason instead of the sweep's presumption
// (see MarkDead), and the same dead again is then found done.
func TestRecordOutcomesAfterASweep(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	// presumedDead claims a row on its last allowed attempt and lets
	// ReleaseExpired record it dead.
	presumedDead := func() (string, Claim) {
		id := newRow(t, s)
		set(t, s, id, "attempts = 4")
		c := claim(t, s, id)
		expire(t, s, id)
		if _, d, err := s.ReleaseExpired(ctx, 5); err != nil || d != 1 {
			t.Fatalf("release expired: got %d dead, %v; want 1", d, err)
		}
		return id, c
	}
	// poisoned claims a row and lets DeadLetter record it dead once the
	// lease expired.
	poisoned := func() (string, Claim) {
		id := newRow(t, s)
		c := claim(t, s, id)
		expire(t, s, id)
		if dead, err := s.DeadLetter(ctx, id, "poison"); err != nil || !dead {
			t.Fatalf("dead-letter: got %v, %v; want true", dead, err)
		}
		return id, c
	}
	// requeued is presumedDead, then requeued by an operator.
	requeued := func() (string, Claim) {
		id, c := presumedDead()
		if n, err := s.Requeue(ctx, []string{id}, nil); err != nil || n != 1 {
			t.Fatalf("requeue: got %d, %v; want 1", n, err)
		}
		return id, c
	}
	for _, c := range []struct {
		name    string
		sweep   func() (string, Claim)
		kind    string
		applied bool   // the write applies (else the row stays as the sweep left it)
		stale   string // the status the refusal names; "" for none
	}{
		{"dead after ReleaseExpired's dead", presumedDead, OutcomeDead, true, ""},
		{"dead after DeadLetter's dead", poisoned, OutcomeDead, true, ""},
		{"released after ReleaseExpired's dead", presumedDead, OutcomeReleased, false, "dead"},
		{"failed after ReleaseExpired's dead", presumedDead, OutcomeFailed, false, "dead"},
		{"released after a requeue", requeued, OutcomeReleased, false, ""},
		{"dead after a requeue", requeued, OutcomeDead, false, "queued"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, cl := c.sweep()
			swept := rowImage(t, s, id)
			write := func() Result {
				t.Helper()
				res, err := s.RecordOutcomes(ctx, []Outcome{{Lease: Lease{id, cl.Token}, Kind: c.kind, Reason: "550", Delay: time.Hour}})
				if err != nil {
					t.Fatal(err)
				}
				return res[0]
			}
			r := write()
			var se *StaleError
			switch {
			case c.applied:
				if r != (Result{}) {
					t.Fatalf("got %+v, want applied (the attempt's reason over the sweep's)", r)
				}
				e, err := s.Get(ctx, id)
				if err != nil || e.Status != message.StatusDead || e.Token != cl.Token || e.LastError != "550" {
					t.Fatalf("row: got %s, token %d, last_error %q (%v); want dead, %d, the attempt's 550", e.Status, e.Token, e.LastError, err, cl.Token)
				}
				done := rowImage(t, s, id)
				if again := write(); again != (Result{FoundDone: true}) {
					t.Errorf("the same write again: got %+v, want found done", again)
				}
				if got := rowImage(t, s, id); got != done {
					t.Errorf("row after the write again: got %s, want it unchanged: %s", got, done)
				}
				return
			case c.stale == "" && r != (Result{FoundDone: true}):
				t.Errorf("got %+v, want found done (the sweep's verdict is the write's)", r)
			case c.stale != "" && (!errors.As(r.Err, &se) || r.FoundDone || se.Current != cl.Token || se.Status != c.stale):
				t.Errorf("got %+v, want a *StaleError naming token %d, %s", r, cl.Token, c.stale)
			}
			if got := rowImage(t, s, id); got != swept {
				t.Errorf("row after the write: got %s, want it as the sweep left it: %s", got, swept)
			}
		})
	}
}

// rowImage is the whole row of id, as text.
func rowImage(t *testing.T, s *Store, id string) string {
	t.Helper()
	var row string
	if err := s.pool.QueryRow(context.Background(), `SELECT to_jsonb(e)::text FROM emails e WHERE id = $1`, id).Scan(&row); err != nil {
		t.Fatal(err)
	}
	return row
}

// The same claim's write twice in one batch (its id spelled two ways)
// applies once and is reported applied for both, as one statement joining
// each write to the rows it updated did.
func TestRecordOutcomesSameClaimTwice(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	id := newRow(t, s)
	c := claim(t, s, id)
	res, err := s.RecordOutcomes(ctx, []Outcome{
		{Lease: Lease{id, c.Token}, Kind: OutcomeSent},
		{Lease: Lease{strings.ToUpper(id), c.Token}, Kind: OutcomeSent},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0] != (Result{}) || res[1] != (Result{}) {
		t.Errorf("results: got %+v, want both applied", res)
	}
	if e, _ := s.Get(ctx, id); e.Status != message.StatusSent {
		t.Errorf("row: got %s, want sent", e.Status)
	}
}

// When the rows of refused writes cannot be read after the update, the
// refusals still stand (each names the read's error instead of the row's
// claim), a write done already included, the writes that applied are
// reported applied, and RecordOutcomes returns no error: the update
// committed.
func TestRecordOutcomesRefusalUnread(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tracer := &statementHook{}
	s := open(t, tracer.option)
	a, b, c := newRow(t, s), newRow(t, s), newRow(t, s)
	ca, cb, cc := claim(t, s, a), claim(t, s, b), claim(t, s, c)
	expire(t, s, b)
	claim(t, s, b)
	// c's write was done already: only the read could tell.
	if err := s.MarkSent(ctx, c, cc.Token); err != nil {
		t.Fatal(err)
	}
	// The update ends, then the context is done before the read.
	tracer.set("UPDATE emails e SET", cancel)
	res, err := s.RecordOutcomes(ctx, []Outcome{
		{Lease: Lease{a, ca.Token}, Kind: OutcomeSent},
		{Lease: Lease{b, cb.Token}, Kind: OutcomeSent},
		{Lease: Lease{c, cc.Token}, Kind: OutcomeSent},
	})
	if err != nil {
		t.Fatalf("got %v, want no error: the update committed", err)
	}
	var se, done *StaleError
	if res[0] != (Result{}) || !errors.As(res[1].Err, &se) || se.ReadErr == nil || !errors.Is(se.ReadErr, context.Canceled) ||
		!errors.As(res[2].Err, &done) || done.ReadErr == nil || res[2].FoundDone {
		t.Fatalf("results: got %v, want nil and two stale errors carrying the read's error", res)
	}
	if !strings.Contains(se.Error(), "refused") || !errors.Is(res[1].Err, ErrStale) {
		t.Errorf("stale error: got %q, want it to say refused and match ErrStale", se.Error())
	}
	if e, _ := s.Get(context.Background(), a); e.Status != message.StatusSent {
		t.Errorf("applied row: got %s, want sent", e.Status)
	}
}

// statementHook is a pgx tracer that calls a function once a statement
// whose text starts with a prefix has ended, and records how many rows
// each such statement touched.
type statementHook struct {
	mu     sync.Mutex
	prefix string
	after  func()
	rows   []int64
}

// option makes h the tracer of a Store's pool.
func (h *statementHook) option(pc *pgxpool.Config) { pc.ConnConfig.Tracer = h }

// touched returns the rows touched by each statement with the prefix so
// far, in order.
func (h *statementHook) touched() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.rows)
}

func (h *statementHook) set(prefix string, after func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.prefix, h.after = prefix, after
}

type statementKey struct{}

func (h *statementHook) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, statementKey{}, strings.TrimSpace(data.SQL))
}

func (h *statementHook) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if sql, _ := ctx.Value(statementKey{}).(string); h.prefix != "" && strings.HasPrefix(sql, h.prefix) {
		h.rows = append(h.rows, data.CommandTag.RowsAffected())
		if h.after != nil {
			h.after()
		}
	}
}

// With GenericPlans (the worker's pool) the claim, the renewal and the
// outcome write run their generic plan from the first execution on
// (plan_cache_mode = auto plans the first five apart, and on a large table
// goes on planning every outcome write of a few rows).
func TestGenericPlans(t *testing.T) {
	db := testenv.NewDatabase(t)
	db.MaxConns = 1 // one session: pg_prepared_statements is per session
	s, err := Open(context.Background(), db, testenv.Logger(t), GenericPlans())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 7 {
		id := newRow(t, s)
		c := claim(t, s, id)
		if _, err := s.RenewLeases(ctx, []Lease{{id, c.Token}}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := s.MarkSent(ctx, id, c.Token); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := s.pool.Query(ctx, `
		SELECT CASE
		        WHEN statement LIKE '%fencing_token = fencing_token + 1%' THEN 'claim'
		        WHEN statement LIKE '%SET lease_expires_at%' THEN 'renewal'
		        WHEN statement LIKE '%sent_at = CASE%' THEN 'outcome write'
		    END AS name, generic_plans, custom_plans
		FROM pg_prepared_statements
		WHERE statement LIKE '%UPDATE emails%' AND statement NOT LIKE '%pg_prepared_statements%'`)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int64{}
	var name string
	var generic, custom int64
	if _, err := pgx.ForEachRow(rows, []any{&name, &generic, &custom}, func() error {
		got[name] = [2]int64{generic, custom}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("prepared statements: got %v, want the claim, the renewal and the outcome write", got)
	}
	for stmt, n := range got {
		if n[0] != 7 || n[1] != 0 {
			t.Errorf("%s: got %d generic and %d custom plans, want 7 and 0", stmt, n[0], n[1])
		}
	}
}

// The worker's generic plans (GenericPlans) of the outcome write and the
// lease renewal reach emails by primary key once the table has grown
// (20,000 rows with statistics). While it is small they scan it, which the
// planner estimates cheaper for an array of ten ids (at 2,000 rows, none
// sending, the renewal's plan still does), and a generic plan made right
// after an ANALYZE of an empty table is a sequential scan and a hash join
// (one row estimated): such a plan is replaced at autovacuum's next
// ANALYZE (after 50 changes plus a tenth of the table) and costs time,
// never a wrong answer. The empty case is checked too, so that a change
// in it is seen.
func TestWorkerGenericPlanShapes(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	simple := pgx.QueryExecModeSimpleProtocol
	plans := func(t *testing.T) map[string]string {
		t.Helper()
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		got := map[string]string{}
		for name, c := range map[string]struct{ prepare, execute string }{
			"outcome write": {`PREPARE outcome_write(uuid[], bigint[], text[], text[], float8[]) AS ` + outcomeWrite,
				`EXPLAIN EXECUTE outcome_write('{}', '{}', '{}', '{}', '{}')`},
			"lease renewal": {`PREPARE lease_renewal(uuid[], bigint[], float8) AS ` + leaseRenewal,
				`EXPLAIN EXECUTE lease_renewal('{}', '{}', 30)`},
		} {
			for _, sql := range []string{`SET LOCAL plan_cache_mode = force_generic_plan`, c.prepare} {
				if _, err := tx.Exec(ctx, sql, simple); err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
			}
			rows, err := tx.Query(ctx, c.execute, simple)
			if err != nil {
				t.Fatal(err)
			}
			lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			got[name] = strings.Join(lines, "\n")
		}
		if _, err := tx.Exec(ctx, `DEALLOCATE ALL`, simple); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE emails`); err != nil {
		t.Fatal(err)
	}
	for name, p := range plans(t) {
		if !strings.Contains(p, "Seq Scan on emails") {
			t.Errorf("%s, generic plan after an ANALYZE of the empty table: got\n%s\nwant the sequential scan the doc comment describes", name, p)
		}
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO emails (id, assunto, mensagem)
		SELECT gen_random_uuid(), 'a', 'b' FROM generate_series(1, 20000)`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE emails`); err != nil {
		t.Fatal(err)
	}
	for name, p := range plans(t) {
		if strings.Contains(p, "Seq Scan on emails") || !strings.Contains(p, "emails_pkey") {
			t.Errorf("%s, generic plan with 20,000 rows: got\n%s\nwant emails read by its primary key", name, p)
		}
	}
}

// The stale sweep puts back rows published long ago and never taken, but
// not a healthy backlog: rows published after (or not long before) the
// oldest entry still on the stream have their entries there.
func TestRepublishStaleLeavesAHealthyBacklog(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	lost, waiting, taken := newRow(t, s), newRow(t, s), newRow(t, s)
	if n, err := s.PublishPending(ctx, 10, func(context.Context, []Pending) error { return nil }); err != nil || n != 3 {
		t.Fatalf("publish: got %d %v, want 3", n, err)
	}
	set(t, s, lost, "published_at = now() - interval '2 hours'")
	set(t, s, waiting, "published_at = now() - interval '20 minutes'")
	set(t, s, taken, "published_at = now() - interval '2 hours'")
	claim(t, s, taken)
	// The stream's oldest entry is 30 minutes old: waiting's entry is
	// still there (a backlog), lost's is gone.
	oldest := time.Now().Add(-30 * time.Minute)
	if n, err := s.RepublishStale(ctx, 5*time.Minute, &oldest); err != nil || n != 1 {
		t.Fatalf("sweep with a backlog: got %d %v, want 1 (the lost row)", n, err)
	}
	if e, _ := s.Get(ctx, lost); e.Status != message.StatusQueued {
		t.Errorf("lost row: got %s", e.Status)
	}
	var published []Pending
	s.PublishPending(ctx, 10, func(_ context.Context, p []Pending) error { published = p; return nil })
	if len(published) != 1 || published[0].ID != lost {
		t.Errorf("published after the sweep: got %+v, want only %s", published, lost)
	}
	// An empty stream: every row published longer than after ago is
	// lost, and nothing else.
	set(t, s, lost, "published_at = now() - interval '2 hours'")
	if n, err := s.RepublishStale(ctx, 5*time.Minute, nil); err != nil || n != 2 {
		t.Errorf("sweep of an empty stream: got %d %v, want 2 (lost and waiting)", n, err)
	}
}

// A failed publish marks the rows unpublished again, so the next round
// takes them.
func TestPublishPendingUndoesAFailedPublish(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	a, b := newRow(t, s), newRow(t, s)
	var order []string
	if _, err := s.PublishPending(ctx, 10, func(_ context.Context, p []Pending) error {
		for _, x := range p {
			order = append(order, x.ID)
		}
		return errors.New("redis down")
	}); err == nil {
		t.Fatal("got nil, want the publish error")
	}
	if len(order) != 2 || order[0] != a || order[1] != b {
		t.Errorf("batch: got %v, want %s then %s (creation order)", order, a, b)
	}
	if n, err := s.PublishPending(ctx, 10, func(context.Context, []Pending) error { return nil }); err != nil || n != 2 {
		t.Errorf("after a failed publish: got %d %v, want both rows again", n, err)
	}
}
