package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/carteiro/carteiro/services/internal/config"
	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/store"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// startRelay runs a relay on a fresh database and Redis, publishing only
// when woken (its sweep is an hour away), until the test ends.
func startRelay(t *testing.T, wakeDelay time.Duration) (*store.Store, *Relay, *redis.Client) {
	t.Helper()
	ctx := context.Background()
	s, err := store.Open(ctx, testenv.NewDatabase(t), testenv.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	rdb := testenv.StartRedis(t).Client()
	q := queue.New(rdb, "carteiro:emails", "carteiro-workers")
	r := New(Deps{Store: s, Queue: q, Log: testenv.Logger(t),
		Config: config.Outbox{SweepInterval: time.Hour, BatchSize: 100, RepublishAfter: time.Hour, WakeDelay: wakeDelay}})
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { r.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return s, r, rdb
}

// publishedRows waits (up to 10 s) until n rows are published and returns
// how many publishing transactions published them (one now() each).
func publishedRows(t *testing.T, s *store.Store, n int) (transactions int) {
	t.Helper()
	for range 500 {
		var published int
		err := s.Pool().QueryRow(context.Background(), `SELECT count(*), count(DISTINCT published_at)
			FROM emails WHERE published_at IS NOT NULL`).Scan(&published, &transactions)
		if err != nil {
			t.Fatal(err)
		}
		if published == n {
			return transactions
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("fewer than %d rows published after 10 s", n)
	return 0
}

// The commits that wake the relay within its WakeDelay are published in
// one transaction.
func TestRelayGathersTheWakesOfItsDelay(t *testing.T) {
	s, r, _ := startRelay(t, time.Second)
	for range 10 {
		if _, err := s.Insert(context.Background(), message.Input{Assunto: "a", Mensagem: "m"}, "", ""); err != nil {
			t.Fatal(err)
		}
		r.Notify()
	}
	if got := publishedRows(t, s, 10); got != 1 {
		t.Errorf("publishing transactions: got %d, want 1", got)
	}
}

// No wake is lost: commits that wake the relay while it waits, or while
// it publishes, are all published without a sweep.
func TestRelayLosesNoWake(t *testing.T) {
	for _, delay := range []time.Duration{0, 5 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			s, r, rdb := startRelay(t, delay)
			const n = 200
			for i := range n {
				if _, err := s.Insert(context.Background(), message.Input{Assunto: "a", Mensagem: "m"}, "", ""); err != nil {
					t.Fatal(err)
				}
				r.Notify()
				if i%20 == 0 {
					time.Sleep(delay) // some commits land while it publishes
				}
			}
			publishedRows(t, s, n)
			if got, err := rdb.XLen(context.Background(), "carteiro:emails").Result(); err != nil || got != n {
				t.Errorf("stream entries: got %d (%v), want %d", got, err, n)
			}
		})
	}
}

// A relay shut down while it waits out its WakeDelay stops at once and
// publishes nothing; the committed row stays pending for the next sweep.
func TestRelayStopsDuringItsWakeDelay(t *testing.T) {
	s, _, rdb := startRelay(t, time.Hour) // never woken: idle
	r := New(Deps{Store: s, Queue: queue.New(rdb, "carteiro:emails", "carteiro-workers"), Log: testenv.Logger(t),
		Config: config.Outbox{SweepInterval: time.Hour, BatchSize: 100, RepublishAfter: time.Hour, WakeDelay: time.Hour}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	if _, err := s.Insert(context.Background(), message.Input{Assunto: "a", Mensagem: "m"}, "", ""); err != nil {
		t.Fatal(err)
	}
	r.Notify()
	time.Sleep(100 * time.Millisecond) // into the wait (if not yet, Run's own select stops it)
	cancel()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // a hang, against the hour's delay
		t.Fatal("Run did not return after shutdown during its wake delay")
	}
	var pending int
	if err := s.Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM emails WHERE published_at IS NULL`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if pending != 1 {
		t.Errorf("pending rows: got %d, want 1 (kept for the next sweep)", pending)
	}
}
