//go:build composetest

package composetest

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// result is one POST of a trickle or a burst.
type result struct {
	start, end time.Time
	code       int // 0: no HTTP answer (err)
	id         string
	err        error
}

// sender posts messages one at a time, every interval, until stopped, and
// records every outcome. Its pace stays under nginx's /api rate limit (10
// requests/s per client, burst 20), which every request from the host shares.
type sender struct {
	mu      sync.Mutex
	results []result
	stop    chan struct{}
	done    chan struct{}
}

func (h *harness) send(label string, interval time.Duration, limit int) *sender {
	s := &sender{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; limit == 0 || i < limit; i++ {
			r := result{start: time.Now()}
			r.code, r.id, r.err = func() (int, string, error) {
				code, m, err := h.post(fmt.Sprintf("%s %d", label, i), "mensagem de teste do compose")
				return code, m.ID, err
			}()
			r.end = time.Now()
			s.mu.Lock()
			s.results = append(s.results, r)
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// snapshot is the outcomes so far.
func (s *sender) snapshot() []result {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]result(nil), s.results...)
}

// finish stops the sender and returns every outcome.
func (s *sender) finish() []result {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.snapshot()
}

// accepted are the ids of the 202 answers.
func accepted(rs []result) []string {
	var ids []string
	for _, r := range rs {
		if r.code == http.StatusAccepted {
			ids = append(ids, r.id)
		}
	}
	return ids
}

// counts is "202=N 502=N ... no answer=N".
func counts(rs []result) string {
	n := map[string]int{}
	for _, r := range rs {
		k := fmt.Sprint(r.code)
		if r.code == 0 {
			k = "no answer"
		}
		n[k]++
	}
	var parts []string
	for _, k := range sortedKeys(n) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, n[k]))
	}
	return strings.Join(parts, " ")
}

// waitDelivered waits until every id's mail is in Mailpit and returns the
// ids still missing when ctx ends, and how many arrived more than once.
func (h *harness) waitDelivered(ctx context.Context, ids []string) (missing []string, duplicates int) {
	waitUntil(ctx, "delivery", func() (bool, error) {
		n, err := h.mails()
		if err != nil {
			return false, err
		}
		missing, duplicates = nil, 0
		for _, id := range ids {
			switch c := n[messageID(id)]; {
			case c == 0:
				missing = append(missing, id)
			case c > 1:
				duplicates++
			}
		}
		return len(missing) == 0, nil
	})
	return missing, duplicates
}

// testRestartApp: `docker compose restart app` under a steady trickle of
// POSTs. While app restarts, nginx answers 502 (no upstream) or the api 503;
// no other status. depends_on.app.restart: true makes compose restart
// frontend as well once app is healthy (nginx resolves app once): requests
// that meet frontend itself down get no answer, and only then. Afterwards
// every request succeeds, and every accepted message is delivered.
func (h *harness) testRestartApp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s := h.send("restart", 200*time.Millisecond, 0)
	defer s.finish()
	waitUntil(ctx, "a few answers before the restart", func() (bool, error) { return len(s.snapshot()) >= 5, nil })
	begin := time.Now()
	if out, err := h.project.Compose(ctx, "restart", "app"); err != nil {
		t.Fatalf("restart app: %v\n%s", err, out)
	}
	restarted := time.Now()
	err := waitUntil(ctx, "20 accepted in a row after the restart", func() (bool, error) {
		rs := s.snapshot()
		n := 0
		for i := len(rs) - 1; i >= 0 && rs[i].start.After(restarted) && rs[i].code == http.StatusAccepted; i-- {
			n++
		}
		return n >= 20, nil
	})
	rs := s.finish()
	if err != nil {
		t.Fatalf("%v: %s", err, counts(rs))
	}

	// When compose restarted frontend, and the first answer after that.
	var feDown, feUp time.Time
	for _, e := range h.events.All() {
		if e.Service == "frontend" && !e.Time.Before(begin) {
			switch {
			case feDown.IsZero() && (e.Action == "kill" || e.Action == "die" || e.Action == "stop"):
				feDown = e.Time
			case !feDown.IsZero() && feUp.IsZero() && e.Action == "start":
				feUp = e.Time
			}
		}
	}
	var firstAnswer time.Time
	for _, r := range rs {
		if !feUp.IsZero() && r.start.After(feUp) && r.code != 0 {
			firstAnswer = r.start
			break
		}
	}
	noAnswer := 0
	for _, r := range rs {
		switch {
		case r.code == http.StatusAccepted, r.code == http.StatusBadGateway, r.code == http.StatusServiceUnavailable:
		case r.code == 0 && !feDown.IsZero() && !r.end.Before(feDown) && !r.start.After(firstAnswer):
			noAnswer++
		case r.code == 0:
			t.Errorf("request at %s: got no answer (%v) outside frontend's own restart, want 202, 502 or 503", r.start.Format(time.StampMilli), r.err)
		default:
			t.Errorf("request at %s: got %d, want 202, 502 or 503", r.start.Format(time.StampMilli), r.code)
		}
	}
	frontend := "frontend was not restarted"
	if !feDown.IsZero() {
		frontend = fmt.Sprintf("frontend restarted by compose (depends_on restart: true), down for %v: %d request(s) without an answer then",
			feUp.Sub(feDown).Round(time.Millisecond), noAnswer)
	}
	t.Logf("restart app (took %v): %d requests: %s; %s", restarted.Sub(begin).Round(time.Millisecond), len(rs), counts(rs), frontend)

	ids := accepted(rs)
	missing, dups := h.waitDelivered(ctx, ids)
	if len(missing) > 0 {
		t.Errorf("accepted during the restart but not delivered: %d of %d (%v)", len(missing), len(ids), missing)
	}
	t.Logf("accepted %d, delivered %d, duplicates %d", len(ids), len(ids)-len(missing), dups)
}

