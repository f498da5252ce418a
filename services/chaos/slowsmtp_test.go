package chaos

import (
	"context"
	"fmt"
	"net/mail"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// A slow but standards-compliant relay: every reply (greeting, EHLO, MAIL,
// RCPT, DATA, the final dot) comes after slowReply, well inside
// SMTP_TIMEOUT, while a whole transaction (six replies) lasts longer than
// WORKER_LEASE. The lease must not bound a send: the worker renews its
// claims while it waits.
const slowReply = 1200 * time.Millisecond

var slowEnv = map[string]string{
	"SMTP_TIMEOUT": "4s", "WORKER_LEASE": "5s", "MAX_ATTEMPTS": "5",
}

func slowSMTP(t *testing.T) *testenv.SMTPServer {
	smtp := testenv.StartSMTP(t)
	smtp.PaceEvery(slowReply)
	return smtp
}

// copies lists, for each accepted message, how many mails carry its
// Message-ID, and how many times the relay was sent it (DATA completed).
func copies(c tally, smtp *testenv.SMTPServer, ids []string) string {
	tries := map[string]int{}
	for _, tr := range smtp.Tries() {
		tries[normMessageID(tr.MessageID)]++
	}
	parts := make([]string, 0, len(ids))
	for _, id := range ids {
		mid := id + "@" + mailDomain
		parts = append(parts, fmt.Sprintf("%d/%d", c.inbox[mid], tries[mid]))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// postAtOnce posts n messages at once and returns their ids; every one
// must be accepted.
func postAtOnce(t *testing.T, s *stack, tag string, n int) []string {
	t.Helper()
	l := newLoad(s, tag, n)
	l.burst(context.Background(), n, n)
	ids := accepted(l.snapshot())
	if len(ids) != n {
		t.Fatalf("%s: %d of %d POSTs accepted: %s", tag, len(ids), n, describe(failures(l.snapshot())))
	}
	return ids
}

// replies counts the replies the relay wrote to command.
func replies(smtp *testenv.SMTPServer, command string, code int) int {
	n := 0
	for _, r := range smtp.Replies() {
		if r.Command == command && r.Code == code {
			n++
		}
	}
	return n
}

// Scenario: a slow relay, three messages at once → each accepted by the
// relay exactly once, each row sent at the first attempt, and no takeover:
// the heartbeat kept every claim, in Postgres and in the stream.
func TestSlowSMTP(t *testing.T) {
	n := scale(3, 12)
	smtp := slowSMTP(t)
	s := startStack(t, options{smtp: smtp, env: slowEnv})

	ids := postAtOnce(t, s, "slow-smtp", n)
	c := s.settle(expectation{name: "slow-smtp", ids: ids, maxDuplicates: 0})
	note(t, "slow-smtp: every reply after %s (SMTP_TIMEOUT=4s, WORKER_LEASE=5s); copies per message (inbox/DATA): %s",
		slowReply, copies(c, smtp, ids))

	for _, id := range ids {
		if r := c.rows[id]; r.attempts != 1 {
			t.Errorf("slow-smtp: %s sent after %d attempts, want 1 (last_error %q)", id, r.attempts, r.lastError)
		}
	}
	if got := len(smtp.Tries()); got != len(ids) {
		t.Errorf("slow-smtp: the relay received %d DATA for %d messages, want one each", got, len(ids))
	}
	log := s.LogText("worker")
	for _, takeover := range []string{"took over", "released messages whose lease expired", "claim lost", "stale outcome"} {
		if strings.Contains(log, takeover) {
			t.Errorf("slow-smtp: the worker logged %q: a live send was taken over\n%s", takeover, s.Logs())
		}
	}
	for _, m := range []string{"carteiro_takeovers_total", "carteiro_claims_lost_total"} {
		if v, err := testenv.Metric(s.WorkerInternal[0], m); err != nil || v != 0 {
			t.Errorf("slow-smtp: %s = %v (%v), want 0", m, v, err)
		}
	}
}

// Scenario: the same slow relay, and the worker SIGKILLed while its three
// transactions are under way → another worker (started after the kill)
// takes them over once their lease expired; every message sent, at most
// one extra copy each with the same Message-ID, attempts within
// MAX_ATTEMPTS.
func TestSlowSMTPWorkerKilled(t *testing.T) {
	const n = 3
	smtp := slowSMTP(t)
	s := startStack(t, options{smtp: smtp, env: slowEnv})

	ids := postAtOnce(t, s, "slow-smtp-kill9", n)
	// Mid-transaction: the relay answered MAIL for all three (claimed,
	// three replies to go each).
	for start := time.Now(); replies(smtp, "MAIL", 250) < n; {
		if time.Since(start) > time.Minute {
			t.Fatalf("slow-smtp-kill9: %d MAIL replies after a minute, want %d\n%s", replies(smtp, "MAIL", 250), n, s.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	pid := s.Signal("worker", syscall.SIGKILL)
	if rc := s.ExitStatus("worker", 30*time.Second); rc != 128+int(syscall.SIGKILL) {
		t.Errorf("slow-smtp-kill9: worker exit status %d, want %d (SIGKILL)", rc, 128+int(syscall.SIGKILL))
	}
	note(t, "slow-smtp-kill9: worker pid %d killed after %d MAIL replies, %d final-dot replies", pid,
		replies(smtp, "MAIL", 250), replies(smtp, ".", 250))
	s.Up() // another worker process, another consumer

	c := s.settle(expectation{name: "slow-smtp-kill9", ids: ids, maxDuplicates: n})
	note(t, "slow-smtp-kill9: copies per message (inbox/DATA): %s", copies(c, smtp, ids))
	takenOver := 0
	for _, id := range ids {
		r := c.rows[id]
		if r.attempts < 1 || r.attempts > 5 {
			t.Errorf("slow-smtp-kill9: %s has attempts %d, want 1..MAX_ATTEMPTS=5", id, r.attempts)
		}
		if r.attempts == 2 {
			takenOver++
		}
	}
	log := s.LogText("worker")
	if takenOver == 0 || !strings.Contains(log, "took over") {
		t.Errorf("slow-smtp-kill9: %d row(s) at attempt 2 and takeover logged %v; want the killed claims taken over\n%s",
			takenOver, strings.Contains(log, "took over"), s.Logs())
	}
}

// Scenario: SIGTERM right after the relay's 250 to the final dot, while
// the worker cannot write the outcome yet (the test holds the row's lock,
// as a slow Postgres would) until after the shutdown deadline's hard stop
// → the row is sent, once: the outcome is written with its own context,
// not the cancelled work's, and the worker exits 0.
func TestSlowSMTPSIGTERMAfter250(t *testing.T) {
	smtp := slowSMTP(t)
	// The hard stop comes 3s before the end, 9s after the SIGTERM, well
	// within the 15s an outcome write may take.
	env := map[string]string{"WORKER_SHUTDOWN_TIMEOUT": "12s", "STOP_TIMEOUT": "30"}
	for k, v := range slowEnv {
		env[k] = v
	}
	ctx := context.Background()
	locked := make(chan pgx.Tx, 1)
	var s *stack
	smtp.ReplyFor(func(_ int, m *mail.Message) error {
		if m == nil {
			return nil
		}
		mid := normMessageID(m.Header.Get("Message-ID"))
		conn, err := s.conn(ctx)
		if err != nil {
			return err
		}
		tx, err := conn.Begin(ctx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM emails WHERE id = $1 FOR UPDATE`, strings.TrimSuffix(mid, "@"+mailDomain)); err != nil {
			return err
		}
		locked <- tx
		return nil // the 250, after slowReply
	})
	s = startStack(t, options{smtp: smtp, env: env})

	ids := postAtOnce(t, s, "slow-smtp-sigterm", 1)
	var tx pgx.Tx
	select {
	case tx = <-locked:
	case <-time.After(time.Minute):
		t.Fatalf("slow-smtp-sigterm: no DATA after a minute\n%s", s.Logs())
	}
	defer tx.Conn().Close(ctx)
	for start := time.Now(); replies(smtp, ".", 250) == 0; {
		if time.Since(start) > time.Minute {
			t.Fatalf("slow-smtp-sigterm: no 250 to the final dot after a minute\n%s", s.Logs())
		}
		time.Sleep(5 * time.Millisecond)
	}
	pid := s.Signal("worker", syscall.SIGTERM)
	for start := time.Now(); !strings.Contains(s.LogText("worker"), "shutdown deadline near"); {
		if time.Since(start) > time.Minute {
			t.Fatalf("slow-smtp-sigterm: no hard stop logged after a minute\n%s", s.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	rc := s.ExitStatus("worker", time.Minute)
	note(t, "slow-smtp-sigterm: worker pid %d: SIGTERM after the 250, outcome held past the hard stop; exited %d", pid, rc)
	if rc != 0 {
		t.Errorf("slow-smtp-sigterm: worker exit status %d, want 0\n%s", rc, s.Logs())
	}
	pending, err := s.Redis.Client().XPending(ctx, "carteiro:emails", "carteiro-workers").Result()
	if err != nil || pending.Count != 0 {
		t.Errorf("slow-smtp-sigterm: entries pending after the exit: %+v %v, want none", pending, err)
	}
	c := s.settle(expectation{name: "slow-smtp-sigterm", ids: ids, maxDuplicates: 0})
	if r := c.rows[ids[0]]; r.attempts != 1 {
		t.Errorf("slow-smtp-sigterm: attempts %d, want 1", r.attempts)
	}
	if got := len(smtp.Tries()); got != 1 {
		t.Errorf("slow-smtp-sigterm: the relay received %d DATA, want 1", got)
	}
}
