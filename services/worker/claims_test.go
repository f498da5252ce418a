package main

import (
	"context"
	"net/mail"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/message"
	"github.com/carteiro/carteiro/services/internal/queue"
	"github.com/carteiro/carteiro/services/internal/testenv"
)

// eventually polls cond every 50 ms until it holds, or fails the test
// after a minute (a bound for a stuck test, not a timing assertion) with
// the worker's log.
func (r *rig) eventually(what string, cond func() bool) {
	r.t.Helper()
	for range 1200 {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.t.Fatalf("%s: not after a minute\nworker log:\n%s", what, r.logs)
}

// metricAddr gives the worker a metrics listener on a free port.
func (r *rig) metricAddr() string {
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(r.t))
	r.env["INTERNAL_ADDR"] = addr
	return addr
}

func (r *rig) pending() int64 {
	r.t.Helper()
	p, err := r.redis.Client().XPending(context.Background(), r.stream, "carteiro-workers").Result()
	if err != nil {
		return -1
	}
	return p.Count
}

// Fencing in a running worker: while its send is held by the relay,
// another attempt takes the message over (the first claim's lease expired:
// the test ends it) and records it sent. The first attempt's outcome,
// whatever it turns out to be, is refused, counted and logged with both
// tokens; the newer outcome stands.
func TestStaleOutcomeIsRefused(t *testing.T) {
	r := newRig(t)
	addr := r.metricAddr()
	release := make(chan struct{})
	r.smtp.Reply(func(int) error { <-release; return nil })
	defer close(release)
	r.startRelay()
	r.startWorker("w1")
	id := r.insert("taken", "over")
	r.eventually("the relay holding the first DATA", func() bool { return r.smtp.Attempts() == 1 })

	ctx := context.Background()
	var token int64
	r.eventually("a takeover of the claim", func() bool {
		if _, err := r.store.Pool().Exec(ctx, `UPDATE emails SET lease_expires_at = now() - interval '1 second' WHERE id = $1 AND status = 'sending'`, id); err != nil {
			t.Fatal(err)
		}
		c, ok, err := r.store.Claim(ctx, id, id+"@example.test", time.Minute, 3)
		if err != nil {
			t.Fatal(err)
		}
		token = c.Token
		return ok
	})
	if token != 2 {
		t.Fatalf("takeover token: got %d, want 2", token)
	}
	if err := r.store.MarkSent(ctx, id, token); err != nil {
		t.Fatalf("newer attempt's outcome: %v", err)
	}
	// The first attempt either learns of the loss at its next heartbeat
	// (its send is stopped, its release refused) or gets the relay's 250
	// first (its sent refused).
	r.eventually("the stale outcome refused", func() bool {
		n := 0.0
		for _, o := range []string{"sent", "released"} {
			v, _ := testenv.Metric(addr, `carteiro_stale_writes_total{outcome="`+o+`"}`)
			n += max(v, 0)
		}
		return n == 1
	})
	var refused []string
	for _, line := range strings.Split(r.logs.String(), "\n") {
		if strings.Contains(line, "stale outcome refused") {
			refused = append(refused, line)
		}
	}
	if len(refused) != 1 || !strings.Contains(refused[0], `"token":1`) || !strings.Contains(refused[0], `"current_token":2`) ||
		!strings.Contains(refused[0], `"message_id":"`+id+`"`) || !strings.Contains(refused[0], `"attempt":1`) {
		t.Errorf("stale outcome log lines: got %q, want one naming the message, attempt 1, token 1 and current token 2", refused)
	}
	e := r.get(id)
	if e.Status != message.StatusSent || e.Token != 2 || e.Attempts != 2 {
		t.Errorf("row: got %s, token %d, attempts %d; want the newer outcome: sent, 2, 2", e.Status, e.Token, e.Attempts)
	}
	// The entry is left to whoever holds the message; nobody does now,
	// so it is acknowledged once reclaimed.
	r.eventually("no entry pending", func() bool { return r.pending() == 0 })
	if got := r.get(id); got.Status != message.StatusSent || got.Attempts != 2 {
		t.Errorf("row at the end: got %s, attempts %d; want sent, 2", got.Status, got.Attempts)
	}
}