// testKillWorker: SIGKILL to the worker in the middle of a burst of POSTs,
// then `up`: every accepted message is delivered (lost = 0). A message
// killed inside its SMTP transaction may arrive twice with the same
// Message-ID (at-least-once delivery): counted, printed.
func (h *harness) testKillWorker(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const n = 60
	s := h.send("burst", 120*time.Millisecond, n)
	waitUntil(ctx, "a third of the burst", func() (bool, error) { return len(accepted(s.snapshot())) >= n/3, nil })
	if out, err := h.project.Compose(ctx, "kill", "-s", "KILL", "worker"); err != nil {
		t.Fatalf("kill worker: %v\n%s", err, out)
	}
	killedAt := len(s.snapshot())
	<-s.done
	rs := s.finish()
	if out, err := h.project.Compose(ctx, "up", "-d", "--wait", "--wait-timeout", "600"); err != nil {
		t.Fatalf("up after the kill: %v\n%s", err, out)
	}
	ids := accepted(rs)
	if len(ids) != n {
		t.Errorf("burst: got %s, want %d accepted (the api is not what was killed)", counts(rs), n)
	}
	missing, dups := h.waitDelivered(ctx, ids)
	t.Logf("kill -s KILL worker after %d of %d posts, then up: accepted=%d sent=%d lost=%d duplicates=%d",
		killedAt, n, len(ids), len(ids)-len(missing), len(missing), dups)
	if len(missing) > 0 {
		t.Errorf("lost: %d (%v), want 0", len(missing), missing)
	}
}

// testHealthFollowsDB: with db stopped, app's healthcheck (readiness:
// Postgres and Redis answer) turns unhealthy; with db started again it
// turns healthy. The times are printed.
func (h *harness) testHealthFollowsDB(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	stopped := time.Now()
	if out, err := h.project.Compose(ctx, "stop", "db"); err != nil {
		t.Fatalf("stop db: %v\n%s", err, out)
	}
	unhealthy, err := h.events.Wait(ctx, stopped, "app", "health_status: unhealthy")
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	if out, err := h.project.Compose(ctx, "start", "db"); err != nil {
		t.Fatalf("start db: %v\n%s", err, out)
	}
	healthy, err := h.events.Wait(ctx, started, "app", "health_status: healthy")
	if err != nil {
		t.Fatal(err)
	}
	var others []string
	for _, e := range h.events.All() {
		if !e.Time.Before(stopped) && e.Service != "app" && e.Action == "health_status: unhealthy" {
			others = append(others, e.Service)
		}
	}
	sort.Strings(others)
	t.Logf("db stopped: app unhealthy after %v; db started: app healthy after %v (also unhealthy meanwhile: %v)",
		unhealthy.Time.Sub(stopped).Round(time.Second), healthy.Time.Sub(started).Round(time.Second), others)
	if out, err := h.project.Compose(ctx, "up", "-d", "--wait", "--wait-timeout", "600"); err != nil {
		t.Fatalf("up (every service healthy again): %v\n%s", err, out)
	}
}

// testDownUp: `down` (volumes kept) then `up`: new containers, and the
// message sent in the delivery step is still there, still sent.
func (h *harness) testDownUp(t *testing.T) {
	if h.firstID == "" {
		t.Skip("the delivery step sent no message")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	before, err := h.project.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := h.project.Compose(ctx, "down"); err != nil {
		t.Fatalf("down: %v\n%s", err, out)
	}
	if out, err := h.project.Compose(ctx, "up", "-d", "--wait", "--wait-timeout", "600"); err != nil {
		t.Fatalf("up: %v\n%s", err, out)
	}
	t.Logf("down + up --wait: %v", time.Since(start).Round(time.Second))
	after, err := h.project.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before["db"].ID == after["db"].ID {
		t.Errorf("db container: got the same %s after down and up, want a new one", after["db"].ID)
	}
	var st message
	code, err := getJSON(h.url(h.httpPort, "/api/messages/"+h.firstID), &st)
	if err != nil || code != http.StatusOK || st.Status != "sent" {
		t.Errorf("message %s after down and up: got %d %v status %q, want 200 sent", h.firstID, code, err, st.Status)
	}
}

// testDownVolumes: `down -v` removes every container, network and volume
// of the project.
func (h *harness) testDownVolumes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if out, err := h.project.Compose(ctx, "down", "-v"); err != nil {
		t.Fatalf("down -v: %v\n%s", err, out)
	}
	left, err := h.project.Leftovers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("after down -v: got %v, want nothing of project %s", left, h.project.Name)
	}
}
