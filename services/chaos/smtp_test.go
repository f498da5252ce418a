package chaos

import (
	"context"
	"fmt"
	"mime"
	"net/mail"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/carteiro/carteiro/services/internal/testenv"
)

// Scenario 4: the relay answers 451 for a while, then accepts → those
// messages are retried with backoff, then sent; it answers 550 → dead after
// one attempt with the reply in last_error, and `worker reprocess --dead`
// puts them back on the way, and they are sent.
func TestSMTPFailures(t *testing.T) {
	nDefer, nReject := scale(20, 200), scale(10, 100)
	window := scale(3*time.Second, 5*time.Second)
	const (
		reply451 = "4.3.0 chaos: try again later"
		reply550 = "5.1.1 chaos: mailbox unavailable"
	)

	smtp := testenv.StartSMTP(t)
	var deferUntil atomic.Int64
	var rejecting atomic.Bool
	dec := new(mime.WordDecoder)
	smtp.ReplyFor(func(_ int, m *mail.Message) error {
		if m == nil {
			return nil
		}
		subject, _ := dec.DecodeHeader(m.Header.Get("Subject"))
		switch {
		case strings.HasPrefix(subject, "smtp-451 ") && time.Now().UnixNano() < deferUntil.Load():
			return testenv.Error(451, reply451)
		case strings.HasPrefix(subject, "smtp-550 ") && rejecting.Load():
			return testenv.Error(550, reply550)
		}
		return nil
	})
	s := startStack(t, options{smtp: smtp, env: map[string]string{
		"RETRY_BASE_DELAY": "200ms", "RETRY_MAX_DELAY": "2s", "MAX_ATTEMPTS": "10",
	}})

	deferUntil.Store(time.Now().Add(window).UnixNano())
	rejecting.Store(true)
	ld, lr := newLoad(s, "smtp-451", 8), newLoad(s, "smtp-550", 8)
	ld.burst(context.Background(), nDefer, 8)
	lr.burst(context.Background(), nReject, 8)
	for _, l := range []*load{ld, lr} {
		if fs := failures(l.snapshot()); len(fs) > 0 {
			t.Fatalf("%s: %d POST(s) failed: %s", l.tag, len(fs), describe(fs))
		}
	}
	deferIDs, rejectIDs := accepted(ld.snapshot()), accepted(lr.snapshot())

	// 550: dead after one attempt, the reply kept.
	deadline := time.Now().Add(time.Minute)
	for {
		rows, err := s.rows()
		dead := 0
		for _, id := range rejectIDs {
			if err == nil && rows[id].status == "dead" {
				dead++
			}
		}
		if dead == len(rejectIDs) {
			for _, id := range rejectIDs {
				r := rows[id]
				if r.attempts != 1 || !strings.Contains(r.lastError, "550") || !strings.Contains(r.lastError, reply550) {
					t.Errorf("smtp-550: %s dead with attempts %d, last_error %q; want 1 attempt and the 550 reply", id, r.attempts, r.lastError)
				}
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-550: %d of %d rejected messages dead after a minute (%v)\n%s", dead, len(rejectIDs), err, s.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	tries := map[string][]testenv.Try{}
	for _, tr := range smtp.Tries() {
		mid := normMessageID(tr.MessageID)
		tries[mid] = append(tries[mid], tr)
	}
	for _, id := range rejectIDs {
		if n := len(tries[id+"@"+mailDomain]); n != 1 {
			t.Errorf("smtp-550: %s was tried %d times before reprocess, want 1", id, n)
		}
	}

	// 451 for a while: retried with backoff, then sent.
	c := s.settle(expectation{name: "smtp-451", ids: deferIDs})
	tries = map[string][]testenv.Try{}
	for _, tr := range smtp.Tries() {
		mid := normMessageID(tr.MessageID)
		tries[mid] = append(tries[mid], tr)
	}
	total := 0
	var example string
	for _, id := range deferIDs {
		r := c.rows[id]
		ts := tries[id+"@"+mailDomain]
		total += len(ts)
		if r.attempts < 2 || !strings.Contains(r.lastError, "451") {
			t.Errorf("smtp-451: %s sent after %d attempt(s), last_error %q; want a 451 first, then a retry", id, r.attempts, r.lastError)
		}
		if len(ts) != r.attempts {
			t.Errorf("smtp-451: %s: %d attempts recorded, the relay saw %d", id, r.attempts, len(ts))
		}
		for i, tr := range ts {
			if last := i == len(ts)-1; (tr.Err == nil) != last {
				t.Errorf("smtp-451: %s: try %d of %d answered %v; want 451 until the last, which is accepted", id, i+1, len(ts), tr.Err)
			}
		}
		if example == "" && len(ts) >= 3 {
			gaps := make([]string, 0, len(ts)-1)
			for i := 1; i < len(ts); i++ {
				gaps = append(gaps, ts[i].At.Sub(ts[i-1].At).Round(time.Millisecond).String())
			}
			example = fmt.Sprintf("%s: %d tries, gaps %s", id, len(ts), strings.Join(gaps, " "))
		}
	}
	if len(deferIDs) > 0 {
		note(t, "smtp-451: %.1f tries per message on average (RETRY_BASE_DELAY=200ms, 451 for %s); e.g. %s",
			float64(total)/float64(len(deferIDs)), window, example)
	}

	// reprocess --dead, with the relay accepting again.
	rejecting.Store(false)
	out, err := s.WorkerCommand("reprocess", "--dead")
	if err != nil {
		t.Fatalf("worker reprocess --dead: %v\n%s", err, out)
	}
	if want := fmt.Sprintf("re-queued %d message(s)", len(rejectIDs)); !strings.Contains(out, want) {
		t.Errorf("worker reprocess --dead: got %q, want %q", strings.TrimSpace(out), want)
	}
	note(t, "smtp-550: worker reprocess --dead: %s", strings.TrimSpace(out))
	c = s.settle(expectation{name: "smtp-550", ids: rejectIDs})
	for _, id := range rejectIDs {
		if r := c.rows[id]; r.attempts != 1 {
			t.Errorf("smtp-550: %s sent after reprocess with attempts %d, want 1 (attempts start over)", id, r.attempts)
		}
	}
}
