package store

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

func open(t *testing.T) *Store {
	t.Helper()
	s, err := Open(context.Background(), testenv.NewDatabase(t), testenv.Logger(t))
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

func TestClaimTransitions(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	lease := time.Minute
	tests := []struct {
		name   string
		state  string // SET clause
		wantOK bool
	}{
		{"queued", "status = 'queued'", true},
		{"failed and due", "status = 'failed', next_attempt_at = now() - interval '1 second'", true},
		{"failed not yet due", "status = 'failed', next_attempt_at = now() + interval '1 hour'", false},
		{"sending within the lease", "status = 'sending', sending_since = now()", false},
		{"sending past the lease", "status = 'sending', sending_since = now() - interval '2 minutes'", true},
		{"sent", "status = 'sent', sent_at = now()", false},
		{"dead", "status = 'dead'", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := s.Insert(ctx, message.Input{Assunto: "a", Mensagem: "b"}, "", "")
			if err != nil {
				t.Fatal(err)
			}
			set(t, s, e.ID, tt.state)
			got, ok, err := s.Claim(ctx, e.ID, e.ID+"@example.test", lease)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.wantOK {
				t.Fatalf("claim: got %v, want %v", ok, tt.wantOK)
			}
			if ok && (got.Status != message.StatusSending || got.Attempts != 1 || got.MessageID != e.ID+"@example.test") {
				t.Errorf("claimed row: got %+v", got)
			}
		})
	}
}

func TestOutcomes(t *testing.T) {
	s := open(t)
	ctx := context.Background()
	claim := func() Email {
		e, err := s.Insert(ctx, message.Input{Assunto: "a", Mensagem: "b"}, "", "")
		if err != nil {
			t.Fatal(err)
		}
		c, ok, err := s.Claim(ctx, e.ID, "mid", time.Minute)
		if err != nil || !ok {
			t.Fatalf("claim: %v %v", ok, err)
		}
		return c
	}

	e := claim()
	if err := s.MarkSent(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, e.ID); got.Status != message.StatusSent || got.SentAt == nil {
		t.Errorf("sent: got %+v", got)
	}

	e = claim()
	next := time.Now().Add(time.Hour)
	if err := s.MarkFailed(ctx, e.ID, "451 later", next); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, e.ID)
	if got.Status != message.StatusFailed || got.LastError != "451 later" || got.NextAttemptAt == nil {
		t.Errorf("failed: got %+v", got)
	}
	// A failed row goes back to the outbox, but only once it is due.
	n, err := s.PublishPending(ctx, 10, func(context.Context, []Pending) error { return nil })
	if err != nil || n != 0 {
		t.Errorf("publish before due: got %d %v, want 0", n, err)
	}
	set(t, s, e.ID, "next_attempt_at = now()")
	n, err = s.PublishPending(ctx, 10, func(_ context.Context, p []Pending) error {
		if len(p) != 1 || p[0].ID != e.ID {
			t.Errorf("published: got %+v, want %s", p, e.ID)
		}
		return nil
	})
	if err != nil || n != 1 {
		t.Errorf("publish when due: got %d %v, want 1", n, err)
	}

	e = claim()
	if err := s.MarkDead(ctx, e.ID, "550 no such user"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, e.ID); got.Status != message.StatusDead || got.LastError != "550 no such user" {
		t.Errorf("dead: got %+v", got)
	}
	// Recording an outcome for a row that is no longer sending changes nothing.
	if err := s.MarkSent(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, e.ID); got.Status != message.StatusDead {
		t.Errorf("MarkSent on a dead row: got %s, want dead", got.Status)
	}
	// Reprocessing brings it back with attempts starting over.
	if n, err := s.Requeue(ctx, nil, []string{"dead"}); err != nil || n != 1 {
		t.Fatalf("requeue: got %d %v, want 1", n, err)
	}
	if got, _ := s.Get(ctx, e.ID); got.Status != message.StatusQueued || got.Attempts != 0 || got.LastError == "" {
		t.Errorf("requeued: got %+v, want queued, 0 attempts, last error kept", got)
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
	e, _ := s.Insert(ctx, message.Input{Assunto: "a", Mensagem: "b"}, "", "")
	s.PublishPending(ctx, 10, func(context.Context, []Pending) error { return nil })
	if _, ok, _ := s.Claim(ctx, e.ID, "mid", time.Minute); !ok {
		t.Fatal("claim failed")
	}
	if n, _ := s.ReleaseExpired(ctx, time.Minute); n != 0 {
		t.Errorf("within the lease: got %d released, want 0", n)
	}
	set(t, s, e.ID, "sending_since = now() - interval '5 minutes'")
	if n, _ := s.ReleaseExpired(ctx, time.Minute); n != 1 {
		t.Errorf("past the lease: got %d released, want 1", n)
	}
	var published []Pending
	s.PublishPending(ctx, 10, func(_ context.Context, p []Pending) error { published = p; return nil })
	if len(published) != 1 || published[0].ID != e.ID {
		t.Errorf("after release: got %+v published, want %s", published, e.ID)
	}
	if _, ok, _ := s.Claim(ctx, e.ID, "mid", time.Minute); !ok {
		t.Error("claim after release: got false, want true")
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