// An outcome write whose answer is lost after its commit (its COMMIT waits
// past the try's deadline, then commits: testenv.StallOutcomes) is retried,
// found done under its own token and reported applied: counted once, as
// sent, never as stale, counted as found done, and its entry acknowledged
// then, not left pending until a reclaim after the lease.
func TestLostOutcomeAnswerIsAcknowledged(t *testing.T) {
	r := newRig(t)
	addr := r.metricAddr()
	// Far longer than the test: only the recorder can acknowledge the
	// entry, never a reclaim.
	r.env["WORKER_LEASE"] = "10m"
	testenv.StallOutcomes(t, r.db)
	gate := testenv.CloseGate(t, r.db, 1)
	r.startRelay()
	r.startWorker("w1")
	id := r.insert("gate 1", "lost answer")
	// The first try's MarkSent waits at the gate (an advisory lock) until
	// its deadline; the retry then waits for the row that write still
	// holds (its transaction's lock), so the first answer is lost by then.
	gate.WaitBlocked()
	r.eventually("the retried outcome write waiting for the row", func() bool {
		var n int
		err := r.store.Pool().QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND wait_event IN ('transactionid', 'tuple')
			  AND query LIKE '%RETURNING o.i%'`).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	})
	gate.Open()

	metric := func(name, outcome string) float64 {
		v, _ := testenv.Metric(addr, name+`{outcome="`+outcome+`"}`)
		return max(v, 0)
	}
	r.eventually("the outcome counted", func() bool {
		return metric("carteiro_messages_total", "sent")+metric("carteiro_stale_writes_total", "sent") > 0
	})
	for _, o := range []string{"sent", "retry", "dead", "released"} {
		if got := metric("carteiro_stale_writes_total", o); got != 0 {
			t.Errorf("stale %s writes: got %v, want 0", o, got)
		}
	}
	if got := metric("carteiro_messages_total", "sent"); got != 1 {
		t.Errorf("sent: got %v, want 1", got)
	}
	for o, want := range map[string]float64{"sent": 1, "retry": 0, "dead": 0, "released": 0} {
		v, err := testenv.Metric(addr, `carteiro_outcome_writes_found_done_total{outcome="`+o+`"}`)
		if v != want {
			t.Errorf("%s writes found done: got %v (%v), want %v", o, v, err, want)
		}
	}
	if n := r.logs.Count("stale outcome refused"); n != 0 {
		t.Errorf("stale outcome log lines: got %d, want 0", n)
	}
	if n := r.logs.Count("outcome write found done under its token"); n != 1 {
		t.Errorf("found-done log lines: got %d, want 1", n)
	}
	r.eventually("no entry pending", func() bool { return r.pending() == 0 })
	if e := r.get(id); e.Status != message.StatusSent || e.Token != 1 || e.Attempts != 1 {
		t.Errorf("row: got %s, token %d, attempts %d; want sent, 1, 1", e.Status, e.Token, e.Attempts)
	}
	if n := len(r.smtp.Messages()); n != 1 {
		t.Errorf("messages the relay got: %d, want 1", n)
	}
}

// Poison entries end: one whose row is gone is acknowledged at once; one
// whose claim always fails is delivered WORKER_MAX_DELIVERIES times, then
// its message is recorded dead with the reason and the entry acknowledged.
func TestPoisonEntriesEnd(t *testing.T) {
	r := newRig(t)
	r.env["WORKER_LEASE"] = "1s"
	r.env["WORKER_MAX_DELIVERIES"] = "2"
	ctx := context.Background()
	id := r.insert("poison", "claim always fails")
	// A claim of this row (an UPDATE to sending) always errors, as a
	// broken row or a bug would make it.
	for _, sql := range []string{
		`CREATE FUNCTION refuse_claim() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN IF NEW.status = 'sending' THEN RAISE EXCEPTION 'claim refused by the test'; END IF; RETURN NEW; END $$`,
		`CREATE TRIGGER refuse_claim BEFORE UPDATE ON emails FOR EACH ROW
		 WHEN (NEW.id = '` + id + `') EXECUTE FUNCTION refuse_claim()`,
	} {
		if _, err := r.store.Pool().Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	q := queue.New(r.redis.Client(), r.stream, "carteiro-workers")
	if err := q.EnsureGroup(ctx); err != nil {
		t.Fatal(err)
	}
	gone := "0193a1b2-0000-7000-8000-000000000000"
	if err := q.Add(ctx, queue.Entry{MessageID: gone}); err != nil {
		t.Fatal(err)
	}
	r.startRelay()
	r.startWorker("w1")

	e := r.waitStatus(id, message.StatusDead)
	if !strings.Contains(e.LastError, "WORKER_MAX_DELIVERIES=2") || e.Attempts != 0 {
		t.Errorf("dead row: attempts %d, last_error %q; want 0 and the reason", e.Attempts, e.LastError)
	}
	r.eventually("both entries acknowledged", func() bool {
		n, _ := r.redis.Client().XLen(ctx, r.stream).Result()
		return r.pending() == 0 && n == 0
	})
	if n := r.logs.Count("claim failed"); n != 2 {
		t.Errorf("failed claims: got %d, want 2 (WORKER_MAX_DELIVERIES)\n%s", n, r.logs)
	}
	if n := r.logs.Count("poison entry acknowledged"); n != 1 {
		t.Errorf("poison entries: got %d, want 1", n)
	}
	if r.smtp.Attempts() != 0 {
		t.Errorf("DATA commands: got %d, want 0", r.smtp.Attempts())
	}
}

// The outcome is recorded even after the work was cancelled: the relay
// said 250, then SIGTERM came and the shutdown deadline passed while the
// sent could not be written yet (the test holds the row's lock). The row
// ends sent, once, and nothing is left to send it again.
func TestOutcomeRecordedAfterHardStop(t *testing.T) {
	r := newRig(t)
	r.env["WORKER_SHUTDOWN_TIMEOUT"] = "8s" // the hard stop comes 2s before the end
	ctx := context.Background()
	locked := make(chan pgx.Tx, 1)
	r.smtp.ReplyFor(func(_ int, m *mail.Message) error {
		id := strings.Trim(m.Header.Get("Message-Id"), "<>")
		id = id[:strings.IndexByte(id, '@')]
		tx, err := r.store.Pool().Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM emails WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		locked <- tx
		return nil // the 250
	})
	r.startRelay()
	stop := r.startWorker("w1")
	id := r.insert("sent", "then stopped")
	tx := <-locked
	r.eventually("the relay's 250 written", func() bool {
		for _, rep := range r.smtp.Replies() {
			if rep.Command == "." && rep.Code == 250 {
				return true
			}
		}
		return false
	})
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	r.eventually("the hard stop", func() bool { return r.logs.Count("shutdown deadline near") == 1 })
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run: %v", err)
	}
	e := r.get(id)
	if e.Status != message.StatusSent || e.Attempts != 1 {
		t.Errorf("row: got %s, attempts %d; want sent, 1\n%s", e.Status, e.Attempts, r.logs)
	}
	if n := len(r.smtp.Messages()); n != 1 {
		t.Errorf("mails: got %d, want 1", n)
	}
	if n := r.pending(); n != 0 {
		t.Errorf("entries pending: got %d, want 0", n)
	}
}

// At the hard stop the connection of a send still waiting for its reply is
// closed, so the worker stops in time; the attempt is released (queued at
// once, not counted) and the next worker sends it. This is the window no
// client can close (RFC 1047): the relay already had the message, so it
// gets a second copy, with the same Message-ID.
func TestHardStopReleasesSendsInFlight(t *testing.T) {
	r := newRig(t)
	r.env["WORKER_SHUTDOWN_TIMEOUT"] = "8s" // the hard stop comes 2s before the end
	r.env["SMTP_DATA_TIMEOUT"] = "1h"
	var holding atomic.Bool
	holding.Store(true)
	r.smtp.Pace(func(rep testenv.Reply) time.Duration {
		if rep.Command == "." && holding.Load() {
			return time.Hour
		}
		return 0
	})
	r.startRelay()
	stop := r.startWorker("w1")
	id := r.insert("held", "reply")
	r.eventually("the relay holding the final dot's reply", func() bool { return len(r.smtp.Messages()) == 1 })
	err := stop()
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	e := r.get(id)
	if e.Status != message.StatusQueued || e.Attempts != 0 || !strings.Contains(e.LastError, "shutting down") {
		t.Fatalf("row after the hard stop: got %s, attempts %d, last_error %q; want queued, 0, interrupted\n%s", e.Status, e.Attempts, e.LastError, r.logs)
	}
	holding.Store(false)
	r.startWorker("w2")
	e = r.waitStatus(id, message.StatusSent)
	if e.Attempts != 1 {
		t.Errorf("attempts: got %d, want 1 (the interrupted one is not counted)", e.Attempts)
	}
	msgs := r.smtp.Messages()
	if len(msgs) != 2 || msgs[0].Header.Get("Message-Id") != msgs[1].Header.Get("Message-Id") {
		t.Errorf("copies: got %d, want 2 with the same Message-ID", len(msgs))
	}
}

// Claims made ahead of the sends and still waiting for a sender at
// SIGTERM are given back unsent and uncounted: queued again with attempts
// back where they were (the fencing token moved on; a read that was
// waiting on Redis may claim one given back again, and give it back too),
// and the next worker sends each as its first attempt. The send under way
// is finished.
func TestShutdownGivesBackClaimsAhead(t *testing.T) {
	r := newRig(t)
	r.env["WORKER_CONCURRENCY"] = "1"
	holding := make(chan struct{})
	r.smtp.Reply(func(int) error { <-holding; return nil })
	ids := make([]string, 4)
	for i := range ids {
		ids[i] = r.insert("ahead", strconv.Itoa(i))
	}
	r.startRelay()
	stop := r.startWorker("w1")
	// One sender: one message at the relay, the others claimed, waiting.
	r.eventually("every message claimed", func() bool {
		for _, id := range ids {
			if r.get(id).Status != message.StatusSending {
				return false
			}
		}
		return r.smtp.Attempts() == 1
	})
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	r.eventually("SIGTERM", func() bool { return r.logs.Count("shutting down") == 1 })
	// The pool is told to stop right after that line.
	time.Sleep(200 * time.Millisecond)
	close(holding)
	if err := <-stopped; err != nil {
		t.Fatalf("run after SIGTERM: got %v, want nil", err)
	}
	var sent, released []string
	for _, id := range ids {
		switch e := r.get(id); {
		case e.Status == message.StatusSent && e.Attempts == 1:
			sent = append(sent, id)
		case e.Status == message.StatusQueued && e.Attempts == 0 && e.Token >= 1 && strings.Contains(e.LastError, "not started"):
			released = append(released, id)
		default:
			t.Errorf("message %s: got %s, attempts %d, token %d, last_error %q; want sent after 1 attempt, or queued, 0 attempts, a token, not started",
				id, e.Status, e.Attempts, e.Token, e.LastError)
		}
	}
	if len(sent) != 1 || len(released) != len(ids)-1 {
		t.Fatalf("got %d sent and %d given back, want 1 and %d\n%s", len(sent), len(released), len(ids)-1, r.logs)
	}
	r.startWorker("w2")
	for _, id := range released {
		if e := r.waitStatus(id, message.StatusSent); e.Attempts != 1 {
			t.Errorf("message %s: got %d attempts, want 1 (the claim given back is not counted)", id, e.Attempts)
		}
	}
	if n := len(r.smtp.Messages()); n != len(ids) {
		t.Errorf("mails: got %d, want %d (one each)", n, len(ids))
	}
}
