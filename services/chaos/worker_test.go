package chaos

import (
	"context"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// Scenario 1: kill -9 the worker while the SMTP server is inside DATA (it
// has the whole message and holds its reply), restart it → every message
// sent; the only duplicates are the killed in-flight messages, at most one
// extra copy each, with the same Message-ID.
func TestWorkerKilledInsideData(t *testing.T) {
	const concurrency = 4
	n := scale(60, 600)
	rounds := scale(1, 3)

	smtp := testenv.StartSMTP(t)
	var (
		mu      sync.Mutex
		holding bool                // hold the next DATAs until released
		held    = map[string]bool{} // Message-IDs whose reply was held
		release = make(chan struct{})
	)
	var inside atomic.Int32
	smtp.ReplyFor(func(_ int, m *mail.Message) error {
		mu.Lock()
		hold, ch := holding, release
		if hold && m != nil {
			held[normMessageID(m.Header.Get("Message-ID"))] = true
		}
		mu.Unlock()
		if hold {
			inside.Add(1)
			<-ch // the relay has the message; its "250" waits
			inside.Add(-1)
		}
		return nil
	})
	s := startStack(t, options{smtp: smtp, env: map[string]string{
		// Short, so the killed sends are taken over quickly. The held
		// replies to the final dot wait up to SMTP_DATA_TIMEOUT (10m).
		"WORKER_CONCURRENCY": "4", "WORKER_LEASE": "5s", "SMTP_TIMEOUT": "4s",
	}})

	l := newLoad(s, "kill9", 8)
	for round := 1; round <= rounds; round++ {
		if round > 1 {
			// The previous round's killed sends are re-sent first, so
			// that a held copy is never held (and duplicated) again.
			s.waitIdle(time.Minute)
		}
		mu.Lock()
		holding = true
		mu.Unlock()
		inside.Store(0)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { l.burst(ctx, n/rounds, 8); close(done) }()

		// Wait until every sender is inside DATA (or at least one, if
		// the load is too thin).
		start := time.Now()
		for inside.Load() < concurrency && !(inside.Load() > 0 && time.Since(start) > time.Second) {
			if time.Since(start) > 20*time.Second {
				stop()
				t.Fatalf("round %d: no DATA reached the SMTP server in 20s\n%s", round, s.Logs())
			}
			time.Sleep(5 * time.Millisecond)
		}
		pid := s.Signal("worker", syscall.SIGKILL)
		if rc := s.ExitStatus("worker", 10*time.Second); rc != 128+int(syscall.SIGKILL) {
			t.Errorf("round %d: worker exit status %d, want %d (SIGKILL)", round, rc, 128+int(syscall.SIGKILL))
		}
		inFlight := int(inside.Load())
		// Now the relay answers: it delivers what it had, though the
		// client is gone (the case that makes a duplicate).
		mu.Lock()
		holding = false
		close(release)
		release = make(chan struct{})
		mu.Unlock()
		note(t, "kill9: round %d: worker pid %d killed with %d send(s) inside DATA", round, pid, inFlight)

		<-done
		stop()
		s.Up() // starts the missing worker
	}
	if f := failures(l.snapshot()); len(f) > 0 {
		t.Fatalf("kill9: %d POST(s) failed: %s", len(f), describe(f))
	}
	ids := accepted(l.snapshot())
	if len(ids) != n/rounds*rounds {
		t.Errorf("kill9: %d messages accepted, want %d", len(ids), n/rounds*rounds)
	}
	mu.Lock()
	killed := len(held)
	mu.Unlock()
	c := s.settle(expectation{
		name: "kill9", ids: ids, maxDuplicates: killed,
		duplicateOK: func(mid string) bool {
			mu.Lock()
			defer mu.Unlock()
			return held[mid]
		},
	})
	if c.duplicates > 0 && !strings.Contains(s.LogText("worker"), "took over") {
		t.Logf("kill9: no take-over logged by the new worker")
	}
}

// Scenario 6: SIGTERM to the worker under load → it finishes its sends in
// flight, exits 0, and nothing is lost (the next worker delivers the rest).
func TestWorkerSIGTERMDrains(t *testing.T) {
	n := scale(200, 1000)
	rate := scale(40.0, 100.0)
	smtp := testenv.StartSMTP(t)
	var inside atomic.Int32
	// A relay that takes a while per message, so sends are in flight
	// when the signal comes.
	smtp.ReplyFor(func(int, *mail.Message) error {
		inside.Add(1)
		defer inside.Add(-1)
		time.Sleep(150 * time.Millisecond)
		return nil
	})
	s := startStack(t, options{smtp: smtp, env: map[string]string{
		"WORKER_CONCURRENCY": "4", "WORKER_SHUTDOWN_TIMEOUT": "10s",
	}})

	l := newLoad(s, "sigterm", 8)
	ctx, stop := context.WithTimeout(context.Background(), time.Duration(float64(n)/rate*float64(time.Second)))
	defer stop()
	done := make(chan struct{})
	go func() { l.paced(ctx, rate, 8); close(done) }()

	// Under load: wait until the worker is inside DATA.
	time.Sleep(time.Second)
	start := time.Now()
	for inside.Load() == 0 {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("no send in flight after 20s\n%s", s.Logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
	pid := s.Signal("worker", syscall.SIGTERM)
	inFlight := inside.Load()
	var sending int
	if err := s.scalar(`SELECT count(*) FROM emails WHERE status = 'sending'`, &sending); err != nil {
		t.Fatal(err)
	}
	sigAt := time.Now()
	rc := s.ExitStatus("worker", 30*time.Second)
	note(t, "sigterm: worker pid %d: SIGTERM with %d send(s) inside DATA, %d row(s) sending; exited %d after %s",
		pid, inFlight, sending, rc, time.Since(sigAt).Round(time.Millisecond))
	if rc != 0 {
		t.Errorf("worker exit status after SIGTERM: %d, want 0\n%s", rc, s.Logs())
	}
	log := s.LogText("worker")
	if strings.Contains(log, "shutdown deadline passed") {
		t.Errorf("worker log: the shutdown deadline passed, want every send drained")
	}
	if !strings.Contains(log, `"msg":"stopped"`) {
		t.Errorf("worker log: no \"stopped\" line")
	}
	// Drained: nothing it took is left half done. (The load goes on, so
	// rows may be queued; none may be sending, and no stream entry may be
	// pending, with no worker running.)
	if err := s.scalar(`SELECT count(*) FROM emails WHERE status = 'sending'`, &sending); err != nil {
		t.Fatal(err)
	}
	if sending != 0 {
		t.Errorf("after the drain: %d row(s) still sending, want 0", sending)
	}
	pending, err := s.Redis.Client().XPending(context.Background(), "carteiro:emails", "carteiro-workers").Result()
	if err != nil {
		t.Errorf("XPENDING: %v", err)
	} else if pending.Count != 0 {
		t.Errorf("after the drain: %d stream entries pending, want 0", pending.Count)
	}

	time.Sleep(500 * time.Millisecond)
	s.Up() // a new worker delivers the rest
	<-done
	rs := l.snapshot()
	if f := failures(rs); len(f) > 0 {
		t.Fatalf("sigterm: %d POST(s) failed: %s", len(f), describe(f))
	}
	s.settle(expectation{name: "sigterm", ids: accepted(rs)})
}
